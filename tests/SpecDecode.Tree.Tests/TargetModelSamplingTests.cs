using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary><see cref="TargetModel.VerifySampled"/> end to end: the forward, the sampling verifier and the KV commit together.</summary>
public sealed class TargetModelSamplingTests
{
    private static int[] Ints(long[] ids) => ids.Select(i => (int)i).ToArray();

    [Fact]
    public void TemperatureZeroReproducesTheGreedyContinuation()
    {
        string folder = SharedFixtures.TinyCheckpoint("qwen2-tied");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] continuation = Ints(SharedFixtures.Ids(expected, "greedy_continuation"));
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 128 });
        model.Prefill([(0, prompt[..^1])]);
        var greedy = new SamplingOptions { Temperature = 0 };
        int root = prompt[^1];
        var output = new List<int>();
        while (output.Count < continuation.Length)
        {
            // The right next two tokens with a wrong sibling first, so acceptance has to skip a child.
            int done = output.Count;
            int[] next = continuation[done..Math.Min(done + 2, continuation.Length)];
            int wrong = (next[0] + 1) % model.Config.VocabSize;
            DraftTree draft = DraftTree.Create([wrong, .. next], [-1, -1, .. next.Length > 1 ? new[] { 1 } : []], []);
            VerifiedStep step = model.VerifySampled([new TreeInput(0, root, draft)], greedy)[0];
            output.AddRange(step.Tokens);
            root = step.Bonus;
        }
        Assert.Equal(continuation, output.Take(continuation.Length).ToArray());
        Assert.Equal(prompt.Length - 1 + output.Count, model.CachedLength(0));
    }

    [Fact]
    public void FirstTokenFollowsTheTargetDistributionAcrossABatch()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        const int slots = 64, rounds = 40, topK = 4;
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = slots, MaxContext = 64 });
        model.Prefill(Enumerable.Range(0, slots).Select(s => (s, prompt[..^1])).ToList());

        // The target distribution at the root: softmax over the top 4 logits (temperature 1).
        using Tensor rootLogits = model.TreeLogits([new TreeInput(0, prompt[^1], DraftTree.Empty)])[0][0];
        (Tensor values, Tensor indices) = rootLogits.topk(topK);
        float[] p = values.softmax(0).data<float>().ToArray();
        int[] top = indices.data<long>().Select(i => (int)i).ToArray();

        // Point-mass drafts: the likeliest token, the least likely of the four, and a token outside the top 4.
        int outside = Enumerable.Range(0, model.Config.VocabSize).First(t => !top.Contains(t));
        DraftTree draft = DraftTree.Create([top[0], top[3], outside], [-1, -1, -1], []);
        var options = new SamplingOptions { Temperature = 1, TopK = topK, Seed = 11 };
        var counts = new Dictionary<int, int>();
        var inputs = Enumerable.Range(0, slots).Select(s => new TreeInput(s, prompt[^1], draft)).ToArray();
        for (int round = 0; round < rounds; round++)
        {
            foreach (VerifiedStep step in model.VerifySampled(inputs, options))
            {
                counts[step.Tokens[0]] = counts.GetValueOrDefault(step.Tokens[0]) + 1;
                Assert.Equal(prompt.Length + step.AcceptedCount, model.CachedLength(step.Slot));
                model.Truncate(step.Slot, prompt.Length - 1);
            }
        }
        int n = slots * rounds;
        Assert.DoesNotContain(outside, counts.Keys);
        Assert.All(counts.Keys, t => Assert.Contains(t, top));
        double tv = 0.5 * top.Select((t, i) => Math.Abs(counts.GetValueOrDefault(t) / (double)n - p[i])).Sum();
        // Hoeffding + union bound over the 2^4 subsets: P(TV >= eps) <= 2^4 exp(-2 n eps^2) = 1e-6 at eps ~ 0.073 for n = 2560.
        double eps = Math.Sqrt((topK * Math.Log(2) + Math.Log(1e6)) / (2.0 * n));
        Assert.True(tv < eps, $"first-token TV {tv:F4} >= {eps:F4}; counts {string.Join(", ", top.Select(t => counts.GetValueOrDefault(t)))}, p {string.Join(", ", p)}");
    }

    [Fact]
    public void SameSeedSameTokens()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] Run()
        {
            using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 96 });
            model.Prefill([(0, prompt[..^1])]);
            var options = new SamplingOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 3 };
            var output = new List<int>();
            int root = prompt[^1];
            for (int i = 0; i < 15; i++)
            {
                VerifiedStep step = model.VerifySampled([new TreeInput(0, root, DraftTree.Chain([root, root]))], options)[0];
                output.AddRange(step.Tokens);
                root = step.Bonus;
            }
            return output.ToArray();
        }
        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void DraftProbabilitiesOfTheWrongShapeAreRefused()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 32 });
        using Tensor q = ones([1, 3, model.Config.VocabSize]);
        var e = Assert.Throws<ArgumentException>(() => model.VerifySampled([new TreeInput(0, 1, DraftTree.Chain([2]))], new SamplingOptions(), q));
        Assert.Contains("[1, 2,", e.Message);
        Assert.Equal(0, model.CachedLength(0));
    }
}
