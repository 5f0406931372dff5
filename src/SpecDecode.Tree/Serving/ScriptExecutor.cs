using System.Runtime.InteropServices;

namespace SpecDecode.Tree;

/// <summary>
/// Chooses how libtorch runs TorchScript functions. Its default, the profiling executor, records the input shapes of the
/// first calls, compiles a graph specialised to them, and falls back and re-profiles when a shape changes; a decoder
/// step changes shape every step (the cache grows, trees vary), so it may compile again and again. The simple executor runs
/// the graph as compiled, one kernel per operation, with no specialisation, so its cost does not depend on how shapes
/// vary. (On the H100 the legacy and simple executors measured within noise of each other once cuDNN
/// attention was off, which was the real cause of slow steps with changing shapes; see AttentionBackends.)
/// </summary>
/// <remarks>
/// TorchSharp does not expose these settings; libtorch exports them as C++ functions (<c>torch::jit::getProfilingMode()</c>
/// and <c>torch::jit::getExecutorMode()</c> return references to global flags, what Python's
/// <c>torch._C._jit_set_profiling_executor</c> and <c>_jit_set_profiling_mode</c> write), so they are found by their
/// mangled names in the already loaded libtorch_cpu. Where a libtorch lacks them the default executor stays, which is
/// correct, only slower with changing shapes. <c>SPECDECODE_SCRIPT_EXECUTOR=profiling</c> keeps libtorch's default
/// (for measuring the difference).
/// </remarks>
internal static class ScriptExecutor
{
    private const string ProfilingModeSymbol = "_ZN5torch3jit16getProfilingModeEv";
    private const string ExecutorModeSymbol = "_ZN5torch3jit15getExecutorModeEv";

    private const string Library = "libtorch_cpu.so";

    private const string SetOptimizeSymbol = "_ZN5torch3jit24setGraphExecutorOptimizeEb";

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr FlagReference();

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetFlag(byte value);

    /// <summary>What <see cref="Configure"/> did: "simple", "profiling (requested)" or "profiling (flags not found)".</summary>
    public static string Mode { get; private set; } = "profiling (not configured)";

    /// <summary>Switches libtorch's executor (once per process, before the first script runs) as
    /// <c>SPECDECODE_SCRIPT_EXECUTOR</c> says: <c>simple</c> (the default), <c>legacy</c> (profiling off),
    /// <c>nooptimize</c> (graph optimisation off) or <c>profiling</c> (libtorch's default, unchanged).</summary>
    public static void Configure()
    {
        string requested = Environment.GetEnvironmentVariable("SPECDECODE_SCRIPT_EXECUTOR")?.ToLowerInvariant() ?? "simple";
        if (requested == "profiling")
        {
            Mode = "profiling (requested)";
            return;
        }
        // libtorch_cpu is loaded by now (TorchSharp or TorchRuntime loaded it); by its soname dlopen returns that copy.
        if (!NativeLibrary.TryLoad(Library, out _))
        {
            Mode = "profiling (libtorch_cpu not found)";
            return;
        }
        switch (requested)
        {
            case "nooptimize" when LibTorchExports.TryResolve(Library, SetOptimizeSymbol, out IntPtr setOptimize):
                Marshal.GetDelegateForFunctionPointer<SetFlag>(setOptimize)(0);
                Mode = "nooptimize";
                return;
            case "legacy" when LibTorchExports.TryResolve(Library, ProfilingModeSymbol, out IntPtr profiling):
                Marshal.WriteByte(Marshal.GetDelegateForFunctionPointer<FlagReference>(profiling)(), 0);
                Mode = "legacy";
                return;
            case "simple" when LibTorchExports.TryResolve(Library, ProfilingModeSymbol, out IntPtr profiling)
                && LibTorchExports.TryResolve(Library, ExecutorModeSymbol, out IntPtr executor):
                // std::atomic<bool>& : a one-byte flag; false = off.
                Marshal.WriteByte(Marshal.GetDelegateForFunctionPointer<FlagReference>(profiling)(), 0);
                Marshal.WriteByte(Marshal.GetDelegateForFunctionPointer<FlagReference>(executor)(), 0);
                Mode = "simple";
                return;
            default:
                Mode = $"profiling ({requested} not available)";
                return;
        }
    }
}
