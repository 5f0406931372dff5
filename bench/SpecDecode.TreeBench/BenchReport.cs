using System.Globalization;
using System.Text;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>Plain greedy decoding (one sequence, no draft) with <see cref="TargetModelOptions.CudaGraphs"/>: the
/// decode-step kernels where the model and the GPU allow them, else the captured libtorch step.</summary>
public sealed record PlainPoint(int Context, string Path, double MedianMs, double MinMs, double FloorMs);

/// <summary>What the engine's memory estimate says for a configuration, and whether it fits the card.</summary>
public sealed record MemoryPoint(int Batch, int Context, double WeightGB, double KvCacheGB, double CardGB, bool Fits, int SequencesOfThisContextThatFit);

/// <summary>The plain-decoding and memory parts of the whole-set bench, and its markdown table.</summary>
internal static class BenchReport
{
    /// <summary>Decodes <paramref name="steps"/> tokens after a random <paramref name="context"/>-token cache through the
    /// graphed plain step; the first step (which captures) is left out of the median.</summary>
    public static PlainPoint Plain(ModelConfig config, ScalarType dtype, int context, int steps, double floorMs)
    {
        var options = new TargetModelOptions { Device = CUDA, DType = dtype, MaxBatch = 1, MaxContext = context + steps + 1, CudaGraphs = true };
        using TargetModel model = TargetModel.CreateRandom(config, options, seed: 1);
        model.FillCacheForBenchmark(context);
        (_, List<double> times, _) = DecodeGraphsCommand.TimePlainSteps(model, root: 1, steps + 1);
        return new PlainPoint(context, model.UsesDecodeKernels ? "decode-step kernels" : "captured libtorch step", times[times.Count / 2], times[0], floorMs);
    }

    /// <summary>The engine's estimate for <paramref name="batch"/> × <paramref name="context"/> against the card's memory
    /// (nvidia-smi), or null where there is no card to compare with.</summary>
    public static MemoryPoint? Memory(ModelConfig config, ScalarType dtype, int batch, int context)
    {
        double? card = CardGB();
        if (card is null)
        {
            return null;
        }
        MemoryEstimate m = MemoryEstimate.For(config, new TargetModelOptions { DType = dtype, MaxBatch = batch, MaxContext = context });
        long cardBytes = (long)(card.Value * 1e9);
        return new MemoryPoint(batch, context, m.WeightBytes / 1e9, m.KvCacheBytes / 1e9, card.Value, m.TotalBytes < cardBytes, m.MaxSequences(cardBytes, context));
    }

    private static double? CardGB() =>
        double.TryParse(VerifyCostCommand.NvidiaSmi("memory.total"), CultureInfo.InvariantCulture, out double mib) ? mib * 1048576 / 1e9 : null;

    /// <summary>The markdown report: ceilings, plain decoding, the verification curve with issue 6's goal-2 ratios, prefill
    /// and memory.</summary>
    public static string Markdown(string gpu, string model, ScalarType dtype, double copy, double tflops, IReadOnlyList<CostPoint> points,
        IReadOnlyList<PlainPoint> plain, IReadOnlyList<PrefillPoint> prefill, MemoryPoint? memory)
    {
        var md = new StringBuilder();
        string F(double v) => v.ToString("F2", CultureInfo.InvariantCulture);
        md.AppendLine(CultureInfo.InvariantCulture, $"# SpecDecode.TreeBench: {model} ({dtype}, random weights) on {gpu}");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Ceilings measured in this run: copy {copy:F0} GB/s (read + write), bf16 matmul {tflops:F0} TFLOP/s.");
        md.AppendLine();
        if (plain.Count > 0)
        {
            md.AppendLine("## Plain decoding (batch 1, CUDA graphs)");
            md.AppendLine();
            md.AppendLine("| context | path | median ms (min) | floor ms | median / floor | usual path, 1 token, same run |");
            md.AppendLine("| --- | --- | --- | --- | --- | --- |");
            foreach (PlainPoint p in plain)
            {
                CostPoint? usual = points.FirstOrDefault(q => q.Context == p.Context && q.Batch == 1 && q.TreeTokens == 1);
                md.AppendLine(CultureInfo.InvariantCulture,
                    $"| {p.Context} | {p.Path} | {F(p.MedianMs)} ({F(p.MinMs)}) | {F(p.FloorMs)} | {p.MedianMs / p.FloorMs:F2}x | {(usual is null ? "-" : F(usual.MedianMs))} |");
            }
            md.AppendLine();
        }
        md.AppendLine("## Verification (VerifyGreedy, the usual path: random bushy trees, median ms)");
        md.AppendLine();
        int[] sizes = points.Select(p => p.TreeTokens).Distinct().Order().ToArray();
        md.AppendLine("| context | batch | " + string.Join(" | ", sizes.Select(s => s + " tokens")) + " | floor at 1 |");
        md.AppendLine("| --- | --- | " + string.Join(" | ", sizes.Select(_ => "---")) + " | --- |");
        foreach (var row in points.GroupBy(p => (p.Context, p.Batch)))
        {
            string cells = string.Join(" | ", sizes.Select(s => row.FirstOrDefault(p => p.TreeTokens == s) is { } p ? F(p.MedianMs) : "-"));
            string floorCell = row.FirstOrDefault(p => p.TreeTokens == 1) is { } one ? F(one.FloorMs) : "-";
            md.AppendLine(CultureInfo.InvariantCulture, $"| {row.Key.Context} | {row.Key.Batch} | {cells} | {floorCell} |");
        }
        md.AppendLine();
        md.AppendLine("Issue 6 goal 2 (a 64-token tree at most 1.2x the one-token step at batch 1; a 16-token tree at batch 8 at most 1.5x the batch-8 one-token step):");
        md.AppendLine();
        foreach (int context in points.Select(p => p.Context).Distinct())
        {
            CostPoint? one = Find(points, context, 1, 1), tree = Find(points, context, 1, 64), one8 = Find(points, context, 8, 1), tree8 = Find(points, context, 8, 16);
            PlainPoint? graphed = plain.FirstOrDefault(p => p.Context == context);
            if (one is not null && tree is not null)
            {
                string againstGraphed = graphed is null ? "" : string.Create(CultureInfo.InvariantCulture,
                    $"; against the graphed plain step ({graphed.Path}): {tree.MedianMs / graphed.MedianMs:F2}x");
                md.AppendLine(CultureInfo.InvariantCulture, $"- context {context}, batch 1: 64 tokens / 1 token = {tree.MedianMs / one.MedianMs:F2}x on the usual path{againstGraphed}.");
            }
            if (one8 is not null && tree8 is not null)
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"- context {context}, batch 8: 16 tokens / 1 token = {tree8.MedianMs / one8.MedianMs:F2}x.");
            }
        }
        md.AppendLine();
        if (prefill.Count > 0)
        {
            md.AppendLine("## Prefill (batch 1)");
            md.AppendLine();
            md.AppendLine("| tokens | seconds | tokens/s |");
            md.AppendLine("| --- | --- | --- |");
            foreach (PrefillPoint p in prefill)
            {
                md.AppendLine(CultureInfo.InvariantCulture, $"| {p.Tokens} | {p.Seconds:F3} | {p.TokensPerSecond:F0} |");
            }
            md.AppendLine();
        }
        if (memory is not null)
        {
            md.AppendLine("## Memory (the engine's estimate, MemoryEstimate)");
            md.AppendLine();
            md.AppendLine(CultureInfo.InvariantCulture,
                $"Batch {memory.Batch} x {memory.Context} tokens: weights {memory.WeightGB:F1} GB + bf16 KV cache {memory.KvCacheGB:F1} GB = {memory.WeightGB + memory.KvCacheGB:F1} GB " +
                $"against the card's {memory.CardGB:F1} GB: {(memory.Fits ? "fits" : "does not fit")}; {memory.SequencesOfThisContextThatFit} sequences of {memory.Context} tokens would fit beside the weights.");
            md.AppendLine();
        }
        return md.ToString();
    }

    private static CostPoint? Find(IReadOnlyList<CostPoint> points, int context, int batch, int tokens) =>
        points.FirstOrDefault(p => p.Context == context && p.Batch == batch && p.TreeTokens == tokens);
}
