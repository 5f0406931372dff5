using System.CommandLine;
using System.Text.Json;
using ScottPlot;

namespace SpecDecode.EngineBench;

/// <summary>
/// <c>batch-plot</c>: tokens per second against batch size from TreeBench <c>batch-kernels</c>' JSON (plain steps through
/// the kernels and through the libtorch path, and the floor: B tokens per floor step), with the engine's decode rates
/// from an engine-bench.json of the same machine where one is given (plain and speculative, at their mean batch). Run
/// where ScottPlot's native renderer is (this machine, not the GPU bundle).
/// </summary>
internal static class BatchPlotCommand
{
    private sealed record Timing(string Batch, int Context, int Sequences, int EntriesEach, double KernelMedianMs, double UsualMedianMs, double FloorMs);

    private sealed record Kernels(string Gpu, int Context, IReadOnlyList<Timing> Timings);

    public static Command Build()
    {
        var kernels = new Option<string>("--kernels") { Description = "TreeBench batch-kernels JSON", Required = true };
        var engine = new Option<string?>("--engine") { Description = "engine-bench.json of the same machine (optional)" };
        var output = new Option<string>("--out") { Description = "PNG file", Required = true };
        var command = new Command("batch-plot", "Plot tokens/s against batch size: plain steps (kernels, libtorch), the floor, the engine.") { kernels, engine, output };
        command.SetAction(p =>
        {
            var options = new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };
            Kernels k = JsonSerializer.Deserialize<Kernels>(File.ReadAllText(p.GetValue(kernels)!), options)!;
            Timing[] plain = k.Timings.Where(t => t.EntriesEach == 1 && t.Context == k.Context).OrderBy(t => t.Sequences).ToArray();
            var plot = new Plot();
            void Line(string label, IEnumerable<(double Batch, double TokensPerSecond)> points, LinePattern pattern)
            {
                var list = points.Where(q => double.IsFinite(q.TokensPerSecond)).ToArray();
                var scatter = plot.Add.Scatter(list.Select(q => Math.Log2(q.Batch)).ToArray(), list.Select(q => q.TokensPerSecond).ToArray());
                scatter.LegendText = label;
                scatter.LinePattern = pattern;
            }
            Line("floor (B tokens per floor step)", plain.Select(t => ((double)t.Sequences, t.Sequences / t.FloorMs * 1e3)), LinePattern.Dotted);
            Line("plain steps, kernels", plain.Select(t => ((double)t.Sequences, t.Sequences / t.KernelMedianMs * 1e3)), LinePattern.Solid);
            Line("plain steps, libtorch path", plain.Select(t => ((double)t.Sequences, t.Sequences / t.UsualMedianMs * 1e3)), LinePattern.Dashed);
            if (p.GetValue(engine) is { } enginePath)
            {
                BenchReport report = JsonSerializer.Deserialize<BenchReport>(File.ReadAllText(enginePath))!;
                IReadOnlyList<VariantResult> results = report.LastRound;
                foreach (string variant in results.Select(r => r.Variant).Distinct())
                {
                    Line($"engine, {variant} (at its mean batch)", results.Where(r => r.Variant == variant).Select(r => (r.MeanBatch, r.TokensPerSecond)),
                        LinePattern.Solid);
                }
            }
            PlotCommand.BatchAxis(plot, plain.Select(t => t.Sequences).ToArray());
            plot.XLabel($"batch size ({k.Gpu}, {k.Context} cached tokens each)");
            plot.YLabel("tokens/s");
            plot.Title("Decoding throughput by batch size");
            plot.ShowLegend(Alignment.UpperLeft);
            plot.SavePng(p.GetValue(output)!, 900, 560);
            return 0;
        });
        return command;
    }
}
