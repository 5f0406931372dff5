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
        long[] s = KernelTreeStep.PackState(100, 9, tree, 8, forced);
        Assert.Equal(KernelTreeStep.StateLength(8), s.Length);
        Assert.Equal(100, s[0]);
        Assert.Equal(4, s[1]);
        int rows = 8, tokens = 2, depths = 2 + rows, parents = 2 + 2 * rows, ancestors = 2 + 3 * rows, forcedAt = 2 + 4 * rows;
        Assert.Equal(new long[] { 9, 10, 11, 12, 0, 0, 0, 0 }, s[tokens..depths]);
        Assert.Equal(new long[] { 0, 1, 1, 2, 0, 0, 0, 0 }, s[depths..parents]);
        Assert.Equal(new long[] { 0, 0, 0, 1, 0, 0, 0, 0 }, s[parents..ancestors]);
        // entry e's set: itself and its ancestors (bit j = entry j); padding rows see the root only
        Assert.Equal(new long[] { 0b1, 0b11, 0b101, 0b1011, 1, 1, 1, 1 }, s[ancestors..forcedAt]);
        Assert.Equal(new long[] { 7, -1, 8, -1, -1, -1, -1, -1 }, s[forcedAt..]);
    }

    [Fact]
    public void PackStateTakesSixtyFourEntriesAndRefusesMoreThanTheRows()
    {
        var chain = DraftTree.Create(Enumerable.Range(1, 63).ToArray(), Enumerable.Range(-1, 63).ToArray(), []);
        long[] s = KernelTreeStep.PackState(0, 0, chain, 64, null);
        Assert.Equal(-1L, s[2 + 3 * 64 + 63]); // all 64 bits: the deepest entry's ancestors are every entry
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PackState(0, 0, chain, 32, null));
    }

    [Theory]
    [InlineData(1, 8)]
    [InlineData(8, 8)]
    [InlineData(9, 16)]
    [InlineData(17, 32)]
    [InlineData(33, 64)]
    [InlineData(64, 64)]
    public void RowsArePaddedToTheKernelsSizes(int entries, int rows) => Assert.Equal(rows, KernelTreeStep.PaddedRows(entries));

    [Fact]
    public void MoreThanSixtyFourEntriesAreRefused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelTreeStep.PaddedRows(KernelTreeStep.MaxRows + 1));

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
        int chunk = KernelTreeStep.AttentionChunk(keys, rowGroups, kvHeads, 132);
        Assert.Equal(0, chunk % 64);
        long chunks = (keys + chunk - 1) / chunk;
        Assert.InRange(chunks, 1, KernelTreeStep.MaxChunks);
    }

    [Fact]
    public void ReadTurnsTheResultIntoTheAcceptedPath()
    {
        int rows = 8;
        var result = new long[2 + 2 * rows];
        result[0] = 2;            // two accepted
        result[1] = 77;           // bonus
        result[2] = 11;           // token at depth 1
        result[3] = 13;           // token at depth 2
        result[2 + rows] = 2;     // entry at depth 1 (draft node 1)
        result[3 + rows] = 4;     // entry at depth 2 (draft node 3)
        VerifiedStep step = KernelTreeStep.Read(5, result, rows);
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
