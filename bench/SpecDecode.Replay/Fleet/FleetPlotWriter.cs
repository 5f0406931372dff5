using ScottPlot;

namespace SpecDecode.Replay;

/// <summary>Draws the fleet results: tokens per step and acceptance rate against the number of replicas, one line per mode.</summary>
internal static class FleetPlotWriter
{
    public static void Write(string path, IReadOnlyList<FleetResult> results, int width = 1400, int height = 560)
    {
        ArgumentNullException.ThrowIfNull(results);
        PlotWriter.SaveColumns(path, width, height,
            p => Draw(p, results, r => r.TokensPerStep, "tokens per step (incl. bonus)", "Tokens per verification step"),
            p => Draw(p, results, r => r.AcceptanceRate, "accepted / drafted tokens", "Acceptance rate"));
    }

    private static void Draw(Plot plot, IReadOnlyList<FleetResult> results, Func<FleetResult, double> figure, string yLabel, string title)
    {
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (IGrouping<string, FleetResult> line in FleetTable.Lines(results))
        {
            FleetResult[] rs = line.OrderBy(r => r.Settings.Replicas).ToArray();
            var scatter = plot.Add.Scatter(rs.Select(r => Math.Log2(r.Settings.Replicas)).ToArray(), rs.Select(figure).ToArray());
            scatter.LegendText = line.Key;
            scatter.MarkerSize = 7;
            scatter.Color = palette.GetColor(colour++);
        }
        int[] replicas = results.Select(r => r.Settings.Replicas).Distinct().Order().ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            replicas.Select(r => new Tick(Math.Log2(r), r.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToArray());
        plot.XLabel("replicas (one agent each at a time; conversation-affine)");
        plot.YLabel(yLabel);
        plot.Title(title);
        plot.ShowLegend(Alignment.UpperRight);
    }
}
