using SpecDecode.TreeBench;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// <see cref="TargetModelOptions.CudaGraphs"/>: refused clearly where it cannot work (the CPU, eager layers), and its
/// fixed-shape step (key buckets, masked past the length, the slot's cache as a batch of one) run eagerly on the CPU
/// (<see cref="TargetModelOptions.CudaGraphCapture"/> off) against the usual path: the same tokens and the same cache.
/// </summary>
public sealed class DecodeGraphTests
{
    private static string Folder => SharedFixtures.TinyCheckpoint("llama-gqa");

    private static int[] Prompt()
    {
        using var expected = SharedFixtures.Expected(Folder);
        return SharedFixtures.Ids(expected, "prompt_ids").Select(i => (int)i).ToArray();
    }

    /// <summary>Graphs are automatic by default (issue 18, "fast by default"): on where they work, so off on the CPU, and
    /// the model says which path runs what and why, also in its log.</summary>
    [Fact]
    public void IsAutomaticByDefault_OffOnTheCpu_AndTheModelSaysWhichPathRunsWhat()
    {
        Assert.Null(new TargetModelOptions().CudaGraphs);
        var logger = new ListLogger();
        using TargetModel model = TargetModel.Load(Folder, new TargetModelOptions { Device = CPU, MaxContext = 64, MaxBatch = 2, Logger = logger });
        Assert.False(model.UsesCudaGraphs);
        string paths = model.StepPaths;
        Assert.Contains("plain steps: libtorch, scripted layers", paths, StringComparison.Ordinal);
        Assert.Contains("CUDA graphs off: the model runs on CPU", paths, StringComparison.Ordinal);
        Assert.Contains("draft forwards: libtorch path (no tree kernels)", paths, StringComparison.Ordinal);
        Assert.Equal(paths, Assert.Single(logger.Messages).Split(": ", 2)[1]);

        using TargetModel off = TargetModel.Load(Folder, new TargetModelOptions { Device = CPU, MaxContext = 64, CudaGraphs = false });
        Assert.Contains("TargetModelOptions.CudaGraphs is false", off.StepPaths, StringComparison.Ordinal);

        // graphs on (run eagerly on the CPU): plain steps take the graphed step, trees and batches say why they do not
        using TargetModel graphed = TargetModel.Load(Folder, new TargetModelOptions { Device = CPU, MaxContext = 64, MaxBatch = 2, CudaGraphs = true, CudaGraphCapture = false });
        string graphedPaths = graphed.StepPaths;
        Assert.Contains("plain steps: graphed libtorch decode step;", graphedPaths, StringComparison.Ordinal);
        Assert.Contains("batches: libtorch, scripted layers (not graphed libtorch decode step: a batch of sequences)", graphedPaths, StringComparison.Ordinal);
        Assert.Contains("one-sequence trees: libtorch, scripted layers (not graphed libtorch decode step: a draft tree)", graphedPaths, StringComparison.Ordinal);
    }

    private sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
    {
        public List<string> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter) => Messages.Add(formatter(state, exception));
    }

    [Fact]
    public void IsRefusedOnTheCpuWithAReason()
    {
        var e = Assert.Throws<NotSupportedException>(() =>
            TargetModel.Load(Folder, new TargetModelOptions { Device = CPU, MaxContext = 64, CudaGraphs = true }));
        Assert.Contains("CUDA", e.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(TargetModelOptions.CudaGraphs), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void IsRefusedWithoutTheScriptedLayers()
    {
        var e = Assert.Throws<NotSupportedException>(() => TargetModel.Load(Folder, new TargetModelOptions
        {
            Device = CPU, MaxContext = 64, CudaGraphs = true, CudaGraphCapture = false, ScriptedLayers = false,
        }));
        Assert.Contains("scripted", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Plain greedy decoding in slot 1 of 2 across several key buckets (of 8) up to the full capacity (60, not a
    /// multiple of 8): the fixed-shape step gives the usual path's tokens and cache, one graph per bucket reached.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(0)]
    public void FixedShapeStepDecodesAsTheUsualPath(int slot)
    {
        const int capacity = 60, bucket = 8;
        int[] prompt = Prompt()[..20];
        (int[] expected, Tensor expectedCache) = Decode(slot, prompt, capacity, new TargetModelOptions { Device = CPU, MaxBatch = 2, MaxContext = capacity }, out _);
        (int[] actual, Tensor actualCache) = Decode(slot, prompt, capacity, new TargetModelOptions
        {
            Device = CPU, MaxBatch = 2, MaxContext = capacity, CudaGraphs = true, CudaGraphCapture = false, CudaGraphKeyBucket = bucket,
        }, out int graphs);

        Assert.Equal(expected, actual);
        // Lengths 19 .. 59 + 1 keys: buckets 24, 32, 40, 48, 56 and the capacity 60.
        Assert.Equal(6, graphs);
        using (expectedCache)
        using (actualCache)
        {
            Assert.Equal(expectedCache.shape, actualCache.shape);
            double diff = (expectedCache - actualCache).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"cache differs by {diff}");
        }
    }

    /// <summary>Graphed steps and draft steps (the usual path) interleave on one model: the draft steps see the caches
    /// the graphed steps wrote.</summary>
    [Fact]
    public void DraftStepsFollowGraphedStepsOnTheSameCache()
    {
        int[] prompt = Prompt()[..20];
        var reference = new List<int>();
        using (TargetModel model = TargetModel.Load(Folder, new TargetModelOptions { Device = CPU, MaxContext = 64 }))
        {
            model.Prefill([(0, prompt[..^1])]);
            int root = prompt[^1];
            for (int i = 0; i < 12; i++)
            {
                root = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0].Bonus;
                reference.Add(root);
            }
        }

        using TargetModel graphed = TargetModel.Load(Folder, new TargetModelOptions
        {
            Device = CPU, MaxContext = 64, CudaGraphs = true, CudaGraphCapture = false, CudaGraphKeyBucket = 8,
        });
        Assert.True(graphed.UsesCudaGraphs);
        graphed.Prefill([(0, prompt[..^1])]);
        var tokens = new List<int>();
        int next = prompt[^1];
        for (int i = 0; i < 4; i++)
        {
            next = graphed.VerifyGreedy([new TreeInput(0, next, DraftTree.Empty)])[0].Bonus;
            tokens.Add(next);
        }
        // A perfect draft of the next three tokens, then a wrong one: three accepted on the usual path.
        int[] draft = [.. reference.Skip(4).Take(3), (reference[7] + 1) % graphed.Config.VocabSize];
        VerifiedStep step = graphed.VerifyGreedy([new TreeInput(0, next, DraftTree.Chain(draft))])[0];
        Assert.Equal(3, step.AcceptedCount);
        tokens.AddRange(step.Tokens);
        next = step.Bonus;
        while (tokens.Count < reference.Count)
        {
            next = graphed.VerifyGreedy([new TreeInput(0, next, DraftTree.Empty)])[0].Bonus;
            tokens.Add(next);
        }
        Assert.Equal(reference, tokens);
        Assert.Equal(prompt.Length - 1 + reference.Count, graphed.CachedLength(0));
    }

    /// <summary>Forced verification (benchmarks replaying recorded text) of a plain step takes the graphed path too: the
    /// forced token replaces the argmax, the cache is the usual path's, and without a reference the argmax stands.</summary>
    [Fact]
    public void ForcedPlainStepsTakeTheGraphAndKeepTheForcedToken()
    {
        int[] prompt = Prompt()[..20];
        var options = new TargetModelOptions { Device = CPU, MaxContext = 64, CudaGraphKeyBucket = 8 };
        using TargetModel usual = TargetModel.Load(Folder, options);
        using TargetModel graphed = TargetModel.Load(Folder, new TargetModelOptions
        {
            Device = CPU, MaxContext = 64, CudaGraphs = true, CudaGraphCapture = false, CudaGraphKeyBucket = 8,
        });
        int[] forced = [5, 17, 3];
        foreach (TargetModel model in new[] { usual, graphed })
        {
            model.Prefill([(0, prompt[..^1])]);
        }
        int root = prompt[^1];
        for (int i = 0; i < forced.Length; i++)
        {
            int captured = graphed.CapturedGraphCount;
            VerifiedStep a = usual.VerifyForced([new TreeInput(0, root, DraftTree.Empty)], [forced[i..]])[0];
            VerifiedStep b = graphed.VerifyForced([new TreeInput(0, root, DraftTree.Empty)], [forced[i..]])[0];
            Assert.Equal(forced[i], a.Bonus);
            Assert.Equal(a.Tokens, b.Tokens);
            Assert.True(i > 0 || graphed.CapturedGraphCount == captured + 1, "the first forced plain step should have made its graph");
            root = forced[i];
        }
        int argmax = usual.VerifyForced([new TreeInput(0, root, DraftTree.Empty)], [[]])[0].Bonus;
        Assert.Equal(argmax, graphed.VerifyForced([new TreeInput(0, root, DraftTree.Empty)], [[]])[0].Bonus);
        using Tensor cacheA = usual.CachedKeysAndValues(0), cacheB = graphed.CachedKeysAndValues(0);
        Assert.True(cacheA.allclose(cacheB, rtol: 1e-4, atol: 1e-5), "the graphed forced steps should leave the usual path's cache");
    }

    /// <summary>The grouped-matmul attention knob (<see cref="TargetModel.GraphAttention"/>): the fixed-shape step's logits
    /// match the default kernel's (float32, 1e-4) step by step, and its argmax is the usual path's token; skipping
    /// attention changes the logits (the knob reaches the script).</summary>
    [Fact]
    public void GroupedMatmulAttentionGivesTheDefaultLogits()
    {
        int[] prompt = Prompt()[..20];
        using TargetModel model = TargetModel.Load(Folder, new TargetModelOptions { Device = CPU, MaxContext = 64, CudaGraphKeyBucket = 8 });
        Assert.True(model.Config.HeadCount > model.Config.KeyValueHeadCount, "the fixture should have grouped query heads");
        model.Prefill([(0, prompt[..^1])]);
        int root = prompt[^1];
        for (int i = 0; i < 6; i++)
        {
            using Tensor skipped = model.FixedDecodeLogits(0, root, DecodeAttention.Skipped);
            using Tensor grouped = model.FixedDecodeLogits(0, root, DecodeAttention.GroupedMatmul);
            using Tensor standard = model.FixedDecodeLogits(0, root, DecodeAttention.Default);
            Assert.Equal(ScalarType.Float32, standard.dtype);
            double diff = (grouped - standard).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"step {i}: grouped-matmul logits differ by {diff}");
            double skippedDiff = (skipped - standard).abs().max().item<float>();
            Assert.True(skippedDiff > 1e-3, $"step {i}: skipping attention changed the logits by only {skippedDiff}");
            long token = grouped.view(-1).argmax(0).item<long>();
            Assert.Equal(standard.view(-1).argmax(0).item<long>(), token);
            root = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0].Bonus; // the usual path, from the same cache
            Assert.Equal(token, root);
        }
    }

    /// <summary>Plain decoding through the graphed path with grouped-matmul attention, across buckets up to the full
    /// capacity: the usual path's tokens and cache.</summary>
    [Fact]
    public void GroupedMatmulAttentionDecodesAsTheUsualPath()
    {
        const int capacity = 60, slot = 1;
        int[] prompt = Prompt()[..20];
        (int[] expected, Tensor expectedCache) = Decode(slot, prompt, capacity, new TargetModelOptions { Device = CPU, MaxBatch = 2, MaxContext = capacity }, out _);
        (int[] actual, Tensor actualCache) = Decode(slot, prompt, capacity, new TargetModelOptions
        {
            Device = CPU, MaxBatch = 2, MaxContext = capacity, CudaGraphs = true, CudaGraphCapture = false, CudaGraphKeyBucket = 8,
        }, out int graphs, DecodeAttention.GroupedMatmul);

        Assert.Equal(expected, actual);
        Assert.Equal(6, graphs);
        using (expectedCache)
        using (actualCache)
        {
            double diff = (expectedCache - actualCache).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"cache differs by {diff}");
        }
    }

    /// <summary>One graph per key bucket serves every slot: three slots decoding in turn, with other prompts, get the
    /// usual path's tokens and caches each, and the graphs kept are the buckets reached, not slots × buckets.</summary>
    [Fact]
    public void SlotsShareTheGraphsOfABucket_AndEachDecodesItsOwnSequence()
    {
        const int capacity = 48;
        int[] prompt = Prompt();
        int[][] prompts = [prompt[..20], prompt[5..22], prompt[10..30]];
        var usual = new TargetModelOptions { Device = CPU, MaxBatch = 3, MaxContext = capacity };
        var graphedOptions = new TargetModelOptions
        {
            Device = CPU, MaxBatch = 3, MaxContext = capacity, CudaGraphs = true, CudaGraphCapture = false, CudaGraphKeyBucket = 8,
        };
        var tokens = new List<int>[2][];
        var caches = new Tensor[2][];
        int graphs = 0;
        foreach ((int run, TargetModelOptions options) in new[] { (0, usual), (1, graphedOptions) })
        {
            using TargetModel model = TargetModel.Load(Folder, options);
            tokens[run] = [[], [], []];
            int[] roots = new int[3];
            for (int slot = 0; slot < 3; slot++)
            {
                model.Prefill([(slot, prompts[slot][..^1])]);
                roots[slot] = prompts[slot][^1];
            }
            for (int round = 0; round < 12; round++)
            {
                for (int slot = 0; slot < 3; slot++)
                {
                    roots[slot] = model.VerifyGreedy([new TreeInput(slot, roots[slot], DraftTree.Empty)])[0].Bonus;
                    tokens[run][slot].Add(roots[slot]);
                }
            }
            caches[run] = [.. Enumerable.Range(0, 3).Select(model.CachedKeysAndValues)];
            graphs = model.CapturedGraphCount;
        }
        for (int slot = 0; slot < 3; slot++)
        {
            Assert.Equal(tokens[0][slot], tokens[1][slot]);
            double diff = (caches[0][slot] - caches[1][slot]).abs().max().item<float>();
            Assert.True(diff <= 1e-4, $"slot {slot}: cache differs by {diff}");
        }
        // cached lengths 16..30 before the steps, keys = length + 1 rounded up to 8: buckets 24 and 32 for all three slots
        // (graphs kept per slot made 6)
        Assert.Equal(2, graphs);
        foreach (Tensor cache in caches.SelectMany(c => c))
        {
            cache.Dispose();
        }
    }

    [Fact]
    public void DecodeGraphsBenchRefusesWithoutCuda()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        int code = DecodeGraphsCommand.Build().Parse(["--context", "16", "--tokens", "2"]).Invoke(
            new System.CommandLine.InvocationConfiguration { Output = output, Error = error });

        Assert.Equal(GraphProbeCommand.NoCudaExitCode, code);
        Assert.Contains("CUDA", error.ToString(), StringComparison.Ordinal);
    }

    private static (int[] Tokens, Tensor Cache) Decode(int slot, int[] prompt, int capacity, TargetModelOptions options, out int graphs,
        DecodeAttention attention = DecodeAttention.Default)
    {
        using TargetModel model = TargetModel.Load(Folder, options);
        model.GraphAttention = attention;
        model.Prefill([(slot, prompt[..^1])]);
        var tokens = new List<int>();
        int root = prompt[^1];
        while (model.CachedLength(slot) < capacity)
        {
            root = model.VerifyGreedy([new TreeInput(slot, root, DraftTree.Empty)])[0].Bonus;
            tokens.Add(root);
        }
        graphs = model.CapturedGraphCount;
        return (tokens.ToArray(), model.CachedKeysAndValues(slot));
    }
}
