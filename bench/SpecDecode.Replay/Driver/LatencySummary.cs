using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>Median, 99th percentile, mean and maximum of one timing, in the unit its owner names (µs or ms).</summary>
/// <param name="Count">Samples.</param>
/// <param name="Median">50th percentile (nearest rank).</param>
/// <param name="P99">99th percentile (nearest rank).</param>
/// <param name="Mean">Arithmetic mean.</param>
/// <param name="Max">Largest sample.</param>
public sealed record LatencySummary(
    [property: JsonPropertyName("count")] long Count,
    [property: JsonPropertyName("median")] double Median,
    [property: JsonPropertyName("p99")] double P99,
    [property: JsonPropertyName("mean")] double Mean,
    [property: JsonPropertyName("max")] double Max)
{
    /// <summary>No samples (every figure 0).</summary>
    public static LatencySummary None { get; } = new(0, 0, 0, 0, 0);
}
