using System.Diagnostics;

namespace SpecDecode.Tree;

/// <summary>The engine's counters, written by the engine thread and read by anyone.</summary>
internal sealed class EngineCounters
{
    private readonly Lock _gate = new();
    private long _completed, _batches, _requestSteps, _drafts, _draftTokens, _accepted, _emitted;
    private long _stepTicks, _draftTicks, _verifyTicks, _prefillTicks;
    private long[] _acceptedPerPosition = new long[8];

    public void AddCompleted()
    {
        lock (_gate)
        {
            _completed++;
        }
    }

    public void AddPrefill(long ticks)
    {
        lock (_gate)
        {
            _prefillTicks += ticks;
        }
    }

    public void AddStep(long stepTicks, long draftTicks, long verifyTicks)
    {
        lock (_gate)
        {
            _batches++;
            _stepTicks += stepTicks;
            _draftTicks += draftTicks;
            _verifyTicks += verifyTicks;
        }
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
    }

    public EngineStatistics Snapshot(int active, int waiting)
    {
        lock (_gate)
        {
            int positions = Array.FindLastIndex(_acceptedPerPosition, c => c != 0) + 1;
            var totals = new GenerationStatistics(0, _emitted, _requestSteps, _drafts, _draftTokens, _accepted,
                _acceptedPerPosition[..positions], Ticks(_draftTicks), Ticks(_verifyTicks), Ticks(_prefillTicks), TimeSpan.Zero,
                Ticks(_stepTicks + _prefillTicks));
            return new EngineStatistics(_completed, active, waiting, _batches, totals, Ticks(_stepTicks - _draftTicks - _verifyTicks));
        }
    }

    private static TimeSpan Ticks(long ticks) => Stopwatch.GetElapsedTime(0, ticks);
}
