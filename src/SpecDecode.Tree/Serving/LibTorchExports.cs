using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace SpecDecode.Tree;

/// <summary>
/// Finds C++ functions that the loaded libtorch exports but TorchSharp does not wrap, by their mangled (Itanium ABI)
/// names. The library is opened by its soname (<c>libtorch_cpu.so</c>, <c>libtorch_cuda.so</c>, <c>libc10_cuda.so</c>):
/// once TorchSharp or <see cref="TorchRuntime"/> has loaded it, <c>dlopen</c> returns that copy, so the function found
/// is the one that owns the running state (never a second libtorch).
/// </summary>
/// <remarks>A mangled name pins the C++ signature: if libtorch changes a parameter type, the name changes and the lookup
/// fails, which the callers treat as "not available". It does not pin the layout of the objects passed, which each
/// caller documents.</remarks>
internal static class LibTorchExports
{
    private static readonly ConcurrentDictionary<string, IntPtr> Libraries = new(StringComparer.Ordinal);

    /// <summary>The address of <paramref name="symbol"/> in the loaded <paramref name="library"/> (a soname), or false
    /// where that library is not loadable or lacks the symbol.</summary>
    public static bool TryResolve(string library, string symbol, out IntPtr address)
    {
        ArgumentNullException.ThrowIfNull(library);
        ArgumentNullException.ThrowIfNull(symbol);
        address = IntPtr.Zero;
        // Failures are not remembered: a library missing before libtorch is loaded may be there afterwards.
        if (!Libraries.TryGetValue(library, out IntPtr handle))
        {
            if (!NativeLibrary.TryLoad(library, out handle))
            {
                return false;
            }
            Libraries.TryAdd(library, handle);
        }
        return NativeLibrary.TryGetExport(handle, symbol, out address);
    }

    /// <summary>The function <paramref name="symbol"/> of the loaded <paramref name="library"/> as a delegate of type
    /// <typeparamref name="T"/>, or null where it is missing.</summary>
    public static T? TryGetFunction<T>(string library, string symbol) where T : Delegate =>
        TryResolve(library, symbol, out IntPtr address) ? Marshal.GetDelegateForFunctionPointer<T>(address) : null;
}
