namespace SpecDecode.Replay;

/// <summary>
/// Keeps every sample of a timing (as doubles, in the unit the caller chooses) for exact percentiles. Appending does
/// not allocate except when the array doubles.
/// </summary>
public sealed class SampleBuffer
{
    private double[] _items;

    /// <summary>Creates an empty buffer.</summary>
    public SampleBuffer(int capacity = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _items = new double[capacity];
    }

    /// <summary>Samples recorded.</summary>
    public int Count { get; private set; }

    /// <summary>Bytes the buffer holds on the managed heap (its array's capacity).</summary>
    public long RetainedBytes => (long)_items.Length * sizeof(double);

    /// <summary>Records one sample.</summary>
    public void Add(double value)
    {
        if (Count == _items.Length)
        {
            Array.Resize(ref _items, _items.Length * 2);
        }
        _items[Count++] = value;
    }

    /// <summary>
    /// Summarizes the samples, multiplied by <paramref name="scale"/> (e.g. ticks to µs). Sorts the samples in place
    /// (no copy): the order in which they were added is lost.
    /// </summary>
    public LatencySummary Summarize(double scale)
    {
        if (Count == 0)
        {
            return LatencySummary.None;
        }
        Span<double> sorted = _items.AsSpan(0, Count);
        sorted.Sort();
        double sum = 0;
        foreach (double v in sorted)
        {
            sum += v;
        }
        return new LatencySummary(
            Count,
            Percentile(sorted, 0.50) * scale,
            Percentile(sorted, 0.99) * scale,
            sum / Count * scale,
            sorted[^1] * scale);
    }

    /// <summary>Nearest-rank percentile of sorted samples: the smallest sample with at least <paramref name="q"/> of all at or below it.</summary>
    internal static double Percentile(ReadOnlySpan<double> sorted, double q)
    {
        int rank = (int)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
