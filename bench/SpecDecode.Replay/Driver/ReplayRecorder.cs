using System.Diagnostics;

namespace SpecDecode.Replay;

/// <summary>
/// Accumulates what the replay measures: the <see cref="SpeculationMetrics"/> counters plus every timing sample and the
/// number of drafts that reached each depth. Appends only; allocates only when a sample array doubles.
/// </summary>
internal sealed class ReplayRecorder
{
    private static readonly double TicksToMicroseconds = 1e6 / Stopwatch.Frequency;
    private readonly SampleBuffer _draftTicks = new(1 << 16);
    private readonly SampleBuffer _observeTicksPerToken = new(1 << 16);
    private readonly SampleBuffer _startTicks = new(1 << 10);
    private readonly SampleBuffer _endTicks = new(1 << 10);
    private long[] _draftedPerDepth;

    public ReplayRecorder(int budget)
    {
        _draftedPerDepth = new long[Math.Max(budget, 1)];
    }

    public SpeculationMetrics Metrics { get; } = new();

    public long Calls { get; private set; }

    public long PromptTokens { get; private set; }

    public long ResponseTokens { get; private set; }

    public long DraftingTicks { get; private set; }

    public long ObserveTicks { get; private set; }

    public void RecordStart(int promptLength, int responseLength, long ticks)
    {
        Calls++;
        PromptTokens += promptLength;
        ResponseTokens += responseLength;
        _startTicks.Add(ticks);
    }

    public void RecordEnd(long ticks) => _endTicks.Add(ticks);

    public void RecordStep(DraftTree draft, int accepted, int emitted, long draftTicks, long observeTicks)
    {
        Metrics.RecordStep(draft.Count, accepted, emitted, TimeSpan.FromTicks(draftTicks * TimeSpan.TicksPerSecond / Stopwatch.Frequency));
        _draftTicks.Add(draftTicks);
        _observeTicksPerToken.Add((double)observeTicks / emitted);
        DraftingTicks += draftTicks;
        ObserveTicks += observeTicks;
        int depth = draft.MaxDepth;
        if (depth > _draftedPerDepth.Length)
        {
            Array.Resize(ref _draftedPerDepth, Math.Max(depth, _draftedPerDepth.Length * 2));
        }
        for (int i = 0; i < depth; i++)
        {
            _draftedPerDepth[i]++;
        }
    }

    /// <summary>Bytes of the sample arrays, so that the heap growth of a replay can leave the recorder out.</summary>
    public long RetainedBytes =>
        _draftTicks.RetainedBytes + _observeTicksPerToken.RetainedBytes + _startTicks.RetainedBytes + _endTicks.RetainedBytes
        + (long)_draftedPerDepth.Length * sizeof(long);

    public LatencySummary DraftingMicroseconds => _draftTicks.Summarize(TicksToMicroseconds);

    public LatencySummary CacheUpdateMicrosecondsPerToken => _observeTicksPerToken.Summarize(TicksToMicroseconds);

    public LatencySummary RequestStartMilliseconds => _startTicks.Summarize(TicksToMicroseconds / 1000);

    public LatencySummary EndRequestMicroseconds => _endTicks.Summarize(TicksToMicroseconds);

    /// <summary>Element i: steps whose draft had a node at depth i + 1.</summary>
    public long[] DraftedPerDepth()
    {
        int n = _draftedPerDepth.Length;
        while (n > 0 && _draftedPerDepth[n - 1] == 0)
        {
            n--;
        }
        return _draftedPerDepth.AsSpan(0, n).ToArray();
    }

    public static double Seconds(long stopwatchTicks) => (double)stopwatchTicks / Stopwatch.Frequency;
}
