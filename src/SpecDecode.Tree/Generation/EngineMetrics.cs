using System.Diagnostics.Metrics;
using System.Reflection;

namespace SpecDecode.Tree;

/// <summary>
/// The engine's <see cref="System.Diagnostics.Metrics"/> instruments, on a <see cref="Meter"/> named
/// <see cref="MeterName"/>: vLLM's spec-decode counters (drafts, draft tokens, accepted tokens, accepted tokens per
/// position), generated tokens, finished requests, step-time and batch-size histograms.
/// </summary>
/// <remarks>
/// Names follow vLLM's <c>vllm:spec_decode_*</c> metrics (vllm <c>v1/spec_decode/metrics.py</c>) under the
/// <c>specdecode.</c> prefix, so an OpenTelemetry exporter that listens to the meter <c>SpecDecode</c> picks them up. Every
/// record takes at most one tag, passed as a pre-created <see cref="KeyValuePair{TKey, TValue}"/>, so recording allocates
/// nothing; an instrument nobody listens to costs a branch.
/// </remarks>
internal sealed class EngineMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "SpecDecode";

    /// <summary>Instruments a step's readers pair up (EngineBench's full-batch throughput): tokens each request emitted,
    /// then the step's batch size, then its durations by <see cref="PhaseTag"/> (draft, verify and host, in that order;
    /// prefill separately).</summary>
    public const string GeneratedTokensName = "specdecode.generation_tokens", BatchSizeName = "specdecode.step.batch_size",
        StepDurationName = "specdecode.step.duration";

    /// <summary>The step durations' tag and its values.</summary>
    public const string PhaseTag = "phase", DraftPhase = "draft", VerifyPhase = "verify", HostPhase = "host", PrefillPhase = "prefill";

    private static readonly KeyValuePair<string, object?> Draft = new(PhaseTag, DraftPhase);
    private static readonly KeyValuePair<string, object?> Verify = new(PhaseTag, VerifyPhase);
    private static readonly KeyValuePair<string, object?> Host = new(PhaseTag, HostPhase);
    private static readonly KeyValuePair<string, object?> Prefill = new(PhaseTag, PrefillPhase);
    private static readonly KeyValuePair<string, object?>[] Reasons =
    [
        new("finish_reason", "length"),
        new("finish_reason", "stop"),
        new("finish_reason", "context_full"),
        new("finish_reason", "cancelled"),
        new("finish_reason", "error"),
    ];

    private readonly bool _ownsMeter;
    private readonly Action<Exception> _listenerFailed;
    private readonly Counter<long> _drafts, _draftTokens, _accepted, _acceptedPerPosition, _generated, _requests;
    private readonly Counter<long> _promptTokens, _prefixQueries, _prefixHits, _preemptions;
    private readonly Histogram<double> _stepDuration, _timeToFirstToken;
    private readonly Histogram<int> _batchSize;
    // Boxed position tags, grown (rarely) on the engine thread only.
    private KeyValuePair<string, object?>[] _positions = Positions(0, 16);

    /// <summary>Creates the instruments on a meter from <paramref name="factory"/> (which owns it), or on a meter of the
    /// engine's own (scoped to <paramref name="scope"/>, disposed with this object) when the factory is null.
    /// <paramref name="listenerFailed"/> gets what a listener throws from a measurement callback (which runs inside the
    /// record call, on the engine thread); the measurement is dropped and the engine goes on.</summary>
    public EngineMetrics(IMeterFactory? factory, object scope, Action<Exception> listenerFailed)
    {
        _listenerFailed = listenerFailed;
        var options = new MeterOptions(MeterName) { Version = Version };
        if (factory is null)
        {
            options.Scope = scope;
            Meter = new Meter(options);
            _ownsMeter = true;
        }
        else
        {
            Meter = factory.Create(options);
        }
        _drafts = Meter.CreateCounter<long>("specdecode.spec_decode.num_drafts", "{draft}",
            "Request steps with a non-empty draft (vllm:spec_decode_num_drafts).");
        _draftTokens = Meter.CreateCounter<long>("specdecode.spec_decode.num_draft_tokens", "{token}",
            "Draft tokens verified (vllm:spec_decode_num_draft_tokens).");
        _accepted = Meter.CreateCounter<long>("specdecode.spec_decode.num_accepted_tokens", "{token}",
            "Draft tokens accepted (vllm:spec_decode_num_accepted_tokens).");
        _acceptedPerPosition = Meter.CreateCounter<long>("specdecode.spec_decode.num_accepted_tokens_per_pos", "{token}",
            "Drafts whose accepted path reached depth position + 1; tag position (0-based) (vllm:spec_decode_num_accepted_tokens_per_pos).");
        _generated = Meter.CreateCounter<long>(GeneratedTokensName, "{token}",
            "Tokens emitted: accepted draft tokens plus bonus tokens, a final stop token included (vllm:generation_tokens).");
        _requests = Meter.CreateCounter<long>("specdecode.requests", "{request}",
            "Requests finished; tag finish_reason: length, stop, context_full, cancelled, error.");
        _stepDuration = Meter.CreateHistogram<double>(StepDurationName, "s",
            "Engine time per step; tag phase: draft, verify, host (the rest of the step), prefill (admitting prompts).");
        _batchSize = Meter.CreateHistogram<int>(BatchSizeName, "{request}",
            "Requests in a verification step.");
        _promptTokens = Meter.CreateCounter<long>("specdecode.prompt_tokens", "{token}",
            "Prompt tokens of admitted requests (vllm:prompt_tokens).");
        _prefixQueries = Meter.CreateCounter<long>("specdecode.prefix_cache.queries", "{token}",
            "Prompt tokens looked up in the KV prefix cache (vllm:prefix_cache_queries).");
        _prefixHits = Meter.CreateCounter<long>("specdecode.prefix_cache.hits", "{token}",
            "Prompt tokens found cached and not computed again (vllm:prefix_cache_hits).");
        _preemptions = Meter.CreateCounter<long>("specdecode.num_preemptions", "{preemption}",
            "Running requests that gave their KV blocks back because the cache was full (vllm:num_preemptions).");
        _timeToFirstToken = Meter.CreateHistogram<double>("specdecode.time_to_first_token", "s",
            "Time from submission to a request's first token (vllm:time_to_first_token_seconds).");
    }

    /// <summary>The meter the instruments live on.</summary>
    public Meter Meter { get; }

    /// <summary>The meter's version: the assembly's informational version without its source-revision suffix.</summary>
    public static string? Version { get; } = typeof(EngineMetrics).Assembly
        .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(EngineMetrics).Assembly.GetName().Version?.ToString();

    public void RecordPrefill(double seconds)
    {
        try
        {
            _stepDuration.Record(seconds, Prefill);
        }
        catch (Exception e)
        {
            _listenerFailed(e);
        }
    }

    public void RecordPrompt(long tokens, long cached) => Guarded(() =>
    {
        _promptTokens.Add(tokens);
        _prefixQueries.Add(tokens);
        _prefixHits.Add(cached);
    });

    public void RecordTimeToFirstToken(double seconds) => Guarded(() => _timeToFirstToken.Record(seconds));

    public void RecordPreemption() => Guarded(() => _preemptions.Add(1));

    /// <summary>Runs a recording; a listener that throws loses that measurement and is reported once.</summary>
    private void Guarded(Action record)
    {
        try
        {
            record();
        }
        catch (Exception e)
        {
            _listenerFailed(e);
        }
    }

    public void RecordStep(int batch, double stepSeconds, double draftSeconds, double verifySeconds)
    {
        try
        {
            _batchSize.Record(batch);
            _stepDuration.Record(draftSeconds, Draft);
            _stepDuration.Record(verifySeconds, Verify);
            _stepDuration.Record(Math.Max(0, stepSeconds - draftSeconds - verifySeconds), Host);
        }
        catch (Exception e)
        {
            _listenerFailed(e);
        }
    }

    public void RecordRequestStep(int draftTokens, int accepted, int emitted)
    {
        try
        {
            _generated.Add(emitted);
            if (draftTokens == 0)
            {
                return;
            }
            _drafts.Add(1);
            _draftTokens.Add(draftTokens);
            _accepted.Add(accepted);
            if (!_acceptedPerPosition.Enabled)
            {
                return;
            }
            if (accepted > _positions.Length)
            {
                _positions = Positions(0, Math.Max(accepted, 2 * _positions.Length));
            }
            for (int i = 0; i < accepted; i++)
            {
                _acceptedPerPosition.Add(1, _positions[i]);
            }
        }
        catch (Exception e)
        {
            _listenerFailed(e);
        }
    }

    /// <summary>A finished request: its reason, or null for a cancelled (<paramref name="failed"/> false) or failed one.</summary>
    public void RecordFinished(FinishReason? reason, bool failed)
    {
        try
        {
            _requests.Add(1, reason switch
            {
                FinishReason.Length => Reasons[0],
                FinishReason.Stop => Reasons[1],
                FinishReason.ContextFull => Reasons[2],
                _ => failed ? Reasons[4] : Reasons[3],
            });
        }
        catch (Exception e)
        {
            _listenerFailed(e);
        }
    }

    private static KeyValuePair<string, object?>[] Positions(int from, int count) =>
        Enumerable.Range(from, count).Select(i => new KeyValuePair<string, object?>("position", i)).ToArray();

    public void Dispose()
    {
        if (!_ownsMeter)
        {
            return;
        }
        try
        {
            Meter.Dispose(); // calls the listeners' MeasurementsCompleted
        }
        catch (Exception e)
        {
            _listenerFailed(e);
        }
    }
}
