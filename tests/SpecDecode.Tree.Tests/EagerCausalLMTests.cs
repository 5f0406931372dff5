using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>The eager float32 forward against the logits and greedy continuations transformers computed.</summary>
public sealed class EagerCausalLMTests
{
    private static string Checkpoint(string name)
    {
        DirectoryInfo? dir = new(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
        {
            dir = dir.Parent;
        }
        Assert.True(dir is not null, "repository root (SpecDecode.sln) not found");
        string path = Path.Combine(dir!.FullName, "..", "shared", "fixtures", "hf-tiny", name);
        Assert.True(File.Exists(Path.Combine(path, "expected.json")), "fixture missing: " + path + " (../shared must lie beside the repository)");
        return path;
    }

    private static long[] Ids(JsonElement root, string field) => root.GetProperty(field).EnumerateArray().Select(e => e.GetInt64()).ToArray();

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void PromptLogitsMatchTransformers(string name)
    {
        string folder = Checkpoint(name);
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "expected.json")));
        using var reference = SafeTensorsFile.Open(Path.Combine(folder, "expected.safetensors"));
        using EagerCausalLM model = EagerCausalLM.Load(folder);
        foreach ((string ids, string logits) in new[] { ("prompt_ids", "prompt_logits"), ("second_prompt_ids", "second_prompt_logits") })
        {
            long[] prompt = Ids(expected.RootElement, ids);
            SafeTensorInfo info = reference.Get(logits);
            var bytes = new byte[info.Length];
            reference.CopyTo(logits, bytes);
            float[] theirs = MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            using Tensor ours = model.Forward(prompt);
            Assert.Equal(info.Shape, ours.shape);
            float[] mine = ours.data<float>().ToArray();
            double maxDiff = 0, maxAbs = 0;
            for (int i = 0; i < theirs.Length; i++)
            {
                maxDiff = Math.Max(maxDiff, Math.Abs(mine[i] - theirs[i]));
                maxAbs = Math.Max(maxAbs, Math.Abs(theirs[i]));
            }
            Assert.True(maxDiff / maxAbs < 1e-4, $"{name} {logits}: relative error {maxDiff / maxAbs:E2}");
        }
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void OneTreeForwardGivesEveryNodesLogits(string name)
    {
        string folder = Checkpoint(name);
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "expected.json")));
        long[] prompt = Ids(expected.RootElement, "prompt_ids");
        int[] tokens = expected.RootElement.GetProperty("tree_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] parents = expected.RootElement.GetProperty("tree_parents").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        DraftTree tree = DraftTree.Create(tokens, parents, []);
        Assert.False(tree.IsChain);
        using var reference = SafeTensorsFile.Open(Path.Combine(folder, "expected.safetensors"));
        SafeTensorInfo info = reference.Get("tree_logits");
        var bytes = new byte[info.Length];
        reference.CopyTo("tree_logits", bytes);
        float[] theirs = MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        using EagerCausalLM model = EagerCausalLM.Load(folder);
        using Tensor all = model.ForwardTree(prompt, tree);
        using Tensor nodes = all.narrow(0, prompt.Length, tree.Count);
        Assert.Equal(info.Shape, nodes.shape);
        float[] mine = nodes.contiguous().data<float>().ToArray();
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < theirs.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(mine[i] - theirs[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(theirs[i]));
        }
        Assert.True(maxDiff / maxAbs < 1e-4, $"{name} tree_logits: relative error {maxDiff / maxAbs:E2}");
    }

    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void GreedyContinuationMatchesTransformers(string name)
    {
        string folder = Checkpoint(name);
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "expected.json")));
        long[] context = Ids(expected.RootElement, "prompt_ids");
        long[] continuation = Ids(expected.RootElement, "greedy_continuation");
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
