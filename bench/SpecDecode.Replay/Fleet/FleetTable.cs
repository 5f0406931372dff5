using System.Globalization;
using Spectre.Console;

namespace SpecDecode.Replay;

/// <summary>The fleet results as a table: one row per replica count, one column per mode (tokens per step and acceptance).</summary>
internal static class FleetTable
{
    /// <summary>Results grouped into the lines of the plot and the columns of the table, by label; a one-replica run
    /// (the same for every mode) joins every line.</summary>
    public static IEnumerable<IGrouping<string, FleetResult>> Lines(IReadOnlyList<FleetResult> results)
    {
        FleetResult? single = results.FirstOrDefault(r => r.Settings.Replicas == 1);
        string[] labels = results.Where(r => r.Settings.Replicas > 1).Select(r => r.Label).Distinct().ToArray();
        if (labels.Length == 0)
        {
            labels = results.Select(r => r.Label).Distinct().ToArray();
        }
        var points = new List<(string Label, FleetResult Result)>();
        foreach (string label in labels)
        {
            points.AddRange(results.Where(r => r.Label == label && r.Settings.Replicas > 1).Select(r => (label, r)));
            if (single is not null)
            {
                points.Add((label, single));
            }
        }
        return points.GroupBy(p => p.Label, p => p.Result);
    }

    public static Table Build(IReadOnlyList<FleetResult> results)
    {
        var lines = Lines(results).ToList();
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]Fleet simulation: tokens per step (acceptance)[/]");
        table.AddColumn("replicas");
        foreach (var line in lines)
        {
            table.AddColumn(new TableColumn(Markup.Escape(line.Key)).RightAligned());
        }
        foreach (int replicas in results.Select(r => r.Settings.Replicas).Distinct().Order())
        {
            var cells = new List<string> { replicas.ToString(CultureInfo.InvariantCulture) };
            foreach (var line in lines)
            {
                FleetResult? r = line.FirstOrDefault(x => x.Settings.Replicas == replicas);
                cells.Add(r is null ? "" : string.Create(CultureInfo.InvariantCulture, $"{r.TokensPerStep:F3} ({r.AcceptanceRate:P1})"));
            }
            table.AddRow(cells.ToArray());
        }
        return table;
    }
}
