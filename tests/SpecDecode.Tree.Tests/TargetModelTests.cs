using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>The serving model (KV cache, batched tree forward, device-side greedy acceptance) against transformers' numbers.</summary>
public sealed class TargetModelTests
{
    private static int[] Ints(long[] ids) => ids.Select(i => (int)i).ToArray();

    private static float[] Rows(Tensor logits, int slot, int from, int count) =>
        logits[slot].narrow(0, from, count).contiguous().data<float>().ToArray();

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void PromptLogitsThroughTheTreePathMatchTransformers(string name)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        (float[] logits, _) = SharedFixtures.ExpectedTensor(folder, "prompt_logits");
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 128 });
        // The whole prompt as one chain hanging after its first token, on an empty cache.
        using Tensor ours = model.TreeLogits([new TreeInput(0, prompt[0], DraftTree.Chain(prompt[1..]))]);
        SharedFixtures.AssertClose(logits, Rows(ours, 0, 0, prompt.Length), name + " prompt logits");
        Assert.Equal(0, model.CachedLength(0));
    }

    [Theory]
    [InlineData("llama-gqa", 5, 0)] // masked chunks only
    [InlineData("qwen2-tied", 7, 0)]
    [InlineData("llama-gqa", 5, 8)] // a causal first chunk, then masked chunks
    [InlineData("qwen2-tied", 512, 8192)] // the defaults: the whole prompt in one causal forward
    public void ChunkedPrefillThenTreeMatchesTransformers(string name, int chunk, int causalChunk)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] treeTokens = Ints(SharedFixtures.Ids(expected, "tree_tokens"));
        int[] treeParents = Ints(SharedFixtures.Ids(expected, "tree_parents"));
        (float[] promptLogits, long[] shape) = SharedFixtures.ExpectedTensor(folder, "prompt_logits");
        (float[] treeLogits, _) = SharedFixtures.ExpectedTensor(folder, "tree_logits");
        int vocab = (int)shape[1];
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 128, PrefillChunk = chunk, CausalPrefillChunk = causalChunk });
        model.Prefill([(0, prompt[..^1])]);
        Assert.Equal(prompt.Length - 1, model.CachedLength(0));
        using Tensor ours = model.TreeLogits([new TreeInput(0, prompt[^1], DraftTree.Create(treeTokens, treeParents, []))]);
        // Row 0 follows the prompt's last token; row 1 + i follows tree node i.
        SharedFixtures.AssertClose(promptLogits[^vocab..], Rows(ours, 0, 0, 1), name + " last prompt row");
        SharedFixtures.AssertClose(treeLogits, Rows(ours, 0, 1, treeTokens.Length), name + " tree logits");
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void PlainGreedyThroughVerifyReproducesTheContinuation(string name)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] plain = Ints(SharedFixtures.Ids(expected, "greedy_continuation"));
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 128 });
        Assert.Equal(plain, Generate(model, 0, prompt, plain.Length, _ => DraftTree.Empty));
        Assert.Equal(prompt.Length + plain.Length - 1, model.CachedLength(0));
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void ScriptedAndEagerLayersComputeTheSame(string name)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] treeTokens = Ints(SharedFixtures.Ids(expected, "tree_tokens"));
        int[] treeParents = Ints(SharedFixtures.Ids(expected, "tree_parents"));
        (float[] treeLogits, _) = SharedFixtures.ExpectedTensor(folder, "tree_logits");
        float[] Run(bool scripted, long matmulMinKeys = 8192)
        {
            using TargetModel model = TargetModel.Load(folder, new TargetModelOptions
            {
                Device = CPU, MaxContext = 64, PrefillChunk = 8, ScriptedLayers = scripted, MatmulAttentionMinKeys = matmulMinKeys,
            });
            Assert.Equal(scripted, model.UsesScriptedLayers);
            model.Prefill([(0, prompt[..^1])]);
            using Tensor logits = model.TreeLogits([new TreeInput(0, prompt[^1], DraftTree.Create(treeTokens, treeParents, []))]);
            return Rows(logits, 0, 1, treeTokens.Length);
        }
        float[] scriptedRows = Run(true), eagerRows = Run(false), matmulRows = Run(true, matmulMinKeys: 0);
        SharedFixtures.AssertClose(treeLogits, scriptedRows, name + " scripted");
        SharedFixtures.AssertClose(treeLogits, matmulRows, name + " scripted, matmul attention");
        SharedFixtures.AssertClose(treeLogits, eagerRows, name + " eager");
        SharedFixtures.AssertClose(eagerRows, scriptedRows, name + " scripted vs eager");
    }

    [Fact]
    public void LoadsBFloat16WithinTheHalfPrecisionTolerance()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        (float[] logits, _) = SharedFixtures.ExpectedTensor(folder, "prompt_logits");
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, DType = ScalarType.BFloat16, MaxContext = 64 });
        Assert.Equal(ScalarType.BFloat16, model.DType);
        using Tensor ours = model.TreeLogits([new TreeInput(0, prompt[0], DraftTree.Chain(prompt[1..]))]);
        float[] values = Rows(ours, 0, 0, prompt.Length);
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(values[i] - logits[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(logits[i]));
        }
        Assert.True(maxDiff / maxAbs < 2e-2, $"bfloat16 relative error {maxDiff / maxAbs:E2}");
        Assert.True(maxDiff > 0, "bfloat16 weights gave bit-identical float32 logits: the dtype was not applied");
    }

    /// <summary>Greedy decoding of <paramref name="count"/> tokens in slot <paramref name="slot"/> with drafts from <paramref name="draft"/>.</summary>
    internal static int[] Generate(TargetModel model, int slot, int[] prompt, int count, Func<List<int>, DraftTree> draft)
    {
        model.Truncate(slot, 0);
        model.Prefill([(slot, prompt[..^1])]);
        var output = new List<int>();
        int root = prompt[^1];
        while (output.Count < count)
        {
            VerifiedStep step = model.VerifyGreedy([new TreeInput(slot, root, draft(output))])[0];
            output.AddRange(step.Tokens);
            root = step.Bonus;
        }
        return output.Take(count).ToArray();
    }
}
