using SpecDecode.TreeBench;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>On the CPU build CUDA graphs are unavailable and say why; graph-probe refuses to run; the probe's synthetic
/// step runs (its ops are the ones the GPU will capture).</summary>
public sealed class CudaGraphTests
{
    [Fact]
    public void IsUnavailableOnTheCpuBuildWithAReason()
    {
        TorchRuntime.EnsureLoaded();
        Assert.False(torch.cuda.is_available());

        Assert.False(CudaGraph.IsAvailable);
        Assert.Contains("CUDA", CudaGraph.UnavailableReason, StringComparison.Ordinal);
        Assert.Contains(TorchRuntime.LibTorchVariable, CudaGraph.UnavailableReason, StringComparison.Ordinal);
    }

    [Fact]
    public void CaptureThrowsTheTypedExceptionWithoutRunningTheWork()
    {
        bool ran = false;

        var e = Assert.Throws<CudaGraphUnavailableException>(() => CudaGraph.Capture(() => ran = true));

        Assert.Equal(CudaGraph.UnavailableReason, e.Message);
        Assert.IsAssignableFrom<NotSupportedException>(e);
        Assert.False(ran);
    }

    /// <summary>Kernel steps (capture at the second use) run a key's first use eagerly, without touching the graph API,
    /// and capture at its second use (here: the typed refusal of the CPU build, after the work's one eager run).</summary>
    [Fact]
    public void AKernelStepsFirstUseRunsEagerly_AndItsSecondUseCaptures()
    {
        Assert.False(CudaGraph.Legacy, "run the tests without SPECDECODE_GRAPH_CAPTURE=legacy");
        using var graphs = new CudaGraphSet<int>();
        int runs = 0;

        graphs.Run(7, capture: true, () => runs++, captureAtSecondUse: true);
        Assert.Equal(1, runs);
        Assert.Equal(0, graphs.Count);

        graphs.Run(8, capture: true, () => runs++, captureAtSecondUse: true); // another shape: its own first use
        Assert.Equal(2, runs);

        Assert.Throws<CudaGraphUnavailableException>(() => graphs.Run(7, capture: true, () => runs++, captureAtSecondUse: true));
        Assert.Equal(2, runs); // the CPU build refuses the capture before any warm-up run

        // Libtorch work captures at its first use; with capture off every use runs eagerly and the key is kept.
        Assert.Throws<CudaGraphUnavailableException>(() => graphs.Run(9, capture: true, () => runs++, captureAtSecondUse: false));
        graphs.Run(10, capture: false, () => runs++, captureAtSecondUse: true);
        graphs.Run(10, capture: false, () => runs++, captureAtSecondUse: true);
        Assert.Equal(4, runs);
        Assert.Equal(1, graphs.Count);
    }

    [Fact]
    public void CaptureChecksItsArgumentsFirst()
    {
        Assert.Throws<ArgumentNullException>(() => CudaGraph.Capture(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => CudaGraph.Capture(() => { }, warmup: -1));
    }

    [Fact]
    public void TheSymbolsAreTheDocumentedPyTorchExports()
    {
        // The names docs/target-model.md lists; a change here must change the ABI notes there too.
        Assert.Equal(8, CudaGraph.Symbols.Length);
        Assert.Contains("_ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode", CudaGraph.Symbols);
        Assert.Contains("_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE", CudaGraph.Symbols);
    }

    [Fact]
    public void GraphProbeRefusesWithoutCudaWithANonZeroExitCode()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        int code = GraphProbeCommand.Build().Parse(["--layers", "1"]).Invoke(
            new System.CommandLine.InvocationConfiguration { Output = output, Error = error });

        Assert.Equal(GraphProbeCommand.NoCudaExitCode, code);
        Assert.NotEqual(0, code);
        Assert.Contains("graph-probe needs a CUDA GPU", error.ToString(), StringComparison.Ordinal);
        Assert.Equal("", output.ToString());
    }

    [Fact]
    public void TheSyntheticStepIsAFunctionOfItsStaticInput()
    {
        using var step = new SyntheticDecodeStep(layers: 1, CPU, seed: 1);
        using var scope = NewDisposeScope();
        torch.manual_seed(3);
        Tensor a = randn([1, SyntheticDecodeStep.Hidden], bfloat16);
        Tensor b = randn([1, SyntheticDecodeStep.Hidden], bfloat16);

        step.Input.copy_(a);
        step.Run();
        Tensor first = step.Output.clone();
        step.Input.copy_(b);
        step.Run();
        Tensor second = step.Output.clone();
        step.Input.copy_(a);
        step.Run();

        Assert.True(step.Output.eq(first).all().item<bool>());
        Assert.False(second.eq(first).all().item<bool>());
        Assert.True(first.isfinite().all().item<bool>());
        Assert.Equal(2L * (6144 * 4096 + 4096 * 4096 + 28672 * 4096 + 14336 * 4096 + 2 * 4096), step.WeightBytes);
    }
}
