using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests.Parallel;

/// <summary>
/// The sharded forward on the reference path, ranks simulated on threads of this process: world size 1 through the
/// communicator path gives the one-device path's bits; world sizes 2 and 4 give its logits within float32 tolerance
/// (prefill, causal and masked chunks, batched tree verification) and its greedy tokens; every rank's KV cache holds its
/// key/value heads of the whole model's cache, with the same block tables.
/// </summary>
public sealed class TensorParallelModelTests : IDisposable
{
    private readonly TestFiles.TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static TargetModelOptions Options(int maxBatch = 3, int maxContext = 96) => new()
    {
        Device = CPU,
        MaxBatch = maxBatch,
        MaxContext = maxContext,
        PrefillChunk = 8,
        CausalPrefillChunk = 16,
        ScriptedLayers = false, // the one-device reference runs the eager layers the ranks run
    };

    /// <summary>A checkpoint folder: a tiny fixture, or a random one written here (the biased Llama over several files).</summary>
    private string Checkpoint(string name)
    {
        switch (name)
        {
            case "biased":
                ParallelFixtures.WriteRandomCheckpoint(_dir.File("biased"), ParallelFixtures.BiasedLlama, seed: 11, maxShardBytes: 80_000);
                return _dir.File("biased");
            case "qwen3":
                ParallelFixtures.WriteRandomCheckpoint(_dir.File("qwen3"), ParallelFixtures.Qwen3, seed: 12);
                return _dir.File("qwen3");
            default:
                return SharedFixtures.TinyCheckpoint(name);
        }
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void WorldSizeOneThroughTheCommunicatorIsTheOneDevicePathBitForBit(string name)
    {
        string folder = Checkpoint(name);
        using TargetModel whole = TargetModel.Load(folder, Options());
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = 1 }, Options());
        Assert.Contains("tensor parallel, rank 0 of 1", parallel.Explain(new VerifyStep([new TreeInput(0, 1, DraftTree.Empty)], AcceptanceRule.Greedy)), StringComparison.Ordinal);
        int[] prompt = Prompt(vocab: whole.Config.VocabSize, seed: 1, length: 37);
        foreach (TargetModel m in new[] { whole, parallel })
        {
            m.Prefill([(0, prompt[..^1])]);
        }
        TreeInput[] tree = [new TreeInput(0, prompt[^1], RandomTree(new Random(2), whole.Config.VocabSize, 9))];
        using Tensor expected = whole.TreeLogits(tree);
        using Tensor actual = parallel.TreeLogits(tree);
        Assert.Equal(expected.data<float>().ToArray(), actual.data<float>().ToArray());

        var rng = new Random(3);
        int root = prompt[^1];
        for (int step = 0; step < 6; step++)
        {
            TreeInput[] input = [new TreeInput(0, root, RandomTree(rng, whole.Config.VocabSize, 6))];
            VerifiedStep a = whole.VerifyGreedy(input)[0], b = parallel.VerifyGreedy(input)[0];
            Assert.Equal(a.Tokens, b.Tokens);
            Assert.Equal(a.AcceptedNodes, b.AcceptedNodes);
            root = a.Bonus;
        }
        using Tensor cacheA = whole.CachedKeysAndValues(0), cacheB = parallel.CachedKeysAndValues(0);
        Assert.Equal(cacheA.data<float>().ToArray(), cacheB.data<float>().ToArray());
        // through the communicator: two all-reduces per layer per forward and the logits' gather
        Assert.True(parallel.TensorParallel!.Communicator.Collectives >= 2 * whole.Config.LayerCount * 8, "the one-rank path skipped the communicator");
    }

    [Theory]
    [InlineData("llama-gqa", 2)]
    [InlineData("llama-gqa", 4)] // 2 key/value heads on 4 ranks: replicated
    [InlineData("qwen2-tied", 2)] // q/k/v biases, tied head
    [InlineData("biased", 2)] // o and MLP biases (rank 0 only), vocabulary 1001: uneven shards
    [InlineData("biased", 4)]
    [InlineData("qwen3", 2)] // q/k norms
    public void ShardedRanksComputeTheWholeModel(string name, int world)
    {
        string folder = Checkpoint(name);
        using TargetModel whole = TargetModel.Load(folder, Options());
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = world, CollectiveTimeout = TimeSpan.FromSeconds(60) }, Options());
        Assert.Equal(world - 1, parallel.OtherRanks.Count);
        Assert.Equal(whole.Config.HeadCount, parallel.Config.HeadCount); // the coordinator shows the whole model's shape
        int vocab = whole.Config.VocabSize;
        // two sequences in slots 0 and 2: a causal first chunk then masked chunks, and a short one
        int[] first = Prompt(vocab, seed: 4, length: 41), second = Prompt(vocab, seed: 5, length: 12);
        foreach (TargetModel m in new[] { whole, parallel })
        {
            m.Prefill([(0, first[..^1]), (2, second[..^1])]);
        }
        var rng = new Random(6);
        TreeInput[] trees = [new TreeInput(0, first[^1], RandomTree(rng, vocab, 11)), new TreeInput(2, second[^1], RandomTree(rng, vocab, 5))];
        using (Tensor expected = whole.TreeLogits(trees), actual = parallel.TreeLogits(trees))
        {
            AssertClose(expected, actual, $"{name} on {world} ranks: tree logits after prefill");
        }

        int[] roots = [first[^1], second[^1]];
        for (int step = 0; step < 8; step++)
        {
            TreeInput[] inputs = [new TreeInput(0, roots[0], RandomTree(rng, vocab, 7)), new TreeInput(2, roots[1], RandomTree(rng, vocab, 3))];
            VerifiedStep[] a = whole.VerifyGreedy(inputs), b = parallel.VerifyGreedy(inputs);
            for (int i = 0; i < 2; i++)
            {
                Assert.Equal(a[i].Tokens, b[i].Tokens);
                roots[i] = a[i].Bonus;
            }
        }
        AssertRanksHoldTheWholeCache(whole, parallel, [0, 2]);
    }

    /// <summary>A prefill that chooses the next token (the engine's first token) on a sharded model: every rank runs the
    /// marked rows' last layer and the head's gather with the coordinator, whose logits equal the one-device model's;
    /// the ranks' caches then hold the whole model's, and the coordinator's greedy choice is the one-device choice.</summary>
    [Theory]
    [InlineData("llama-gqa", 2)]
    [InlineData("biased", 4)]
    public void APrefillThatChoosesTheNextToken_TakesEveryRankAlong(string name, int world)
    {
        string folder = Checkpoint(name);
        using TargetModel whole = TargetModel.Load(folder, Options());
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = world, CollectiveTimeout = TimeSpan.FromSeconds(60) }, Options());
        int vocab = whole.Config.VocabSize;
        int[] first = Prompt(vocab, seed: 7, length: 41), second = Prompt(vocab, seed: 8, length: 12);
        (int, int[])[] sequences = [(0, first), (2, second)];
        using (Tensor expected = whole.PrefillWithLogits(sequences, [true, true])!, actual = parallel.PrefillWithLogits(sequences, [true, true])!)
        {
            AssertClose(expected, actual, $"{name} on {world} ranks: logits after the prompts' last tokens");
        }
        AssertRanksHoldTheWholeCache(whole, parallel, [0, 2]);
        var greedy = new SamplingOptions { Temperature = 0 };
        int[] third = Prompt(vocab, seed: 9, length: 20);
        Assert.Equal(whole.PrefillAndChoose([(1, third)], [new NextTokenChoice(greedy)]), parallel.PrefillAndChoose([(1, third)], [new NextTokenChoice(greedy)]));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task GreedySpeculationThroughTheEngineEqualsPlainDecoding(int world)
    {
        using TargetModel model = TargetModel.LoadTensorParallel(SharedFixtures.TinyCheckpoint(EngineFixture.Checkpoint),
            new TensorParallelOptions { WorldSize = world, CollectiveTimeout = TimeSpan.FromSeconds(60) },
            new TargetModelOptions { Device = CPU, MaxBatch = 2, MaxContext = 192, PrefillChunk = 32 });
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 12,
            EndOfSequenceTokenIds = [],
        });
        var cases = new[] { (Seed: 21, Length: 30, Count: 40), (Seed: 22, Length: 51, Count: 30), (Seed: 23, Length: 17, Count: 35) };
        GenerationResult[] results = await Task.WhenAll(cases.Select(c => engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(c.Seed, c.Length),
            MaxNewTokens = c.Count,
        })));
        for (int i = 0; i < cases.Length; i++)
        {
            Assert.Equal(EngineFixture.PlainGreedy(EngineFixture.Prompt(cases[i].Seed, cases[i].Length), cases[i].Count), results[i].TokenIds);
        }
        Assert.True(engine.Statistics.Totals.AcceptedTokens > 0, "no draft token was accepted: the test would prove nothing about speculation");

        // The conversation's next call reuses its cached prefix on every rank.
        int[] next = [.. EngineFixture.Prompt(21, 30), .. results[0].TokenIds, .. EngineFixture.Prompt(24, 9)];
        GenerationResult continued = await engine.GenerateAsync(new GenerationRequest { PromptTokens = next, MaxNewTokens = 10 });
        Assert.Equal(EngineFixture.PlainGreedy(next, 10), continued.TokenIds);
        Assert.True(continued.Statistics.CachedPromptTokens > 0, "the continued call should reuse the cached prefix");
        Assert.All(model.OtherRanks, r => Assert.Equal(model.KvBookkeeping(), r.KvBookkeeping()));
    }

    /// <summary>The known failure of other systems: ranks that draft or sample for themselves diverge (and hang the
    /// collectives). Here a drafter that never proposes the same tree twice and sampling without a seed run on the
    /// coordinator only; the other ranks follow its trees and decisions, so their caches hold exactly the emitted
    /// sequence's keys and values.</summary>
    [Fact]
    public void NondeterministicDraftsAndUnseededSamplingCannotMakeRanksDiverge()
    {
        string folder = Checkpoint("llama-gqa");
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = 2, CollectiveTimeout = TimeSpan.FromSeconds(60) }, Options());
        int vocab = parallel.Config.VocabSize;
        int[] prompt = Prompt(vocab, seed: 8, length: 20);
        parallel.Prefill([(1, prompt[..^1])]);
        var unseeded = new SamplingOptions { Temperature = 1.0f }; // its random stream is seeded by the operating system
        var sequence = new List<int>(prompt);
        var random = new Random(); // a different tree in every run
        for (int step = 0; step < 10; step++)
        {
            TreeInput input = new(1, sequence[^1], RandomTree(random, vocab, random.Next(0, 8)));
            VerifiedStep s = parallel.VerifySampled([input], [unseeded])[0];
            sequence.AddRange(s.Tokens);
        }
        Assert.All(parallel.OtherRanks, r => Assert.Equal(parallel.KvBookkeeping(), r.KvBookkeeping()));
        // The one-device model's cache of the emitted sequence (all but the last token, the next root).
        using TargetModel whole = TargetModel.Load(folder, Options());
        whole.Prefill([(1, sequence.ToArray()[..^1])]);
        AssertRanksHoldTheWholeCache(whole, parallel, [1]);
    }

    /// <summary>The benches compare random models at several world sizes with the one-device model of the same seed: the
    /// random source must split the very same whole tensors.</summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void RandomModelsOfOneSeedAreTheSameModelAtEveryWorldSize(int world)
    {
        ModelConfig config = ParallelFixtures.Parse(ParallelFixtures.BiasedLlama);
        TargetModelOptions options = Options();
        using TargetModel whole = TargetModel.CreateRandomWhole(config, options, seed: 5);
        using TargetModel parallel = TargetModel.CreateRandomTensorParallel(config, new TensorParallelOptions { WorldSize = world }, options, seed: 5);
        using TargetModel other = TargetModel.CreateRandomWhole(config, options, seed: 6);
        int[] prompt = Prompt(config.VocabSize, seed: 13, length: 30);
        TreeInput[] tree = [new TreeInput(0, prompt[^1], RandomTree(new Random(14), config.VocabSize, 8))];
        foreach (TargetModel m in new[] { whole, parallel, other })
        {
            m.Prefill([(0, prompt[..^1])]);
        }
        using Tensor expected = whole.TreeLogits(tree), actual = parallel.TreeLogits(tree), unrelated = other.TreeLogits(tree);
        AssertClose(expected, actual, $"random model on {world} ranks");
        Assert.False(expected.allclose(unrelated, rtol: 0, atol: 1e-3), "another seed should give another model");
    }

    [Fact]
    public void EachRankReportsTheMemoryOnItsDevice()
    {
        string folder = Checkpoint("llama-gqa");
        using TargetModel whole = TargetModel.Load(folder, Options());
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = 2 }, Options());
        MemoryEstimate one = whole.Memory, rank = parallel.Memory;
        Assert.Equal(one.KvBytesPerToken / 2, rank.KvBytesPerToken); // one of the 2 key/value heads
        Assert.Equal(one.KvTokens, rank.KvTokens);
        long embedding = 1000L * 64 * 4, norms = (2 * 2 + 1) * 64 * 4;
        Assert.Equal((one.WeightBytes - embedding - norms) / 2 + embedding + norms, rank.WeightBytes);
        Assert.Equal(parallel.TensorParallel!.Shard.WeightBytes(4), rank.WeightBytes);
    }

    [Fact]
    public void ARankFailingInAForwardStopsTheGroupInsteadOfHangingIt()
    {
        string folder = Checkpoint("llama-gqa");
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = 2, CollectiveTimeout = TimeSpan.FromMinutes(5) }, Options());
        InProcessGroup group = InProcessGroup.Of(parallel.TensorParallel!.Communicator)!;
        int[] prompt = Prompt(parallel.Config.VocabSize, seed: 9, length: 10);
        parallel.Prefill([(0, prompt[..^1])]);
        long at = parallel.OtherRanks[0].TensorParallel!.Communicator.Collectives + 3; // mid-way through the next forward
        group.FailWhen = (rank, index) => rank == 1 && index == at;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<TensorParallelException>(() => parallel.VerifyGreedy([new TreeInput(0, prompt[^1], DraftTree.Empty)]));
        Assert.Contains("injected failure on rank 1", e.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromMinutes(1), "the coordinator waited for the timeout instead of the abort");
        // every later call is refused at once, and disposing does not hang
        Assert.Throws<TensorParallelException>(() => parallel.Truncate(0, 1));
        Assert.True(group.Failed);
    }

    [Fact]
    public void AHostRefusalOnEveryRankLeavesTheGroupWorking()
    {
        string folder = Checkpoint("llama-gqa");
        // a pool of 2 blocks of 16 tokens
        var options = new TargetModelOptions { Device = CPU, MaxBatch = 2, MaxContext = 32, KvCacheTokens = 32, KvBlockSize = 16, ScriptedLayers = false };
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = 2, CollectiveTimeout = TimeSpan.FromSeconds(60) }, options);
        using TargetModel whole = TargetModel.Load(folder, options);
        int[] prompt = Prompt(parallel.Config.VocabSize, seed: 10, length: 20);
        foreach (TargetModel m in new[] { whole, parallel })
        {
            m.Prefill([(0, prompt[..^1])]);
            // slot 1 cannot get 2 blocks while slot 0 holds 2 of the 2: the same refusal on every rank, before any collective
            Assert.Throws<KvCacheExhaustedException>(() => m.Prefill([(1, prompt[..^1])]));
        }
        Assert.All(parallel.OtherRanks, r => Assert.Equal(parallel.KvBookkeeping(), r.KvBookkeeping()));
        VerifiedStep a = whole.VerifyGreedy([new TreeInput(0, prompt[^1], DraftTree.Empty)])[0];
        VerifiedStep b = parallel.VerifyGreedy([new TreeInput(0, prompt[^1], DraftTree.Empty)])[0];
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.False(InProcessGroup.Of(parallel.TensorParallel!.Communicator)!.Failed);
    }

    [Fact]
    public void WhatTensorParallelModelsCannotDoIsRefused()
    {
        string folder = Checkpoint("llama-gqa");
        Assert.Contains("CudaGraphs = false", Assert.Throws<NotSupportedException>(() => TargetModel.LoadTensorParallel(folder,
            new TensorParallelOptions { WorldSize = 2 }, new TargetModelOptions { Device = CPU, CudaGraphs = true })).Message, StringComparison.Ordinal);
        Assert.Contains("World sizes that work: 1, 2, 4.", Assert.Throws<TensorParallelException>(() => TargetModel.LoadTensorParallel(folder,
            new TensorParallelOptions { WorldSize = 3 }, Options())).Message, StringComparison.Ordinal);
        Assert.ThrowsAny<NcclUnavailableException>(() => TargetModel.LoadTensorParallel(folder,
            new TensorParallelOptions { WorldSize = 2, Transport = TensorParallelTransport.Nccl }, Options()));
        using TargetModel parallel = TargetModel.LoadTensorParallel(folder, new TensorParallelOptions { WorldSize = 2 }, Options());
        Assert.Throws<NotSupportedException>(() => parallel.CommitDraftRegion(0, [1]));
    }

    [Fact]
    public void ARankThatCannotLoadFailsTheLoadWithoutHanging()
    {
        // rank 1 on a CUDA device that this CPU build does not have: its load fails while rank 0's succeeds
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Assert.ThrowsAny<Exception>(() => TargetModel.LoadTensorParallel(SharedFixtures.TinyCheckpoint("llama-gqa"),
            new TensorParallelOptions { WorldSize = 2, Devices = [CPU, new Device(DeviceType.CUDA, 0)], CollectiveTimeout = TimeSpan.FromMinutes(5) }, Options()));
        Assert.True(watch.Elapsed < TimeSpan.FromMinutes(1), $"took {watch.Elapsed}");
    }

    /// <summary>The ranks' cached keys and values, put together by key/value head, equal the one-device model's, and every
    /// rank's block tables are the coordinator's.</summary>
    private static void AssertRanksHoldTheWholeCache(TargetModel whole, TargetModel parallel, int[] slots)
    {
        TargetModel[] ranks = [parallel, .. parallel.OtherRanks];
        Assert.All(ranks, r => Assert.Equal(parallel.KvBookkeeping(), r.KvBookkeeping()));
        foreach (int slot in slots)
        {
            Assert.Equal(whole.CachedLength(slot), parallel.CachedLength(slot));
            using var scope = NewDisposeScope();
            Tensor expected = whole.CachedKeysAndValues(slot); // [layers, 2, kv heads, length, head dim]
            var heads = new Tensor?[whole.Config.KeyValueHeadCount];
            foreach (TargetModel rank in ranks)
            {
                ShardRange range = rank.TensorParallel!.Shard.KeyValueHeads;
                Tensor mine = rank.CachedKeysAndValues(slot);
                for (int h = 0; h < range.Count; h++)
                {
                    Tensor head = mine.narrow(2, h, 1);
                    if (heads[range.Start + h] is { } replica)
                    {
                        Assert.True(replica.eq(head).all().item<bool>(), $"replicas of key/value head {range.Start + h} differ");
                    }
                    heads[range.Start + h] = head;
                }
            }
            AssertClose(expected, cat(heads.Select(h => h!).ToArray(), 2), $"slot {slot}: the ranks' caches put together");
        }
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = expected.abs().max().item<float>();
        double diff = (expected - actual).abs().max().item<float>();
        Assert.True(diff <= 2e-5 * scale, $"{what}: max difference {diff:E2} of max {scale:E2}");
    }

    private static int[] Prompt(int vocab, int seed, int length)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => rng.Next(vocab)).ToArray();
    }

    /// <summary>A random tree of up to <paramref name="nodes"/> nodes (siblings distinct).</summary>
    private static DraftTree RandomTree(Random rng, int vocab, int nodes)
    {
        var tokens = new List<int>();
        var parents = new List<int>();
        for (int i = 0; i < nodes; i++)
        {
            int parent = rng.Next(-1, i), token = rng.Next(vocab);
            if (!tokens.Where((t, j) => parents[j] == parent && t == token).Any())
            {
                tokens.Add(token);
                parents.Add(parent);
            }
        }
        return tokens.Count == 0 ? DraftTree.Empty : DraftTree.Create(tokens.ToArray(), parents.ToArray(), []);
    }
}
