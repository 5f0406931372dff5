using SpecDecode.Suffix;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>Tiny models, prompts and plain-greedy references for the engine tests.</summary>
internal static class EngineFixture
{
    public const string Checkpoint = "llama-gqa";

    public static TargetModel LoadModel(int maxBatch, int maxContext = 192, long? kvTokens = null, int kvBlock = 64, bool prefixCaching = true,
        PrefillAttention prefill = PrefillAttention.Auto) =>
        TargetModel.Load(SharedFixtures.TinyCheckpoint(Checkpoint), new TargetModelOptions
        {
            Device = CPU, MaxBatch = maxBatch, MaxContext = maxContext, PrefillChunk = 32, KvCacheTokens = kvTokens, KvBlockSize = kvBlock,
            PrefixCaching = prefixCaching, PrefillAttention = prefill,
            CausalPrefillChunk = prefill == PrefillAttention.Packed ? 24 : 8192, // packed: 24 tokens per forward, so prompts split
        });

    /// <summary>A prompt with repeated segments (so drafters find matches), tokens below 256.</summary>
    public static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        int[] segment = Enumerable.Range(0, rng.Next(4, 9)).Select(_ => rng.Next(32, 127)).ToArray();
        var prompt = new List<int>();
        while (prompt.Count < length)
        {
            prompt.AddRange(rng.Next(3) == 0 ? [rng.Next(32, 127)] : segment);
        }
        return prompt.Take(length).ToArray();
    }

    /// <summary>Plain greedy decoding, one token per forward, on a model of its own.</summary>
    public static int[] PlainGreedy(int[] prompt, int count)
    {
        using TargetModel model = LoadModel(1, prompt.Length + count + 2);
        model.Prefill([(0, prompt[..^1])]);
        var output = new List<int>();
        int root = prompt[^1];
        while (output.Count < count)
        {
            root = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0].Bonus;
            output.Add(root);
        }
        return [.. output];
    }

    /// <summary>A cost model where verification costs the same for any width: every draft pays.</summary>
    public static VerificationCostModel FlatCost(int maxBatch) => Cost(maxBatch, perToken: 0);

    /// <summary>A cost model where each extra tree token costs as much as a whole one-token step: no draft pays.</summary>
    public static VerificationCostModel SteepCost(int maxBatch) => Cost(maxBatch, perToken: 1.0);

    private static VerificationCostModel Cost(int maxBatch, double perToken)
    {
        int[] batches = Enumerable.Range(1, maxBatch).ToArray();
        int[] widths = [1, 2, 4, 8, 16, 32, 64];
        var seconds = new double[batches.Length, widths.Length];
        for (int i = 0; i < batches.Length; i++)
        {
            for (int j = 0; j < widths.Length; j++)
            {
                seconds[i, j] = 0.01 * (1 + perToken * batches[i] * (widths[j] - 1));
            }
        }
        return new VerificationCostModel(batches, widths, seconds);
    }

    public static IDrafter Drafter(string kind) => kind switch
    {
        "suffix" => new SuffixDrafter(new SuffixDrafterOptions { MaxDepth = 16 }),
        "suffix-tree" => new SuffixDrafter(new SuffixDrafterOptions { MaxDepth = 16, UseTree = true }),
        "prompt-lookup" => new PromptLookupDrafter(),
        _ => throw new ArgumentException(kind),
    };
}
