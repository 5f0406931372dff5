using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>Every figure of one replay of one drafter at one budget over the selected calls.</summary>
/// <remarks>Definitions follow the replay protocol of <c>shared/data/swebench/README.md</c> and vLLM's
/// <c>v1/spec_decode/metrics.py</c>: a step is one verification; a draft is a step with a non-empty draft.</remarks>
public sealed class ReplayResult
{
    /// <summary>The drafter's label, e.g. <c>suffix</c>.</summary>
    [JsonPropertyName("drafter")] public required string Drafter { get; init; }

    /// <summary>Draft-token budget per step.</summary>
    [JsonPropertyName("budget")] public required int Budget { get; init; }

    /// <summary>Trajectories replayed.</summary>
    [JsonPropertyName("trajectories")] public required int Trajectories { get; init; }

    /// <summary>LLM calls replayed (requests).</summary>
    [JsonPropertyName("calls")] public required long Calls { get; init; }

    /// <summary>Prompt tokens summed over calls.</summary>
    [JsonPropertyName("prompt_tokens")] public required long PromptTokens { get; init; }

    /// <summary>Response tokens summed over calls: every one is emitted exactly once.</summary>
    [JsonPropertyName("response_tokens")] public required long ResponseTokens { get; init; }

    /// <summary>Verification steps.</summary>
    [JsonPropertyName("steps")] public required long Steps { get; init; }

    /// <summary>Steps with a non-empty draft.</summary>
    [JsonPropertyName("drafts")] public required long Drafts { get; init; }

    /// <summary>Draft tokens proposed (tree nodes).</summary>
    [JsonPropertyName("drafted_tokens")] public required long DraftedTokens { get; init; }

    /// <summary>Draft tokens accepted (bonus tokens excluded).</summary>
    [JsonPropertyName("accepted_tokens")] public required long AcceptedTokens { get; init; }

    /// <summary>Mean accepted tokens per step = response tokens / steps (bonus token included; 1.0 means no gain).</summary>
    [JsonPropertyName("mean_accepted_tokens_per_step")] public double MeanAcceptedTokensPerStep => Steps == 0 ? 0 : (double)ResponseTokens / Steps;

    /// <summary>vLLM's mean acceptance length over drafts: 1 + accepted / drafts.</summary>
    [JsonPropertyName("mean_acceptance_length_per_draft")] public double MeanAcceptanceLength => Drafts == 0 ? 1 : 1 + (double)AcceptedTokens / Drafts;

    /// <summary>Accepted draft tokens / drafted tokens.</summary>
    [JsonPropertyName("acceptance_rate")] public double AcceptanceRate => DraftedTokens == 0 ? 0 : (double)AcceptedTokens / DraftedTokens;

    /// <summary>Drafted tokens / steps.</summary>
    [JsonPropertyName("drafted_tokens_per_step")] public double DraftedTokensPerStep => Steps == 0 ? 0 : (double)DraftedTokens / Steps;

    /// <summary>Element i: drafts whose accepted path reached depth i + 1.</summary>
    [JsonPropertyName("accepted_per_position")] public required long[] AcceptedPerPosition { get; init; }

    /// <summary>Element i: drafts that had a node at depth i + 1.</summary>
    [JsonPropertyName("drafted_per_position")] public required long[] DraftedPerPosition { get; init; }

    /// <summary>Element i: accepted / drafted at depth i + 1 (the chance a position is accepted when it is drafted).</summary>
    [JsonPropertyName("acceptance_by_position")]
    public double[] AcceptanceByPosition => DraftedPerPosition
        .Select((d, i) => d == 0 ? 0 : (i < AcceptedPerPosition.Length ? AcceptedPerPosition[i] : 0) / (double)d).ToArray();

    /// <summary>Time of one Propose, per step, in µs.</summary>
    [JsonPropertyName("drafting_time_per_step_us")] public required LatencySummary DraftingTimeUs { get; init; }

    /// <summary>Time of one Observe divided by the tokens it appended, per step, in µs per token.</summary>
    [JsonPropertyName("cache_update_time_per_token_us")] public required LatencySummary CacheUpdateTimePerTokenUs { get; init; }

    /// <summary>Time of StartRequest per call, in ms.</summary>
    [JsonPropertyName("request_start_ms")] public required LatencySummary RequestStartMs { get; init; }

    /// <summary>Time of EndRequest per call, in µs.</summary>
    [JsonPropertyName("end_request_us")] public required LatencySummary EndRequestUs { get; init; }

    /// <summary>Total time inside Propose, in s.</summary>
    [JsonPropertyName("drafting_seconds")] public required double DraftingSeconds { get; init; }

    /// <summary>Total time inside Observe, in s.</summary>
    [JsonPropertyName("cache_update_seconds")] public required double CacheUpdateSeconds { get; init; }

    /// <summary>Wall time of the replay loop in s, reading and tokenizing the trace excluded.</summary>
    [JsonPropertyName("wall_seconds")] public required double WallSeconds { get; init; }

    /// <summary>Time spent reading and tokenizing the trace during the replay, in s.</summary>
    [JsonPropertyName("trace_read_seconds")] public required double TraceReadSeconds { get; init; }

    /// <summary>The drafter's own memory estimate at the end in bytes; -1 when the drafter exposes none.</summary>
    [JsonPropertyName("drafter_memory_bytes")] public required long DrafterMemoryBytes { get; init; }

    /// <summary>
    /// Live managed heap after the replay minus before it (full collections), less the replay's own sample arrays, in
    /// bytes: what the drafter retains, as the GC sees it; -1 when not measured.
    /// </summary>
    [JsonPropertyName("managed_heap_growth_bytes")] public required long ManagedHeapGrowthBytes { get; init; }

    /// <summary>Peak resident memory of the whole process when this replay ended (VmHWM), in bytes.</summary>
    [JsonPropertyName("process_peak_memory_bytes")] public required long ProcessPeakMemoryBytes { get; init; }
}
