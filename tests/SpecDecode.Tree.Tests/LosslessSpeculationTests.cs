using SpecDecode.Suffix;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>Greedy speculative decoding with tree verification emits exactly what plain greedy decoding emits.</summary>
public sealed class LosslessSpeculationTests
{
    /// <summary>Proposes random trees: mostly wrong, sometimes right by chance, always valid.</summary>
    private sealed class RandomTreeDrafter(int vocab, int seed) : IDrafter
    {
        private readonly Random _rng = new(seed);
        public string Name => "random";
        public int MaxBudget => 64;
        public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options) { }
        public DraftTree Propose(RequestId request, int maxTokens)
        {
            lock (_rng) // IDrafter's calls for different requests may overlap (the engine drafts large batches in parallel)
            {
                return Draw(maxTokens);
            }
        }

        private DraftTree Draw(int maxTokens)
        {
            int n = _rng.Next(0, maxTokens + 1);
            var tokens = new List<int>();
            var parents = new List<int>();
            for (int i = 0; i < n; i++)
            {
                int parent = _rng.Next(-1, i);
                int token = _rng.Next(vocab);
                bool duplicate = false;
                for (int j = 0; j < tokens.Count; j++)
                {
                    duplicate |= parents[j] == parent && tokens[j] == token;
                }
                if (!duplicate)
                {
                    tokens.Add(token);
                    parents.Add(parent);
                }
            }
            return tokens.Count == 0 ? DraftTree.Empty : DraftTree.Create(tokens.ToArray(), parents.ToArray(), []);
        }
        public void Observe(RequestId request, ReadOnlySpan<int> emitted) { }
        public void EndRequest(RequestId request) { }
        public void Dispose() { }
    }

    [Theory]
    [InlineData("llama-gqa", "suffix")]
    [InlineData("llama-gqa", "random")]
    [InlineData("qwen2-tied", "suffix")]
    [InlineData("qwen2-tied", "random")]
    public void SpeculativeGreedyEqualsPlainGreedy(string name, string drafterName)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        long[] prompt = SharedFixtures.Ids(expected, "prompt_ids");
        long[] plain = SharedFixtures.Ids(expected, "greedy_continuation");
        using EagerCausalLM model = EagerCausalLM.Load(folder);
        using IDrafter drafter = drafterName == "suffix"
            ? new SuffixDrafter(new SuffixDrafterOptions { MinTokenProbability = 0f, MaxSpecFactor = 4f })
            : new RandomTreeDrafter(model.Config.VocabSize, seed: 7);
        var request = new RequestId(1);
        // The suffix drafter learns the model's habits from an earlier response of the same model.
        if (drafterName == "suffix")
        {
            drafter.StartRequest(new RequestId(0), [.. prompt.Select(t => (int)t)], null);
            drafter.Observe(new RequestId(0), [.. plain.Select(t => (int)t)]);
            drafter.EndRequest(new RequestId(0));
        }
        drafter.StartRequest(request, [.. prompt.Select(t => (int)t)], null);
        var output = new List<long>();
        int steps = 0;
        while (output.Count < plain.Length)
        {
            DraftTree draft = drafter.Propose(request, 8);
            long[] context = [.. prompt, .. output];
            using Tensor all = model.ForwardTree(context, draft);
            using Tensor rows = all.narrow(0, context.Length - 1, draft.Count + 1);
            int[] emitted = GreedyTreeVerifier.Verify(rows, draft);
            Assert.True(emitted.Length >= 1 && emitted.Length <= draft.Count + 1);
            emitted = emitted[..Math.Min(emitted.Length, plain.Length - output.Count)];
            output.AddRange(emitted.Select(t => (long)t));
            drafter.Observe(request, emitted);
            steps++;
        }
        Assert.Equal(plain, output.ToArray());
        if (drafterName == "suffix")
        {
            Assert.True(steps < plain.Length / 2, $"the suffix drafter repeated a known continuation yet took {steps} steps");
        }
    }
}
