using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>The eager float32 forward against the logits and greedy continuations transformers computed.</summary>
public sealed class EagerCausalLMTests
{
    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void PromptLogitsMatchTransformers(string name)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        using EagerCausalLM model = EagerCausalLM.Load(folder);
        foreach ((string ids, string logits) in new[] { ("prompt_ids", "prompt_logits"), ("second_prompt_ids", "second_prompt_logits") })
        {
            (float[] theirs, long[] shape) = SharedFixtures.ExpectedTensor(folder, logits);
            using Tensor ours = model.Forward(SharedFixtures.Ids(expected, ids));
            Assert.Equal(shape, ours.shape);
            SharedFixtures.AssertClose(theirs, ours.data<float>().ToArray(), $"{name} {logits}");
        }
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void OneTreeForwardGivesEveryNodesLogits(string name)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        long[] prompt = SharedFixtures.Ids(expected, "prompt_ids");
        int[] tokens = SharedFixtures.Ids(expected, "tree_tokens").Select(t => (int)t).ToArray();
        int[] parents = SharedFixtures.Ids(expected, "tree_parents").Select(p => (int)p).ToArray();
        DraftTree tree = DraftTree.Create(tokens, parents, []);
        Assert.False(tree.IsChain);
        (float[] theirs, long[] shape) = SharedFixtures.ExpectedTensor(folder, "tree_logits");
        using EagerCausalLM model = EagerCausalLM.Load(folder);
        using Tensor all = model.ForwardTree(prompt, tree);
        using Tensor nodes = all.narrow(0, prompt.Length, tree.Count);
        Assert.Equal(shape, nodes.shape);
        SharedFixtures.AssertClose(theirs, nodes.contiguous().data<float>().ToArray(), $"{name} tree_logits");
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void GreedyContinuationMatchesTransformers(string name)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        long[] context = SharedFixtures.Ids(expected, "prompt_ids");
        long[] continuation = SharedFixtures.Ids(expected, "greedy_continuation");
        using EagerCausalLM model = EagerCausalLM.Load(folder);
        var generated = new List<long>();
        for (int step = 0; step < continuation.Length; step++)
        {
            using Tensor logits = model.Forward([.. context, .. generated]);
            using Tensor last = logits[-1];
            generated.Add(last.argmax().item<long>());
        }
        Assert.Equal(continuation, generated.ToArray());
    }
}
