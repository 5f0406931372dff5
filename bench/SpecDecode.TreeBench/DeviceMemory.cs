using System.Runtime.InteropServices;
using TorchSharp;

namespace SpecDecode.TreeBench;

/// <summary>The current CUDA context's free and total device memory, from the driver (<c>cuMemGetInfo_v2</c>): what libtorch's
/// caching allocator holds and what the driver holds for captured graphs both count as used. For the bench's graph memory
/// line; null where the driver cannot be asked.</summary>
internal static class DeviceMemory
{
    private const string Driver = "libcuda.so.1";

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int MemGetInfoFn(out nuint free, out nuint total);

    /// <summary>Free bytes of the current device, or null (no driver, no current context, an error).</summary>
    public static long? Free()
    {
        if (!NativeLibrary.TryLoad(Driver, out IntPtr library) || !NativeLibrary.TryGetExport(library, "cuMemGetInfo_v2", out IntPtr f))
        {
            return null;
        }
        torch.cuda.synchronize();
        return Marshal.GetDelegateForFunctionPointer<MemGetInfoFn>(f)(out nuint free, out _) == 0 ? (long)free : null;
    }
}
