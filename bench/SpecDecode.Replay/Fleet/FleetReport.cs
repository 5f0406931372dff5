using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>The JSON document the <c>fleet</c> command writes.</summary>
public sealed class FleetReport
{
    /// <summary>The trace file.</summary>
    [JsonPropertyName("traces")] public required string Traces { get; init; }

    /// <summary>Which trajectories were selected, e.g. <c>first 5</c>.</summary>
    [JsonPropertyName("selection")] public required string Selection { get; init; }

    /// <summary>Trajectories per run.</summary>
    [JsonPropertyName("trajectories")] public required int Trajectories { get; init; }

    /// <summary>Calls per run.</summary>
    [JsonPropertyName("calls")] public required long Calls { get; init; }

    /// <summary>Seconds spent reading and tokenizing the trace (once for all runs).</summary>
    [JsonPropertyName("trace_read_seconds")] public required double TraceReadSeconds { get; init; }

    /// <summary>How runs with one replica were treated.</summary>
    [JsonPropertyName("note")] public string Note { get; init; } =
        "with one replica every mode is the same run (one drafter, nothing to deliver): it is run once, as isolated";

    /// <summary>Machine and runtime.</summary>
    [JsonPropertyName("machine")] public required MachineInfo Machine { get; init; }

    /// <summary>When the command started (UTC).</summary>
    [JsonPropertyName("started_utc")] public required DateTime StartedUtc { get; init; }

    /// <summary>Peak resident memory of the process at the end (VmHWM), in bytes.</summary>
    [JsonPropertyName("process_peak_memory_bytes")] public required long ProcessPeakMemoryBytes { get; init; }

    /// <summary>One result per configuration, in run order.</summary>
    [JsonPropertyName("results")] public required IReadOnlyList<FleetResult> Results { get; init; }

    /// <summary>Writes the report as JSON, creating the folder if needed.</summary>
    public void Write(string path)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null)
        {
            Directory.CreateDirectory(folder);
        }
        using FileStream stream = File.Create(path);
        JsonSerializer.Serialize(stream, this, ReplayReport.JsonOptions);
    }
}
