using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>Which trajectories of a trace file to read: all, the first N lines, or named tasks.</summary>
public sealed record TraceSelection
{
    /// <summary>Every trajectory.</summary>
    public static TraceSelection All { get; } = new();

    /// <summary>Read only the first this many trajectory lines (bad lines skipped with <c>--skip-bad</c> count too); null for no limit.</summary>
    public int? First { get; init; }

    /// <summary>Read only these task ids (each must be present in the file); null or empty for any.</summary>
    public IReadOnlySet<string>? TaskIds { get; init; }

    /// <summary>True when <paramref name="taskId"/> is selected by <see cref="TaskIds"/>.</summary>
    public bool IncludesTask(string taskId) => TaskIds is null || TaskIds.Count == 0 || TaskIds.Contains(taskId);

    /// <summary>A short description for reports, e.g. <c>first 5</c> or <c>all</c>.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (First is int n)
        {
            parts.Add($"first {n}");
        }
        if (TaskIds is { Count: > 0 } ids)
        {
            parts.Add("tasks " + string.Join(",", ids.Order(StringComparer.Ordinal)));
        }
        return parts.Count == 0 ? "all" : string.Join("; ", parts);
    }
}

/// <summary>A trace line left out under <c>--skip-bad</c>, and why.</summary>
/// <param name="LineNumber">1-based line number (0 for the file as a whole).</param>
/// <param name="Kind">What was wrong.</param>
/// <param name="Detail">The error message without the file and line prefix.</param>
public sealed record SkippedLine(
    [property: JsonPropertyName("line")] long LineNumber,
    [property: JsonPropertyName("kind")] TraceErrorKind Kind,
    [property: JsonPropertyName("detail")] string Detail);

/// <summary>Counts from a pass over a trace file without tokenizing (see <see cref="TraceReader.Scan"/>).</summary>
/// <param name="Trajectories">Trajectories selected and valid.</param>
/// <param name="Calls">Their calls.</param>
/// <param name="Skipped">Lines left out under <c>--skip-bad</c>.</param>
public sealed record TraceScan(int Trajectories, long Calls, IReadOnlyList<SkippedLine> Skipped);
