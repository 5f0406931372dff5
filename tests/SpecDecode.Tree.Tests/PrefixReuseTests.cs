using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The paged KV cache's prefix reuse (<see cref="TargetModel.ReusePrefix"/>) on the tiny fixtures in float32: a sequence
/// that starts from another sequence's cached blocks computes the same keys, values and logits as a fresh prefill, for
/// prefixes that end on a block boundary (shared blocks only) and inside a block (the partly matched block copied); the
/// shared blocks are counted; one sequence's speculation never changes what a sharing sequence computes; and blocks
/// come back when nothing runs.
/// </summary>
public sealed class PrefixReuseTests
{
    /// <summary>The masked prefill after a reused prefix and the reference's causal prefill block their products
    /// differently; they agree to a few float32 roundings (as <see cref="CausalPrefillTests"/>).</summary>
    private const double Float32Tolerance = 5e-6;

    private const int Block = 16;

    private static int[] Ids(string folder, string field)
    {
        using var expected = SharedFixtures.Expected(folder);
        return SharedFixtures.Ids(expected, field).Select(i => (int)i).ToArray();
    }

    private static TargetModel Load(string folder, bool prefixCaching, bool scripted = true, long? kvTokens = null, int maxBatch = 3,
        PrefillAttention prefill = PrefillAttention.Auto) =>
        TargetModel.Load(folder, new TargetModelOptions
        {
            Device = CPU, DType = ScalarType.Float32, MaxBatch = maxBatch, MaxContext = 64, KvBlockSize = Block,
            PrefixCaching = prefixCaching, ScriptedLayers = scripted, KvCacheTokens = kvTokens, PrefillAttention = prefill,
        });

    /// <summary>A sequence that shares the prompt's first <paramref name="shared"/> tokens and then goes elsewhere.</summary>
    private static int[] Diverging(int[] prompt, int[] other, int shared)
    {
        int[] tail = other.Where(t => t != prompt[shared]).Take(6).ToArray();
        return [.. prompt[..shared], .. tail];
    }

    private static (float[] Cache, float[] Logits) Fresh(string folder, int[] prompt, DraftTree draft, bool scripted)
    {
        using TargetModel model = Load(folder, prefixCaching: false, scripted);
        model.Prefill([(0, prompt[..^1])]);
        using Tensor kv = model.CachedKeysAndValues(0);
        using Tensor logits = model.TreeLogits([new TreeInput(0, prompt[^1], draft)]);
        return (kv.data<float>().ToArray(), logits.data<float>().ToArray());
    }

    [Theory]
    [InlineData("llama-gqa", 32, true, false)]   // two whole blocks shared
    [InlineData("llama-gqa", 16, false, false)]  // one whole block, eager layers
    [InlineData("llama-gqa", 21, true, false)]   // one block shared, the second copied for its first 5 tokens
    [InlineData("llama-gqa", 35, false, false)]
    [InlineData("qwen2-tied", 32, true, false)]
    [InlineData("qwen2-tied", 9, true, false)]   // only a copied part of the first block
    [InlineData("llama-gqa", 32, true, true)] // the new tokens in a packed forward: on a block boundary
    [InlineData("llama-gqa", 21, true, true)] // and inside a block
    [InlineData("qwen2-tied", 9, true, true)]
    public void LogitsAfterAReusedPrefixEqualAFreshPrefill(string fixture, int shared, bool scripted, bool packed)
    {
        string folder = SharedFixtures.TinyCheckpoint(fixture);
        int[] prompt = Ids(folder, "prompt_ids"); // 37 tokens
        int[] other = Diverging(prompt, Ids(folder, "second_prompt_ids"), shared);
        DraftTree draft = DraftTree.Chain(other[^3..]); // any tree: its rows attend to the reused prefix too
        (float[] referenceCache, float[] referenceLogits) = Fresh(folder, prompt, draft, scripted);

        using TargetModel model = Load(folder, prefixCaching: true, scripted, prefill: packed ? PrefillAttention.Packed : PrefillAttention.Auto);
        model.Prefill([(0, other)]);
        model.Truncate(0, 0); // ends the sequence: its blocks stay cached
        int reused = model.ReusePrefix(1, prompt.AsSpan(0, prompt.Length - 1));
        Assert.Equal(shared, reused);
        Assert.Equal(shared, model.CachedLength(1));
        model.Prefill([(1, prompt[reused..^1])]);
        using Tensor kv = model.CachedKeysAndValues(1);
        using Tensor all = model.TreeLogits([new TreeInput(1, prompt[^1], draft)]);
        using Tensor logits = all[1]; // rows are slots
        CausalPrefillTests.AssertClose(referenceCache, kv.data<float>().ToArray(), Float32Tolerance, $"{fixture}, {shared} shared: cache");
        CausalPrefillTests.AssertClose(referenceLogits, logits.data<float>().ToArray(), Float32Tolerance, $"{fixture}, {shared} shared: logits");
    }

    [Fact]
    public void AFinishedSequencesGeneratedTokensAreReusedToo_AndNothingWithPrefixCachingOff()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        foreach (bool caching in new[] { true, false })
        {
            using TargetModel model = Load(folder, caching);
            model.Prefill([(0, prompt[..20])]);
            int root = prompt[20];
            var emitted = new List<int>();
            for (int step = 0; step < 6; step++)
            {
                VerifiedStep s = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Chain(prompt[(21 + step)..(23 + step)]))])[0];
                emitted.Add(root);
                emitted.AddRange(s.Tokens[..^1]);
                root = s.Bonus;
            }
            int cached = model.CachedLength(0);
            Assert.Equal(21 + emitted.Count - 1, cached);
            model.Truncate(0, 0);
            // the next call of the conversation: everything cached so far, then a new message
            int[] next = [.. prompt[..20], .. emitted, root, 5, 6, 7];
            int reused = model.ReusePrefix(2, next);
            Assert.Equal(caching ? cached : 0, reused);
        }
    }

    [Fact]
    public void TwoSequencesWithOneSystemPromptShareItsBlocks_AndOnesSpeculationNeverChangesTheOther()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        int[] second = Ids(folder, "second_prompt_ids");
        int[] system = prompt[..33]; // two whole blocks and one token
        int[] a = [.. system, .. second[..2]], b = [.. system, .. second[5..9]];

        // b decoded alone, without any sharing: the reference
        List<int> solo;
        using (TargetModel alone = Load(folder, prefixCaching: false))
        {
            alone.Prefill([(0, b[..^1])]);
            solo = Greedy(alone, 0, b[^1], 8);
        }

        using TargetModel model = Load(folder, prefixCaching: true);
        model.Prefill([(0, a[..^1])]); // registered right after its prefill: shareable while it runs
        int reused = model.ReusePrefix(1, b.AsSpan(0, b.Length - 1));
        Assert.Equal(33, reused); // two shared blocks, and the third copied for its one matching token
        IReadOnlyList<int> blocksA = model.KvBlocksOf(0), blocksB = model.KvBlocksOf(1);
        Assert.Equal(blocksA.Take(2), blocksB.Take(2));
        Assert.NotEqual(blocksA[2], blocksB[2]);
        Assert.Equal(2, blocksA.Intersect(blocksB).Count());
        model.Prefill([(1, b[33..^1])]);

        // a speculates with long wrong trees (rows written past its length, rejected, compacted) while b decodes
        var random = new Random(5);
        int rootA = a[^1], rootB = b[^1];
        var tokensB = new List<int>();
        for (int step = 0; step < 8; step++)
        {
            DraftTree wrong = DraftTree.Chain(Enumerable.Range(0, 12).Select(_ => random.Next(100)).ToArray());
            VerifiedStep[] steps = model.VerifyGreedy([new TreeInput(0, rootA, wrong), new TreeInput(1, rootB, DraftTree.Empty)]);
            rootA = steps[0].Bonus;
            rootB = steps[1].Bonus;
            tokensB.Add(rootB);
        }
        Assert.Equal(solo, tokensB);
    }

    [Fact]
    public void UnderMemoryPressureIdleCachedBlocksAreEvicted_AndEveryBlockComesBackWhenIdle()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        using TargetModel model = Load(folder, prefixCaching: true, kvTokens: 64, maxBatch: 2); // 4 blocks of 16
        Assert.Equal(4, model.KvCache.Blocks);
        model.Prefill([(0, prompt[..30])]); // 2 blocks
        model.Truncate(0, 0);
        Assert.Equal(2, model.KvCache.IdleCachedBlocks);
        // a different sequence needing all four blocks evicts the cached ones
        int[] other = [.. Enumerable.Range(1, 60).Select(i => (prompt[0] + i) % model.Config.VocabSize)];
        model.Prefill([(1, other)]);
        Assert.Equal(0, model.KvCache.AvailableBlocks);
        // no block left: a step of the other slot is refused with the numbers, and nothing is cached or corrupted
        var e = Assert.Throws<KvCacheExhaustedException>(() => model.Prefill([(0, prompt[..5])]));
        Assert.Contains("KvCacheTokens", e.Message);
        Assert.Equal(0, model.CachedLength(0));
        Assert.Equal(60, model.CachedLength(1));
        model.Truncate(1, 0);
        model.Truncate(0, 0);
        Assert.Equal(4, model.KvCache.AvailableBlocks);
        Assert.Equal(0, model.KvCache.UsedBlocks);
        Assert.Equal(0, model.ReusePrefix(0, prompt)); // the first sequence's blocks were evicted
        // the second's three whole blocks are cached; its partly filled fourth would need a free block for the copy, and
        // every other block is part of the cached chain or the copy's source
        Assert.Equal(48, model.ReusePrefix(1, other));
    }

    [Fact]
    public void MeasuringTheCostModelLeavesCachedPrefixesIntact()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        (float[] referenceCache, float[] referenceLogits) = Fresh(folder, prompt, DraftTree.Empty, scripted: true);
        using TargetModel model = Load(folder, prefixCaching: true);
        model.Prefill([(0, prompt[..^1])]);
        model.Truncate(0, 0);
        VerificationCostModel.Measure(model, context: 20, maxWidth: 4, repeats: 1); // fills the slots with random keys and values
        Assert.Equal(prompt.Length - 1, model.ReusePrefix(0, prompt.AsSpan(0, prompt.Length - 1)));
        using Tensor kv = model.CachedKeysAndValues(0);
        using Tensor logits = model.TreeLogits([new TreeInput(0, prompt[^1], DraftTree.Empty)]);
        CausalPrefillTests.AssertClose(referenceCache, kv.data<float>().ToArray(), Float32Tolerance, "cache after measuring");
        CausalPrefillTests.AssertClose(referenceLogits, logits.data<float>().ToArray(), Float32Tolerance, "logits after measuring");
    }

    /// <summary>Greedy decoding of <paramref name="count"/> tokens from <paramref name="root"/>.</summary>
    private static List<int> Greedy(TargetModel model, int slot, int root, int count)
    {
        var tokens = new List<int>();
        for (int i = 0; i < count; i++)
        {
            root = model.VerifyGreedy([new TreeInput(slot, root, DraftTree.Empty)])[0].Bonus;
            tokens.Add(root);
        }
        return tokens;
    }
}
