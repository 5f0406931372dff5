using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>Every figure of one fleet configuration over the selected trajectories.</summary>
public sealed class FleetResult
{
    /// <summary>The configuration.</summary>
    [JsonPropertyName("settings")] public required FleetSettings Settings { get; init; }

    /// <summary>The configuration's label, e.g. <c>shared 30s</c>.</summary>
    [JsonPropertyName("label")] public string Label => Settings.Label;

    /// <summary>Trajectories replayed.</summary>
    [JsonPropertyName("trajectories")] public required int Trajectories { get; init; }

    /// <summary>Calls replayed.</summary>
    [JsonPropertyName("calls")] public required long Calls { get; init; }

    /// <summary>Response tokens over all calls (each emitted once).</summary>
    [JsonPropertyName("response_tokens")] public required long ResponseTokens { get; init; }

    /// <summary>Verification steps over all replicas.</summary>
    [JsonPropertyName("steps")] public required long Steps { get; init; }

    /// <summary>Steps with a non-empty draft.</summary>
    [JsonPropertyName("drafts")] public required long Drafts { get; init; }

    /// <summary>Draft tokens proposed.</summary>
    [JsonPropertyName("drafted_tokens")] public required long DraftedTokens { get; init; }

    /// <summary>Draft tokens accepted (bonus tokens excluded).</summary>
    [JsonPropertyName("accepted_tokens")] public required long AcceptedTokens { get; init; }

    /// <summary>Response tokens / steps, bonus included (the replay's mean accepted tokens per step).</summary>
    [JsonPropertyName("tokens_per_step")] public double TokensPerStep => Steps == 0 ? 0 : (double)ResponseTokens / Steps;

    /// <summary>Accepted / drafted tokens.</summary>
    [JsonPropertyName("acceptance_rate")] public double AcceptanceRate => DraftedTokens == 0 ? 0 : (double)AcceptedTokens / DraftedTokens;

    /// <summary>Responses delivered to another replica's global tree (shared mode; one per receiving replica).</summary>
    [JsonPropertyName("delivered_responses")] public required long DeliveredResponses { get; init; }

    /// <summary>Tokens of those deliveries.</summary>
    [JsonPropertyName("delivered_tokens")] public required long DeliveredTokens { get; init; }

    /// <summary>Responses still in flight when the last call ended (never delivered).</summary>
    [JsonPropertyName("undelivered_responses")] public required long UndeliveredResponses { get; init; }

    /// <summary>Per replica: calls, steps, response tokens and what its global tree held at the end.</summary>
    [JsonPropertyName("replicas")] public required IReadOnlyList<FleetReplicaResult> Replicas { get; init; }

    /// <summary>Simulated time from the first call's start to the last call's end, in s.</summary>
    [JsonPropertyName("simulated_seconds")] public required double SimulatedSeconds { get; init; }

    /// <summary>Wall time of the simulation, in s.</summary>
    [JsonPropertyName("wall_seconds")] public required double WallSeconds { get; init; }

    /// <summary>The drafters' own memory estimates at the end, summed, in bytes.</summary>
    [JsonPropertyName("drafter_memory_bytes")] public required long DrafterMemoryBytes { get; init; }
}

/// <summary>One replica's share of a <see cref="FleetResult"/>.</summary>
/// <param name="Calls">Calls it served.</param>
/// <param name="Steps">Steps it ran.</param>
/// <param name="ResponseTokens">Response tokens it emitted.</param>
/// <param name="CachedResponseTokens">Tokens in its global tree at the end (its own and delivered responses).</param>
public sealed record FleetReplicaResult(
    [property: JsonPropertyName("calls")] long Calls,
    [property: JsonPropertyName("steps")] long Steps,
    [property: JsonPropertyName("response_tokens")] long ResponseTokens,
    [property: JsonPropertyName("cached_response_tokens")] long CachedResponseTokens)
{
    /// <summary>Response tokens / steps on this replica.</summary>
    [JsonPropertyName("tokens_per_step")] public double TokensPerStep => Steps == 0 ? 0 : (double)ResponseTokens / Steps;
}
