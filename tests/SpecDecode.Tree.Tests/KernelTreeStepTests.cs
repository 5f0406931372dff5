using System.Text;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The host side of the tree kernels (<see cref="KernelTreeStep"/>): the step's input array, the padded row counts, how
/// products and attention are cut into blocks, the result's reading and the model rules. The kernels themselves run
/// only on a GPU (TreeBench tree-kernels: logits against the usual path, bitwise compaction, speculative decoding on the
/// trained model; bench/RESULTS.md).
/// </summary>
public sealed class KernelTreeStepTests
{
    [Fact]
    public void PackStateLaysOutTheTreeWithAncestorSetsAndPadding()
    {
        // root, a (depth 1), b (depth 1), c under a (depth 2)
        DraftTree tree = DraftTree.Create([10, 11, 12], [-1, -1, 0], []);
        long[] forced = [7, -1, 8, -1];
        long[] s = KernelTreeStep.PackState([new TreeStepSequence(3, 100, 9, tree, forced)], 8);
        Assert.Equal(KernelTreeStep.StateLength(8), s.Length);
        Assert.Equal(1, s[0]);
        Assert.Equal(4, s[1]);
        int rows = 8;
        (int tokens, int depths, int parents, int ancestors, int forcedAt, int sequence, int perSequence) = Offsets(rows);
        Assert.Equal(new long[] { 9, 10, 11, 12, 0, 0, 0, 0 }, s[tokens..depths]);
        Assert.Equal(new long[] { 0, 1, 1, 2, 0, 0, 0, 0 }, s[depths..parents]);
        Assert.Equal(new long[] { 0, 0, 0, 1, 0, 0, 0, 0 }, s[parents..ancestors]);
        // row r's set: itself and its ancestors (bit j = the sequence's entry j); padding rows have none
        Assert.Equal(new long[] { 0b1, 0b11, 0b101, 0b1011, 0, 0, 0, 0 }, s[ancestors..forcedAt]);
        Assert.Equal(new long[] { 7, -1, 8, -1, -1, -1, -1, -1 }, s[forcedAt..sequence]);
        Assert.Equal(new long[] { 0, 0, 0, 0, -1, -1, -1, -1 }, s[sequence..perSequence]);
        Assert.Equal((100L, 0L, 4L, 3L), Sequence(s, rows, 0));
    }

    [Fact]
    public void PackStatePutsEachSequenceInItsOwnRowsWithAncestorSetsOverItsOwnEntries()
    {
        // slot 5: a plain step (root only); slot 2: root, a, b under a; slot 7: root, x, y (siblings)
        TreeStepSequence[] sequences =
        [
            new(5, 40, 1, DraftTree.Empty),
            new(2, 300, 2, DraftTree.Create([20, 21], [-1, 0], []), [30, 31, -1]),
            new(7, 9, 3, DraftTree.Create([40, 41], [-1, -1], [])),
        ];
        int rows = 8;
        long[] s = KernelTreeStep.PackState(sequences, rows);
        (int tokens, int depths, int parents, int ancestors, int forcedAt, int sequence, int perSequence) = Offsets(rows);
        Assert.Equal(3, s[0]);
        Assert.Equal(7, s[1]);
        Assert.Equal(new long[] { 1, 2, 20, 21, 3, 40, 41, 0 }, s[tokens..depths]);
        Assert.Equal(new long[] { 0, 0, 1, 2, 0, 1, 1, 0 }, s[depths..parents]);
        Assert.Equal(new long[] { 0, 1, 1, 2, 4, 4, 4, 0 }, s[parents..ancestors]);
        // ancestor sets in each sequence's own entries (bit e: its entry e, 0 the root)
        Assert.Equal(new long[] { 0b1, 0b1, 0b11, 0b111, 0b1, 0b11, 0b101, 0 }, s[ancestors..forcedAt]);
        Assert.Equal(new long[] { -1, 30, 31, -1, -1, -1, -1, -1 }, s[forcedAt..sequence]);
        Assert.Equal(new long[] { 0, 1, 1, 1, 2, 2, 2, -1 }, s[sequence..perSequence]);
        Assert.Equal((40L, 0L, 1L, 5L), Sequence(s, rows, 0));
        Assert.Equal((300L, 1L, 3L, 2L), Sequence(s, rows, 1));
        Assert.Equal((9L, 4L, 3L, 7L), Sequence(s, rows, 2));
    }

    [Fact]
    public void PackStateTakesSixtyFourEntriesAndRefusesMoreThanTheRows()
    {
        var chain = DraftTree.Create(Enumerable.Range(1, 63).ToArray(), Enumerable.Range(-1, 63).ToArray(), []);
        long[] s = KernelTreeStep.PackState([new TreeStepSequence(0, 0, 0, chain)], 64);
        Assert.Equal(-1L, s[2 + 3 * 64 + 63]); // all 64 bits: the deepest entry's ancestors are every entry
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PackState([new TreeStepSequence(0, 0, 0, chain)], 32));
        TreeStepSequence[] plain = Enumerable.Range(0, 64).Select(i => new TreeStepSequence(i, 10, i, DraftTree.Empty)).ToArray();
        Assert.Equal(64, KernelTreeStep.PackState(plain, 64)[0]);
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PackState([.. plain, new TreeStepSequence(64, 10, 0, DraftTree.Empty)], 64));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PackState([], 8));
    }

    [Fact]
    public void AStepsShapeRoundsTheWidestSequenceAndTheSequenceCountUpToPowersOfTwo()
    {
        DraftTree five = DraftTree.Create([1, 2, 3, 4], [-1, 0, 1, 2], []);
        Assert.Equal(new TreeStepShape(8, 8, 1, 2048), TreeStepShape.For([new TreeStepSequence(0, 10, 0, DraftTree.Create([1, 2, 3, 4, 5], [-1, 0, 1, 2, 3], []))], 2048));
        Assert.Equal(new TreeStepShape(16, 1, 16, 1024), TreeStepShape.For(Enumerable.Range(0, 9).Select(i => new TreeStepSequence(i, 5, 0, DraftTree.Empty)).ToArray(), 1024));
        Assert.Equal(new TreeStepShape(16, 8, 4, 1024), TreeStepShape.For([new(0, 1, 0, five), new(1, 1, 0, five), new(2, 1, 0, DraftTree.Empty)], 1024));
    }

    [Theory]
    [InlineData(4, 1, 1)]      // a plain step of the 8B shape: four query heads per kv head, one warp
    [InlineData(32, 2, 1)]     // eight entries
    [InlineData(64, 4, 1)]
    [InlineData(256, 4, 4)]    // sixty-four entries: four blocks of 64 query rows
    public void AttentionBlocksTakeAWarpPerSixteenQueryRows(int queryRows, int warps, int groups) =>
        Assert.Equal((warps, groups), KernelTreeStep.AttentionBlocks(queryRows));

    [Fact]
    public void TheTreeKernelsTakeBatchesOfUpTo512RowsAndSixtyFourEntriesASequenceGreedyForcedOrSampled()
    {
        TreeInput Plain(int slot) => new(slot, 0, DraftTree.Empty);
        TreeInput Chain(int slot, int nodes) => new(slot, 0, DraftTree.Chain(Enumerable.Range(1, nodes).ToArray()));
        Assert.Null(TreeKernelBackend.Refuses([Chain(0, 63)], AcceptanceRule.Greedy, suspended: false));
        Assert.Null(TreeKernelBackend.Refuses([Plain(0), Plain(1)], AcceptanceRule.Forced, suspended: false));
        Assert.Null(TreeKernelBackend.Refuses(Enumerable.Range(0, 64).Select(Plain).ToArray(), AcceptanceRule.Greedy, suspended: false));
        Assert.Null(TreeKernelBackend.Refuses(Enumerable.Range(0, 8).Select(i => Chain(i, 7)).ToArray(), AcceptanceRule.Greedy, suspended: false));
        Assert.Contains("without a draft", TreeKernelBackend.Refuses([Plain(0)], AcceptanceRule.Greedy, suspended: false), StringComparison.Ordinal);
        // past 64 rows in all a step takes cuBLAS's products (wide), up to 512 rows: 32 trees of 16
        Assert.Null(TreeKernelBackend.Refuses([Chain(0, 63), Plain(1)], AcceptanceRule.Greedy, suspended: false));
        Assert.Null(TreeKernelBackend.Refuses(Enumerable.Range(0, 32).Select(i => Chain(i, 15)).ToArray(), AcceptanceRule.Greedy, suspended: false));
        Assert.Null(TreeKernelBackend.Refuses(Enumerable.Range(0, 8).Select(i => Chain(i, 15)).ToArray(), AcceptanceRule.Sampled, suspended: false));
        Assert.Contains("528 rows", TreeKernelBackend.Refuses(Enumerable.Range(0, 33).Select(i => Chain(i, 15)).ToArray(), AcceptanceRule.Greedy, suspended: false), StringComparison.Ordinal);
        // one sequence's entries share a 64-bit ancestor word
        Assert.Contains("a sequence of 65 entries", TreeKernelBackend.Refuses([Chain(0, 64), Plain(1)], AcceptanceRule.Greedy, suspended: false), StringComparison.Ordinal);
        Assert.Contains("more than 64 sequences", TreeKernelBackend.Refuses(Enumerable.Range(0, 65).Select(Plain).ToArray(), AcceptanceRule.Greedy, suspended: false), StringComparison.Ordinal);
        // sampled steps run the kernels' forward too, a lone plain one included (its logits are not the decode step's)
        Assert.Null(TreeKernelBackend.Refuses([Chain(0, 3)], AcceptanceRule.Sampled, suspended: false));
        Assert.Null(TreeKernelBackend.Refuses([Plain(0)], AcceptanceRule.Sampled, suspended: false));
        Assert.Contains("suspended", TreeKernelBackend.Refuses([Chain(0, 3)], AcceptanceRule.Greedy, suspended: true), StringComparison.Ordinal);
    }

    private static (int Tokens, int Depths, int Parents, int Ancestors, int Forced, int Sequence, int PerSequence) Offsets(int rows) =>
        (2, 2 + rows, 2 + 2 * rows, 2 + 3 * rows, 2 + 4 * rows, 2 + 5 * rows, 2 + 6 * rows);

    /// <summary>Sequence <paramref name="q"/>'s (length, first row, entries, slot) in a packed state.</summary>
    private static (long, long, long, long) Sequence(long[] s, int rows, int q)
    {
        int b = 2 + 6 * rows, n = KernelTreeStep.MaxSequences;
        return (s[b + q], s[b + n + q], s[b + 2 * n + q], s[b + 3 * n + q]);
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(8, 8)]
    [InlineData(9, 16)]
    [InlineData(17, 32)]
    [InlineData(33, 64)]
    [InlineData(64, 64)]
    [InlineData(65, 128)]      // wide steps: cuBLAS's products
    [InlineData(129, 256)]
    [InlineData(512, 512)]
    public void RowsArePaddedToTheKernelsSizes(int entries, int rows) => Assert.Equal(rows, KernelTreeStep.PaddedRows(entries));

    [Fact]
    public void MoreThan512EntriesOrSixtyFourInOneSequenceAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PaddedRows(KernelTreeStep.MaxStepRows + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PaddedRows(0));
        var tooWide = new TreeStepSequence(0, 10, 1, DraftTree.Chain(Enumerable.Range(1, KernelTreeStep.MaxRows).ToArray()));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PackState([tooWide], 128));
        Assert.False(KernelTreeStep.IsWide(64));
        Assert.True(KernelTreeStep.IsWide(128));
    }

    /// <summary>A wide step's state: 32 sequences of 16 entries over 512 rows, each sequence's ancestor sets over its own
    /// entries, the per-sequence block after the six row arrays.</summary>
    [Fact]
    public void WideStatesKeepEachSequencesEntriesConsecutive()
    {
        TreeStepSequence[] sequences = Enumerable.Range(0, 32)
            .Select(q => new TreeStepSequence(q, 100 + q, 7, DraftTree.Chain(Enumerable.Range(1, 15).ToArray()))).ToArray();
        long[] s = KernelTreeStep.PackState(sequences, 512);
        (int tokens, _, int parents, int ancestors, _, int sequence, _) = Offsets(512);
        Assert.Equal(KernelTreeStep.StateLength(512), s.Length);
        Assert.Equal((32, 512), ((int)s[0], (int)s[1]));
        Assert.Equal((131L, 496L, 16L, 31L), Sequence(s, 512, 31));
        Assert.Equal(31, s[sequence + 511]);
        Assert.Equal(15, s[tokens + 511]);                 // the chain's last node
        Assert.Equal(510, s[parents + 511]);
        Assert.Equal((1L << 16) - 1, s[ancestors + 511]);  // the whole chain of its own sequence, root included
    }

    /// <summary>Llama-3.1-8B's products on 132 multiprocessors (H100 SXM): one wave of two blocks per multiprocessor, splits
    /// that divide k into runs of 64, the head unsplit.</summary>
    [Theory]
    [InlineData(4096, 48, 4)]     // q/k/v: 6,144 rows
    [InlineData(4096, 32, 8)]     // o
    [InlineData(4096, 224, 1)]    // gate/up: 224 tiles of 64 + 64 rows
    [InlineData(14336, 32, 8)]    // down
    [InlineData(512, 8, 1)]       // the default model: k of one staged chunk
    public void SplitsFillOneWave(int k, int tiles, int splits)
    {
        int s = KernelTreeStep.Splits(k, tiles, 132);
        Assert.Equal(splits, s);
        Assert.Equal(0, k / 64 % s);
        Assert.True(s * tiles <= 2 * 132 || s == 1);
    }

    [Theory]
    [InlineData(2112, 4, 8)]
    [InlineData(2112, 1, 8)]
    [InlineData(32832, 4, 8)]
    [InlineData(64, 1, 4)]
    public void AttentionChunksCoverTheKeysInAtMostMaxChunks(long keys, int rowGroups, int kvHeads)
    {
        foreach (int rows in new[] { 8, 64, 128, 256, 512 })
        {
            int chunk = KernelTreeStep.AttentionChunk(keys, rowGroups, kvHeads, 132, rows);
            Assert.Equal(0, chunk % 64);
            long chunks = (keys + chunk - 1) / chunk;
            // the partial buffers hold 32 chunks of 64 rows: wider steps take fewer chunks
            Assert.InRange(chunks, 1, KernelTreeStep.MaxChunks * KernelTreeStep.MaxRows / Math.Max(64, rows));
        }
    }

    [Fact]
    public void ReadTurnsEachSequencesResultIntoItsAcceptedPath()
    {
        int stride = KernelTreeStep.ResultStride, rows = KernelTreeStep.MaxRows;
        var result = new long[3 * stride];
        result[0] = 0;                     // sequence 0: nothing accepted, bonus 5
        result[1] = 5;
        int b = 2 * stride;                // sequence 2
        result[b] = 2;                     // two accepted
        result[b + 1] = 77;                // bonus
        result[b + 2] = 11;                // token at depth 1
        result[b + 3] = 13;                // token at depth 2
        result[b + 2 + rows] = 2;          // entry at depth 1 (draft node 1)
        result[b + 3 + rows] = 4;          // entry at depth 2 (draft node 3)
        VerifiedStep plain = KernelTreeStep.Read(9, result, 0);
        Assert.Empty(plain.AcceptedNodes);
        Assert.Equal(new[] { 5 }, plain.Tokens);
        VerifiedStep step = KernelTreeStep.Read(5, result, 2);
        Assert.Equal(5, step.Slot);
        Assert.Equal(new[] { 1, 3 }, step.AcceptedNodes);
        Assert.Equal(new[] { 11, 13, 77 }, step.Tokens);
    }

    [Fact]
    public void ModelRules()
    {
        Assert.Null(KernelTreeStep.Unsupported(Config(hidden: 4096, heads: 32, kvHeads: 8, headDim: 128)));
        Assert.Null(KernelTreeStep.Unsupported(Config(hidden: 512, heads: 8, kvHeads: 4, headDim: 64)));
        Assert.Contains("multiples", KernelTreeStep.Unsupported(Config(hidden: 512, heads: 6, kvHeads: 3, headDim: 64)), StringComparison.Ordinal);
        Assert.Contains("hidden size", KernelTreeStep.Unsupported(Config(hidden: 4000, heads: 32, kvHeads: 8, headDim: 128)), StringComparison.Ordinal);
    }

    private static ModelConfig Config(int hidden, int heads, int kvHeads, int headDim) => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes($$"""
        {
          "architectures": ["LlamaForCausalLM"], "model_type": "llama",
          "hidden_size": {{hidden}}, "intermediate_size": 1376, "num_hidden_layers": 2, "head_dim": {{headDim}},
          "num_attention_heads": {{heads}}, "num_key_value_heads": {{kvHeads}}, "vocab_size": 1000,
          "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
          "hidden_act": "silu", "tie_word_embeddings": false, "torch_dtype": "bfloat16"
        }
        """)), "test config");
}
