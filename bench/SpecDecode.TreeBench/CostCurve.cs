using System.Diagnostics;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One measured point of the verification cost curve.</summary>
public sealed record CostPoint(int Context, int Batch, int TreeTokens, double MedianMs, double MinMs, double FloorMs, string FloorBound, double? SampledMedianMs);

/// <summary>A timed prefill.</summary>
public sealed record PrefillPoint(int Tokens, int Chunk, double Seconds, double TokensPerSecond);

/// <summary>
/// Times <see cref="TargetModel.VerifyGreedy"/> (forward of root + draft tree for each sequence, device-side acceptance,
/// KV compaction, the one synchronisation) over tree sizes, contexts and batch sizes, on random weights and a random
/// cache: the cost depends on shapes only.
/// </summary>
internal sealed class CostCurve(TargetModel model, double copyGBps, double matmulTflops)
{
    private readonly Random _random = new(1234);

    public CostPoint Measure(int context, int batch, int treeTokens, int warmup, int repeat, SamplingOptions? sampling)
    {
        var inputs = Enumerable.Range(0, batch)
            .Select(slot => new TreeInput(slot, _random.Next(model.Config.VocabSize), RandomTree(_random, treeTokens - 1, model.Config.VocabSize))).ToArray();
        (double greedy, double greedyMin) = TimeSteps(model, context, batch, warmup, repeat, () => model.VerifyGreedy(inputs));
        double? sampled = sampling is null ? null : TimeSteps(model, context, batch, warmup, repeat, () => model.VerifySampled(inputs, sampling)).Median;
        (double floor, string bound) = Floor(context, batch, treeTokens);
        return new CostPoint(context, batch, treeTokens, greedy, greedyMin, floor, bound, sampled);
    }

    /// <summary>Median and minimum of <paramref name="repeat"/> timed steps after <paramref name="warmup"/> untimed ones (each
    /// ends with the step's one synchronisation), the caches of slots 0 .. <paramref name="batch"/> − 1 rolled back to
    /// <paramref name="context"/> after every step.</summary>
    internal static (double Median, double Min) TimeSteps(TargetModel model, int context, int batch, int warmup, int repeat, Action step)
    {
        var times = new double[repeat];
        for (int i = -warmup; i < repeat; i++)
        {
            long start = Stopwatch.GetTimestamp();
            step();
            double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            for (int slot = 0; slot < batch; slot++)
            {
                model.Truncate(slot, context);
            }
            if (i >= 0)
            {
                times[i] = ms;
            }
        }
        Array.Sort(times);
        return (times[repeat / 2], times[0]);
    }

    public PrefillPoint Prefill(int tokens, int chunk)
    {
        int[] prompt = Enumerable.Range(0, tokens).Select(_ => _random.Next(model.Config.VocabSize)).ToArray();
        model.Truncate(0, 0);
        model.Prefill([(0, prompt[..64])]); // warm-up
        model.Truncate(0, 0);
        Ceilings.Synchronize(model.Device);
        long start = Stopwatch.GetTimestamp();
        model.Prefill([(0, prompt)]);
        Ceilings.Synchronize(model.Device);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        model.Truncate(0, 0);
        return new PrefillPoint(tokens, chunk, seconds, tokens / seconds);
    }

    /// <summary>
    /// The floor: bytes (weights once, each sequence's cached keys and values once) over the measured copy bandwidth,
    /// against operations (2 per weight per token, attention 4 per key per head dimension per token) over the measured
    /// matmul rate; the larger one.
    /// </summary>
    internal (double Ms, string Bound) Floor(int context, int batch, int treeTokens)
    {
        ModelConfig c = model.Config;
        double weightElements = (double)c.VocabSize * c.HiddenSize * (c.TieWordEmbeddings ? 1 : 2)
            + (double)c.LayerCount * ((double)c.HiddenSize * c.HeadDim * (2 * c.HeadCount + 2 * c.KeyValueHeadCount) + 3.0 * c.HiddenSize * c.IntermediateSize);
        double elementSize = model.DType == ScalarType.Float32 ? 4 : 2;
        double kvBytes = (double)batch * context * c.LayerCount * 2 * c.KeyValueHeadCount * c.HeadDim * elementSize;
        double bytes = weightElements * elementSize + kvBytes;
        double tokens = (double)batch * treeTokens;
        double flops = 2 * (weightElements - (double)c.VocabSize * c.HiddenSize) * tokens
            + 4.0 * tokens * (context + treeTokens) * c.HeadCount * c.HeadDim * c.LayerCount;
        double memoryMs = bytes / (copyGBps * 1e9) * 1e3;
        double computeMs = flops / (matmulTflops * 1e12) * 1e3;
        return memoryMs >= computeMs ? (memoryMs, "memory") : (computeMs, "compute");
    }

    /// <summary>A random tree of <paramref name="nodes"/> nodes: each node hangs under a uniformly chosen earlier node
    /// or the root; sibling tokens distinct.</summary>
    internal static DraftTree RandomTree(Random random, int nodes, int vocab)
    {
        if (nodes == 0)
        {
            return DraftTree.Empty;
        }
        var tokens = new int[nodes];
        var parents = new int[nodes];
        for (int i = 0; i < nodes; i++)
        {
            parents[i] = random.Next(-1, i);
            tokens[i] = i * 7919 % vocab; // distinct tokens, so siblings never repeat
        }
        return DraftTree.Create(tokens, parents, []);
    }
}
