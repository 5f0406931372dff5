using System.CommandLine;
using System.Text.Json;
using ScottPlot;

namespace SpecDecode.EngineBench;

/// <summary>Plots speedup over plain decoding against batch size from an engine-bench.json (run where ScottPlot's native
/// renderer is available; the GPU machine's bundle carries no native libraries but libtorch's).</summary>
internal static class PlotCommand
{
    public static Command Build()
    {
        var input = new Option<string>("--in") { Description = "engine-bench.json", Required = true };
        var output = new Option<string>("--out") { Description = "PNG file", Required = true };
        var command = new Command("plot", "Plot speedup vs batch size from engine-bench.json.") { input, output };
        command.SetAction(p =>
        {
            BenchReport report = JsonSerializer.Deserialize<BenchReport>(File.ReadAllText(p.GetValue(input)!))!;
            var plot = new Plot();
            IReadOnlyList<VariantResult> results = report.LastRound;
            foreach (string variant in results.Select(r => r.Variant).Distinct().Where(v => v != "plain"))
            {
                var points = results.Where(r => r.Variant == variant).Select(r =>
                {
                    VariantResult plain = results.Single(q => q.Batch == r.Batch && q.Variant == "plain");
                    return (X: (double)r.Batch, Y: r.TokensPerSecond / plain.TokensPerSecond);
                }).ToArray();
                var line = plot.Add.Scatter(points.Select(q => Math.Log2(q.X)).ToArray(), points.Select(q => q.Y).ToArray());
                line.LegendText = variant;
            }
            var replay = plot.Add.Scatter(report.ModelFree.Select(r => Math.Log2(r.Batch)).ToArray(), report.ModelFree.Select(r => r.TokensPerStep).ToArray());
            replay.LegendText = "model-free replay tokens/step";
            replay.LinePattern = LinePattern.Dashed;
            plot.Add.HorizontalLine(1.0, pattern: LinePattern.Dotted);
            BatchAxis(plot, report.Results.Select(r => r.Batch).Distinct().Order().ToArray());
            plot.YLabel("speedup over plain decoding");
            plot.Title("Engine speedup by batch size");
            plot.XLabel($"batch size ({report.Device})");
            plot.ShowLegend();
            plot.SavePng(p.GetValue(output)!, 800, 500);
            return 0;
        });
        return command;
    }

    /// <summary>The x axis of batch sizes plotted at log2(batch), ticked at <paramref name="batches"/>.</summary>
    internal static void BatchAxis(Plot plot, int[] batches) =>
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            batches.Select(b => Math.Log2(b)).ToArray(), batches.Select(b => b.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
}
