using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace SpecDecode.Tree;

/// <summary>How a <see cref="SpeculativeEngine"/> schedules, drafts and prompts. Validated when the engine is created.</summary>
public sealed class SpeculativeEngineOptions
{
    /// <summary>Requests served at once (continuous batching); at most the model's <see cref="TargetModel.MaxBatch"/>,
    /// which is also the default. Further requests wait for a slot.</summary>
    public int? MaxBatch { get; init; }

    /// <summary>
    /// Tokens one engine step computes at most, verification rows first (batch × widest tree) and then chunks of waiting
    /// prompts: a long prompt is prefilled a chunk per step beside the running requests' steps instead of stalling them
    /// for the whole prompt. At least a sixteenth of it always goes to prompts, so they progress at any batch. Default 2048.
    /// </summary>
    public int StepTokenBudget { get; init; } = 2048;

    /// <summary>Draft tokens per request per step, at most (tree nodes). Default 32.</summary>
    public int MaxDraftTokens { get; init; } = 32;

    /// <summary>A per-request budget rule applied before drafting (capped by <see cref="MaxDraftTokens"/>); null for
    /// <see cref="MaxDraftTokens"/> always. The suffix drafter applies its own match-length rule inside the budget.</summary>
    public ISpeculationPolicy? Policy { get; init; }

    /// <summary>
    /// Prune the batch's drafts each step to the selection with the highest expected tokens per second under a
    /// verification cost model (see <see cref="CostModel"/>), down to no draft at all when speculation would not pay,
    /// e.g. at large batch sizes where verification is compute-bound; and skip a model drafter's forwards when even its
    /// recent acceptance would not pay for them. Default true. Off: every draft is verified as proposed.
    /// </summary>
    public bool AdaptiveSpeculation { get; init; } = true;

    /// <summary>The verification cost model for <see cref="AdaptiveSpeculation"/>; null measures one on the model when the
    /// engine is created (a few seconds on a GPU: <see cref="VerificationCostModel.Measure"/>).</summary>
    public VerificationCostModel? CostModel { get; init; }

    /// <summary>Context length at which a cost model is measured when <see cref="CostModel"/> is null; null for a quarter
    /// of the model's capacity, at most 2048.</summary>
    public int? CostModelContext { get; init; }

    /// <summary>The default stop tokens of requests that do not name theirs; null for the model's
    /// <see cref="TargetModel.EndOfSequenceTokenIds"/> (generation_config.json, else config.json).</summary>
    public IReadOnlyList<int>? EndOfSequenceTokenIds { get; init; }

    /// <summary>Renders chat messages into a prompt, followed by the assistant turn's header: the checkpoint's template
    /// (<see cref="Tokenization.ChatTemplate.Load"/>); null refuses requests with <see cref="GenerationRequest.Messages"/>.</summary>
    public Tokenization.ChatTemplate? ChatTemplate { get; init; }

    /// <summary>Put the checkpoint's BOS token (config.json <c>bos_token_id</c>) before text prompts that do not start with
    /// it, as transformers' Llama tokenizers do. Default true. Token-id prompts are never changed; chat templates write
    /// their own BOS.</summary>
    public bool PrependBosToText { get; init; } = true;

    /// <summary>Where the engine logs: start (model, batch, drafter, cost model) and stop at Information, refused,
    /// finished and cancelled requests at Debug, failed requests at Warning, failed steps at Error. Null (the default)
    /// for <see cref="Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance"/>.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Creates the engine's <see cref="Meter"/> (named <c>SpecDecode</c>, versioned as this assembly), e.g. the
    /// host's <see cref="IMeterFactory"/> from dependency injection, which then owns the meter. Null (the default): the
    /// engine creates the meter itself, with the engine as its <see cref="Meter.Scope"/>, and disposes it with the engine.
    /// See docs/engine.md for the instruments.</summary>
    public IMeterFactory? MeterFactory { get; init; }

    /// <summary>Benchmarks on random weights: admit a request by setting its slot's cached length to the prompt's (the
    /// cache's values are whatever the slot holds) instead of running the prefill forwards, whose cost is measured
    /// elsewhere and whose values do not change the cost of later steps.</summary>
    internal bool SkipPrefillForBenchmark { get; init; }

    internal void Validate(TargetModel model)
    {
        if (MaxBatch is int batch && (batch < 1 || batch > model.MaxBatch))
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatch), batch, $"MaxBatch must be 1 .. {model.MaxBatch} (the model's TargetModelOptions.MaxBatch).");
        }
        if (StepTokenBudget < 16)
        {
            throw new ArgumentOutOfRangeException(nameof(StepTokenBudget), StepTokenBudget, "StepTokenBudget must be at least 16 tokens.");
        }
        if (MaxDraftTokens < 0 || MaxDraftTokens >= model.Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxDraftTokens), MaxDraftTokens, $"MaxDraftTokens must be 0 .. {model.Capacity - 1} (below the model's context).");
        }
        if (CostModelContext is int context && (context < 0 || context + 2 > model.Capacity))
        {
            throw new ArgumentOutOfRangeException(nameof(CostModelContext), context, $"CostModelContext must be 0 .. {model.Capacity - 2}.");
        }
        if (EndOfSequenceTokenIds is not null && EndOfSequenceTokenIds.Any(t => t < 0 || t >= model.Config.VocabSize))
        {
            throw new ArgumentOutOfRangeException(nameof(EndOfSequenceTokenIds), $"End-of-sequence ids must be in 0 .. {model.Config.VocabSize - 1}.");
        }
    }
}
