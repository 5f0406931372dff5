using System.Globalization;
using Spectre.Console;

namespace SpecDecode.Replay;

/// <summary>The short summary table printed at the end of a run: one column per drafter and budget, one row per figure.</summary>
internal static class ResultTable
{
    public static Table Build(IReadOnlyList<ReplayResult> results)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("[bold]Replay results[/]");
        table.AddColumn("figure");
        foreach (ReplayResult r in results)
        {
            table.AddColumn(new TableColumn(Markup.Escape($"{r.Drafter} b={r.Budget}")).RightAligned());
        }
        Row(table, results, "calls", r => F($"{r.Calls:N0}"));
        Row(table, results, "response tokens", r => F($"{r.ResponseTokens:N0}"));
        Row(table, results, "steps", r => F($"{r.Steps:N0}"));
        Row(table, results, "[bold]mean accepted tokens/step[/]", r => F($"[bold]{r.MeanAcceptedTokensPerStep:F3}[/]"));
        Row(table, results, "acceptance rate", r => F($"{r.AcceptanceRate:P1}"));
        Row(table, results, "drafted tokens/step", r => F($"{r.DraftedTokensPerStep:F2}"));
        Row(table, results, "drafting µs/step p50 / p99", r => F($"{r.DraftingTimeUs.Median:F1} / {r.DraftingTimeUs.P99:F1}"));
        Row(table, results, "cache update µs/token p50 / p99", r => F($"{r.CacheUpdateTimePerTokenUs.Median:F2} / {r.CacheUpdateTimePerTokenUs.P99:F2}"));
        Row(table, results, "request start ms p50 / p99", r => F($"{r.RequestStartMs.Median:F3} / {r.RequestStartMs.P99:F3}"));
        Row(table, results, "wall s (trace read s)", r => F($"{r.WallSeconds:F2} ({r.TraceReadSeconds:F2})"));
        Row(table, results, "drafter memory", r => Bytes(r.DrafterMemoryBytes));
        Row(table, results, "managed heap growth", r => Bytes(r.ManagedHeapGrowthBytes));
        Row(table, results, "process peak memory", r => Bytes(r.ProcessPeakMemoryBytes));
        return table;
    }

    /// <summary>Bytes in MiB, or "n/a" for a negative (unknown) size.</summary>
    public static string Bytes(long bytes) =>
        bytes < 0 ? "n/a" : string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024.0):F1} MiB");

    private static void Row(Table table, IReadOnlyList<ReplayResult> results, string label, Func<ReplayResult, string> cell)
    {
        var cells = new List<string>(results.Count + 1) { label };
        cells.AddRange(results.Select(cell));
        table.AddRow(cells.ToArray());
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
