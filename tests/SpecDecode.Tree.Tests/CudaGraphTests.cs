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

    /// <summary>A set keeps at most its capacity of graphs: a new one disposes the least recently used (replays count as
    /// use), an evicted shape that comes back is captured again, and disposing the set disposes what it still holds.</summary>
    [Fact]
    public void ASetBeyondItsCapacity_DisposesTheLeastRecentlyUsedGraph()
    {
        var made = new List<FakeGraph>();
        var replayed = new List<int>();
        using var graphs = new CudaGraphSet<int>(2, (work, warmup) =>
        {
            var graph = new FakeGraph(made.Count);
            made.Add(graph);
            return graph;
        }, graph => replayed.Add(((FakeGraph)graph).Id));
        void Use(int key) => graphs.Run(key, capture: true, () => { }, captureAtSecondUse: false);

        Use(1); // graph 0
        Use(2); // graph 1
        Use(1); // a replay: key 1 is now the most recently used
        Use(3); // graph 2: key 2 goes
        Assert.Equal(3, made.Count);
        Assert.True(made[1].Disposed, "the least recently used graph (key 2) should have been disposed");
        Assert.False(made[0].Disposed || made[2].Disposed, "the graphs of keys 1 and 3 should be kept");
        Assert.Equal(2, graphs.Count);
        Assert.Equal((3L, 1L), (graphs.Added, graphs.Evicted));

        Use(2); // back: captured again (graph 3), key 1 goes
        Assert.True(made[0].Disposed);
        Assert.Equal([0, 1, 0, 2, 3], replayed); // every use replays its graph, a new one right after its capture
        Assert.Equal((4L, 2L), (graphs.Added, graphs.Evicted));

        graphs.Dispose();
        Assert.All(made, g => Assert.True(g.Disposed, $"graph {g.Id} should be disposed with the set"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CudaGraphSet<int>(0));
    }

    private sealed class FakeGraph(int id) : IDisposable
    {
        public int Id => id;

        public bool Disposed { get; private set; }

        public void Dispose() => Disposed = true;
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
