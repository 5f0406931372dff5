using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>The JSON document the command writes: what was replayed, how, and every result.</summary>
public sealed class ReplayReport
{
    /// <summary>The trace file.</summary>
    [JsonPropertyName("traces")] public required string Traces { get; init; }

    /// <summary>Tokenizer and message framing used.</summary>
    [JsonPropertyName("tokenizer")] public string Tokenizer { get; init; } = "o200k_base, no special tokens; <|im_start|>role\\n + content + <|im_end|>\\n pieces";

    /// <summary>Which trajectories were selected, e.g. <c>first 5</c>.</summary>
    [JsonPropertyName("selection")] public required string Selection { get; init; }

    /// <summary>Whether bad lines were skipped instead of failing the run.</summary>
    [JsonPropertyName("skip_bad")] public required bool SkipBad { get; init; }

    /// <summary>Lines left out under --skip-bad, with the reason.</summary>
    [JsonPropertyName("skipped_lines")] public required IReadOnlyList<SkippedLine> SkippedLines { get; init; }

    /// <summary>True when no selected line was skipped: the figures cover every selected trajectory.</summary>
    [JsonPropertyName("complete")] public bool Complete => SkippedLines.Count == 0;

    /// <summary>Trajectories replayed per run.</summary>
    [JsonPropertyName("trajectories")] public required int Trajectories { get; init; }

    /// <summary>Calls replayed per run.</summary>
    [JsonPropertyName("calls")] public required long Calls { get; init; }

    /// <summary>Drafter settings.</summary>
    [JsonPropertyName("drafter_settings")] public required DrafterSettings DrafterSettings { get; init; }

    /// <summary>How the timings were warmed up.</summary>
    [JsonPropertyName("warm_up")] public required string WarmUp { get; init; }

    /// <summary>Machine and runtime.</summary>
    [JsonPropertyName("machine")] public required MachineInfo Machine { get; init; }

    /// <summary>When the run started (UTC, ISO 8601).</summary>
    [JsonPropertyName("started_utc")] public required DateTime StartedUtc { get; init; }

    /// <summary>One result per drafter and budget, in run order.</summary>
    [JsonPropertyName("results")] public required IReadOnlyList<ReplayResult> Results { get; init; }

    /// <summary>Options: indented, enums as lower-case strings.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    };

    /// <summary>Writes the report as JSON, creating the folder if needed.</summary>
    public void Write(string path)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null)
        {
            Directory.CreateDirectory(folder);
        }
        using FileStream stream = File.Create(path);
        JsonSerializer.Serialize(stream, this, JsonOptions);
    }
}

/// <summary>Where the figures were measured.</summary>
/// <param name="ProcessorCount">Logical processors.</param>
/// <param name="Os">Operating system description.</param>
/// <param name="Runtime">.NET runtime description.</param>
/// <param name="ServerGc">Whether the server GC ran.</param>
public sealed record MachineInfo(
    [property: JsonPropertyName("processor_count")] int ProcessorCount,
    [property: JsonPropertyName("os")] string Os,
    [property: JsonPropertyName("runtime")] string Runtime,
    [property: JsonPropertyName("server_gc")] bool ServerGc)
{
    /// <summary>This machine.</summary>
    public static MachineInfo Current() => new(Environment.ProcessorCount,
        System.Runtime.InteropServices.RuntimeInformation.OSDescription,
        System.Runtime.InteropServices.RuntimeInformation.FrameworkDescription,
        System.Runtime.GCSettings.IsServerGC);
}
