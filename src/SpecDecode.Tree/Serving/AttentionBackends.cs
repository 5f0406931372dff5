using System.Runtime.InteropServices;

namespace SpecDecode.Tree;

/// <summary>
/// Switches for libtorch's scaled-dot-product-attention backends, which TorchSharp does not expose: libtorch exports
/// <c>at::globalContext()</c> and <c>at::Context::setSDPUse*</c> (what Python's
/// <c>torch.backends.cuda.enable_cudnn_sdp</c> and friends call), found by their mangled names in the loaded libtorch_cpu.
/// </summary>
/// <remarks>Measured reason (bench/RESULTS.md, H100): cuDNN's attention builds a plan per key count, which a decoder
/// changes every step; <see cref="TargetModelOptions.CuDnnAttention"/> turns it off by default.</remarks>
internal static class AttentionBackends
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr GlobalContext();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetFlag(IntPtr context, byte value);

    /// <summary>Turns one backend on or off: <c>CuDNN</c>, <c>Flash</c>, <c>MemEfficient</c> or <c>Math</c>. Returns false
    /// where this libtorch lacks the switch.</summary>
    public static bool Set(string backend, bool enabled)
    {
        string setter = backend switch
        {
            "CuDNN" => "_ZN2at7Context14setSDPUseCuDNNEb",
            "Flash" => "_ZN2at7Context14setSDPUseFlashEb",
            "MemEfficient" => "_ZN2at7Context21setSDPUseMemEfficientEb",
            "Math" => "_ZN2at7Context13setSDPUseMathEb",
            _ => throw new ArgumentException($"unknown backend {backend}", nameof(backend)),
        };
        if (!LibTorchExports.TryResolve("libtorch_cpu.so", "_ZN2at13globalContextEv", out IntPtr context)
            || !LibTorchExports.TryResolve("libtorch_cpu.so", setter, out IntPtr set))
        {
            return false;
        }
        IntPtr ctx = Marshal.GetDelegateForFunctionPointer<GlobalContext>(context)();
        Marshal.GetDelegateForFunctionPointer<SetFlag>(set)(ctx, enabled ? (byte)1 : (byte)0);
        return true;
    }
}
