using ScottPlot;

namespace SpecDecode.Replay;

/// <summary>
/// Draws the results as a PNG with two panels: mean accepted tokens per step against the budget for each drafter (a
/// bar per drafter when one budget was run), and the acceptance rate by draft position.
/// </summary>
internal static class PlotWriter
{
    /// <summary>Positions shown in the acceptance-by-position panel at most.</summary>
    public const int MaxPositions = 64;

    public static void Write(string path, IReadOnlyList<ReplayResult> results, int width = 1400, int height = 560)
    {
        ArgumentNullException.ThrowIfNull(results);
        SaveColumns(path, width, height, p => DrawTokensPerStep(p, results), p => DrawAcceptanceByPosition(p, results));
    }

    /// <summary>Draws one panel per action, side by side, into a PNG (creating its folder).</summary>
    internal static void SaveColumns(string path, int width, int height, params Action<Plot>[] panels)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null)
        {
            Directory.CreateDirectory(folder);
        }
        var multiplot = new Multiplot();
        multiplot.AddPlots(panels.Length);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        for (int i = 0; i < panels.Length; i++)
        {
            panels[i](multiplot.GetPlot(i));
        }
        multiplot.SavePng(path, width, height);
    }

    private static void DrawTokensPerStep(Plot plot, IReadOnlyList<ReplayResult> results)
    {
        var drafters = results.Select(r => r.Drafter).Distinct().ToList();
        bool sweep = results.Select(r => r.Budget).Distinct().Count() > 1;
        if (sweep)
        {
            foreach (string drafter in drafters)
            {
                ReplayResult[] rs = results.Where(r => r.Drafter == drafter).OrderBy(r => r.Budget).ToArray();
                var scatter = plot.Add.Scatter(rs.Select(r => (double)r.Budget).ToArray(), rs.Select(r => r.MeanAcceptedTokensPerStep).ToArray());
                scatter.LegendText = drafter;
                scatter.MarkerSize = 7;
                scatter.Color = Palette(drafters.IndexOf(drafter));
            }
            plot.XLabel("budget (draft tokens per step)");
            plot.ShowLegend(Alignment.LowerRight);
        }
        else
        {
            var ticks = new List<Tick>();
            for (int i = 0; i < drafters.Count; i++)
            {
                ReplayResult r = results.First(x => x.Drafter == drafters[i]);
                var bar = plot.Add.Bar(i, r.MeanAcceptedTokensPerStep);
                bar.Bars[0].Label = r.MeanAcceptedTokensPerStep.ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
                bar.Bars[0].FillColor = Palette(i);
                ticks.Add(new Tick(i, drafters[i]));
            }
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
            plot.Axes.Margins(bottom: 0);
            plot.XLabel($"drafter (budget {results[0].Budget})");
        }
        var oneLine = plot.Add.HorizontalLine(1.0);
        oneLine.LinePattern = LinePattern.Dashed;
        oneLine.Color = Colors.Gray;
        plot.YLabel("mean accepted tokens per step (incl. bonus)");
        plot.Title("Tokens per verification step");
    }

    private static void DrawAcceptanceByPosition(Plot plot, IReadOnlyList<ReplayResult> results)
    {
        // One line per drafter, at its largest budget.
        int colour = 0;
        foreach (ReplayResult r in results.GroupBy(r => r.Drafter).Select(g => g.MaxBy(x => x.Budget)!))
        {
            double[] rate = r.AcceptanceByPosition;
            int n = Math.Min(rate.Length, MaxPositions);
            if (n == 0)
            {
                colour++;
                continue;
            }
            double[] xs = Enumerable.Range(1, n).Select(i => (double)i).ToArray();
            var scatter = plot.Add.Scatter(xs, rate.AsSpan(0, n).ToArray());
            scatter.LegendText = $"{r.Drafter} (budget {r.Budget})";
            scatter.MarkerSize = 4;
            scatter.Color = Palette(colour++);
        }
        plot.Axes.SetLimitsY(0, 1.05);
        plot.XLabel("draft position (depth)");
        plot.YLabel("accepted / drafted at this position");
        plot.Title("Acceptance by draft position");
        plot.ShowLegend(Alignment.UpperRight);
    }

    private static Color Palette(int i) => new ScottPlot.Palettes.Category10().GetColor(i);
}
