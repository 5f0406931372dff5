namespace SpecDecode;

/// <summary>What speculation did for one request (or, summed, for an engine), in the counters vLLM's spec-decode metrics use.</summary>
/// <param name="PromptTokens">Prompt tokens.</param>
/// <param name="GeneratedTokens">Tokens emitted (accepted draft tokens plus bonus tokens, a final stop token included).</param>
/// <param name="Steps">Verification steps the request took part in.</param>
/// <param name="Drafts">Steps with a non-empty draft.</param>
/// <param name="DraftTokens">Draft tokens verified.</param>
/// <param name="AcceptedTokens">Draft tokens accepted.</param>
/// <param name="AcceptedPerPosition">Element i: drafts whose accepted path reached depth i + 1.</param>
/// <param name="DraftingTime">Time spent drafting for the request (its share of batched drafting).</param>
/// <param name="VerificationTime">Time of the verification forwards the request took part in (each step counted whole).</param>
/// <param name="PrefillTime">Time of the prefill forwards of the request's prompt.</param>
/// <param name="QueueTime">Time from submission until the request got a slot.</param>
/// <param name="TotalTime">Time from submission to the last token.</param>
public sealed record GenerationStatistics(
    int PromptTokens,
    long GeneratedTokens,
    long Steps,
    long Drafts,
    long DraftTokens,
    long AcceptedTokens,
    IReadOnlyList<long> AcceptedPerPosition,
    TimeSpan DraftingTime,
    TimeSpan VerificationTime,
    TimeSpan PrefillTime,
    TimeSpan QueueTime,
    TimeSpan TotalTime)
{
    /// <summary>Prompt tokens whose keys and values were already cached (a shared prefix: the conversation's earlier calls,
    /// a common system prompt) and were not computed again: <see cref="PromptTokens"/> minus this many were prefilled.
    /// Summed over requests in <see cref="EngineStatistics.Totals"/>.</summary>
    public long CachedPromptTokens { get; init; }

    /// <summary>Time from submission to the first generated token (zero until there is one; the engine-wide sum in
    /// <see cref="EngineStatistics.Totals"/>).</summary>
    public TimeSpan TimeToFirstToken { get; init; }

    /// <summary>Times the request gave its memory back to let others run when the KV cache was full (it resumed later,
    /// reusing what was still cached).</summary>
    public int Preemptions { get; init; }

    /// <summary>vLLM's mean acceptance length: 1 + accepted / drafts (1 without drafts).</summary>
    public double MeanAcceptanceLength => Drafts == 0 ? 1.0 : 1.0 + (double)AcceptedTokens / Drafts;

    /// <summary>Emitted tokens per verification step (the replay protocol's tokens per step).</summary>
    public double MeanTokensPerStep => Steps == 0 ? 0.0 : (double)GeneratedTokens / Steps;

    /// <summary>Accepted draft tokens / draft tokens.</summary>
    public double AcceptanceRate => DraftTokens == 0 ? 0.0 : (double)AcceptedTokens / DraftTokens;

    /// <summary>Generated tokens per second of <see cref="TotalTime"/> minus <see cref="QueueTime"/> (prefill included).</summary>
    public double TokensPerSecond
    {
        get
        {
            double seconds = (TotalTime - QueueTime).TotalSeconds;
            return seconds <= 0 ? 0.0 : GeneratedTokens / seconds;
        }
    }
}

/// <summary>An engine's counters since it started.</summary>
/// <param name="Completed">Requests finished (any reason, cancellations included).</param>
/// <param name="Active">Requests holding a slot now.</param>
/// <param name="Waiting">Requests waiting for a slot.</param>
/// <param name="Batches">Batched verification forwards run.</param>
/// <param name="Totals">The requests' counters summed (prompt tokens of admitted requests, saturating at
/// <see cref="int.MaxValue"/>); its times are the engine's wall-clock times (drafting, verifying,
/// prefilling) and its <see cref="GenerationStatistics.TotalTime"/> the time the engine spent in steps.</param>
/// <param name="HostTime">Engine time outside drafting, verification and prefill forwards: scheduling, stop checks,
/// detokenization, bookkeeping.</param>
public sealed record EngineStatistics(long Completed, int Active, int Waiting, long Batches, GenerationStatistics Totals, TimeSpan HostTime);
