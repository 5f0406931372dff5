using System.Diagnostics;

namespace SpecDecode.Tree;

/// <summary>The engine's counters, written by the engine thread and read by anyone; each update is also recorded on the
/// engine's <see cref="EngineMetrics"/>.</summary>
internal sealed class EngineCounters(EngineMetrics metrics)
{
    private readonly Lock _gate = new();
    private long _completed, _batches, _requestSteps, _drafts, _draftTokens, _accepted, _emitted, _promptTokens, _cachedPromptTokens;
    private long _firstTokenTicks;
    private int _preemptions;
    private long _stepTicks, _draftTicks, _verifyTicks, _prefillTicks;
    private long[] _acceptedPerPosition = new long[8];

    /// <summary>A finished request: its reason, or null for a cancelled (<paramref name="failed"/> false) or failed one.</summary>
    public void AddCompleted(FinishReason? reason, bool failed = false)
    {
        lock (_gate)
        {
            _completed++;
        }
        metrics.RecordFinished(reason, failed);
    }

    /// <summary>A prefill forward.</summary>
    public void AddPrefill(long ticks)
    {
        lock (_gate)
        {
            _prefillTicks += ticks;
        }
        metrics.RecordPrefill(Seconds(ticks));
    }

    /// <summary>A request admitted for the first time: its prompt tokens and how many of them were cached already.</summary>
    public void AddAdmitted(long promptTokens, long cachedTokens)
    {
        lock (_gate)
        {
            _promptTokens += promptTokens;
            _cachedPromptTokens += cachedTokens;
        }
        metrics.RecordPrompt(promptTokens, cachedTokens);
    }

    /// <summary>A request's first token, <paramref name="ticks"/> after its submission.</summary>
    public void AddFirstToken(long ticks)
    {
        lock (_gate)
        {
            _firstTokenTicks += ticks;
        }
        metrics.RecordTimeToFirstToken(Seconds(ticks));
    }

    /// <summary>A running request gave its blocks back because the KV cache was full.</summary>
    public void AddPreemption()
    {
        lock (_gate)
        {
            _preemptions++;
        }
        metrics.RecordPreemption();
    }

    public void AddStep(int batch, long stepTicks, long draftTicks, long verifyTicks)
    {
        lock (_gate)
        {
            _batches++;
            _stepTicks += stepTicks;
            _draftTicks += draftTicks;
            _verifyTicks += verifyTicks;
        }
        metrics.RecordStep(batch, Seconds(stepTicks), Seconds(draftTicks), Seconds(verifyTicks));
    }

    public void AddRequestStep(int draftTokens, int accepted, int emitted)
    {
        lock (_gate)
        {
            _requestSteps++;
            _emitted += emitted;
            if (draftTokens > 0)
            {
                _drafts++;
                _draftTokens += draftTokens;
                _accepted += accepted;
                if (accepted > _acceptedPerPosition.Length)
                {
                    Array.Resize(ref _acceptedPerPosition, Math.Max(accepted, 2 * _acceptedPerPosition.Length));
                }
                for (int i = 0; i < accepted; i++)
                {
                    _acceptedPerPosition[i]++;
                }
            }
        }
        metrics.RecordRequestStep(draftTokens, accepted, emitted);
    }

    public EngineStatistics Snapshot(int active, int waiting)
    {
        lock (_gate)
        {
            int positions = Array.FindLastIndex(_acceptedPerPosition, c => c != 0) + 1;
            // Prompt tokens saturate at int.MaxValue (GenerationStatistics counts one request's prompt in an int).
            var totals = new GenerationStatistics((int)Math.Min(_promptTokens, int.MaxValue), _emitted, _requestSteps, _drafts, _draftTokens, _accepted,
                _acceptedPerPosition[..positions], Ticks(_draftTicks), Ticks(_verifyTicks), Ticks(_prefillTicks), TimeSpan.Zero,
                Ticks(_stepTicks + _prefillTicks))
            {
                CachedPromptTokens = _cachedPromptTokens,
                TimeToFirstToken = Ticks(_firstTokenTicks),
                Preemptions = _preemptions,
            };
            return new EngineStatistics(_completed, active, waiting, _batches, totals, Ticks(_stepTicks - _draftTicks - _verifyTicks));
        }
    }

    private static TimeSpan Ticks(long ticks) => Stopwatch.GetElapsedTime(0, ticks);

    private static double Seconds(long ticks) => (double)ticks / Stopwatch.Frequency;
}
