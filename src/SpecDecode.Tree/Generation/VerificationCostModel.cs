using System.Diagnostics;

namespace SpecDecode.Tree;

/// <summary>
/// The target's verification time as a function of batch size and tree tokens, measured on the model at start-up and
/// refined online from the engine's own steps: what adaptive speculation weighs expected accepted tokens against.
/// </summary>
/// <remarks>
/// The table holds the median time of one verification step for batch sizes 1, 2, 4, .. and per-sequence widths (root
/// plus draft tokens) 1, 2, 4, .., 64 at one context length. A prediction interpolates linearly in the mean width and in
/// the batch size, then applies a per-batch-size correction factor: the moving average of measured over predicted time
/// of the engine's recent steps, which absorbs what the table does not model (longer contexts, a busier device).
/// </remarks>
public sealed class VerificationCostModel
{
    private readonly int[] _batches;
    private readonly int[] _widths;
    private readonly double[,] _seconds;
    private readonly double[] _correction;
    private readonly Lock _gate = new();

    /// <summary>Creates a model from a measured table: <paramref name="seconds"/>[i, j] is the step time for
    /// <paramref name="batches"/>[i] sequences of <paramref name="widths"/>[j] tokens each.</summary>
    /// <exception cref="ArgumentException">The axes are empty or not strictly increasing from 1, or a time is not positive.</exception>
    public VerificationCostModel(IReadOnlyList<int> batches, IReadOnlyList<int> widths, double[,] seconds)
    {
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(widths);
        ArgumentNullException.ThrowIfNull(seconds);
        CheckAxis(batches, nameof(batches));
        CheckAxis(widths, nameof(widths));
        if (seconds.GetLength(0) != batches.Count || seconds.GetLength(1) != widths.Count)
        {
            throw new ArgumentException($"seconds must be [{batches.Count}, {widths.Count}] (batches × widths).", nameof(seconds));
        }
        foreach (double s in seconds)
        {
            if (!(s > 0) || !double.IsFinite(s))
            {
                throw new ArgumentException("Every time must be a positive finite number of seconds.", nameof(seconds));
            }
        }
        _batches = [.. batches];
        _widths = [.. widths];
        _seconds = (double[,])seconds.Clone();
        _correction = Enumerable.Repeat(1.0, _batches.Length).ToArray();
    }

    /// <summary>The batch sizes measured.</summary>
    public IReadOnlyList<int> Batches => _batches;

    /// <summary>The per-sequence widths (root + draft tokens) measured.</summary>
    public IReadOnlyList<int> Widths => _widths;

    /// <summary>The measured time in seconds for batch index <paramref name="i"/> and width index <paramref name="j"/>.</summary>
    public double Measured(int i, int j) => _seconds[i, j];

    /// <summary>Predicted seconds of one verification step of <paramref name="batch"/> sequences with
    /// <paramref name="totalTokens"/> tree tokens in all (roots included).</summary>
    public double Predict(int batch, int totalTokens)
    {
        double table = TablePredict(batch, totalTokens);
        lock (_gate)
        {
            return table * _correction[Nearest(Math.Max(1, batch))];
        }
    }

    private double TablePredict(int batch, int totalTokens)
    {
        batch = Math.Max(1, batch);
        double width = Math.Max(1.0, (double)totalTokens / batch);
        (int lo, int hi, double f) = Bracket(_batches, batch);
        double atLo = AtWidth(lo, width), atHi = AtWidth(hi, width);
        return atLo + (atHi - atLo) * f;
    }

    /// <summary>Records a measured step, refining the prediction for its batch size.</summary>
    public void Observe(int batch, int totalTokens, double seconds)
    {
        if (!(seconds > 0) || !double.IsFinite(seconds))
        {
            return;
        }
        int k = Nearest(Math.Max(1, batch));
        double predicted = TablePredict(batch, totalTokens);
        lock (_gate)
        {
            double ratio = Math.Clamp(seconds / predicted, 0.25, 4.0);
            _correction[k] = 0.9 * _correction[k] + 0.1 * ratio;
        }
    }

    /// <summary>
    /// Measures the table on <paramref name="model"/>: every slot's cache is filled with <paramref name="context"/> random
    /// positions, each (batch, width) is run once to warm up and <paramref name="repeats"/> times for the median, and the
    /// caches are emptied again. Call before the model serves anything.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The context leaves no room for the widest tree.</exception>
    public static VerificationCostModel Measure(TargetModel model, int context, int maxWidth = 64, int repeats = 3)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        // Every slot holds the context and the widest tree at once: in a KV pool smaller than that, measure at the
        // context that fits (the cost's dependence on the context is small next to batch and width).
        long perSlot = model.KvCache.Blocks / model.MaxBatch * (long)model.KvCache.BlockSize;
        context = (int)Math.Max(0, Math.Min(context, perSlot - maxWidth));
        var batches = new List<int>();
        for (int b = 1; b < model.MaxBatch; b *= 2)
        {
            batches.Add(b);
        }
        batches.Add(model.MaxBatch);
        var widths = new List<int>();
        for (int w = 1; w <= maxWidth && context + w <= model.Capacity; w *= 2)
        {
            widths.Add(w);
        }
        if (widths.Count == 0 || context < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(context), context, $"The context must leave room for at least one token in a cache of {model.Capacity}.");
        }
        if (widths.Count == 1)
        {
            widths.Add(2); // a second point for the interpolation, if the cache allows it
            if (context + 2 > model.Capacity)
            {
                widths.RemoveAt(1);
            }
        }
        var seconds = new double[batches.Count, widths.Count];
        var random = new Random(1234);
        var times = new double[repeats];
        model.FillCacheForBenchmark(context);
        try
        {
            // First use of each kernel is slow: warm up before the first timed point.
            for (int w = 0; w < 3; w++)
            {
                model.VerifyGreedy([new TreeInput(0, 0, DraftTree.Empty)]);
                model.Truncate(0, context);
            }
            for (int i = 0; i < batches.Count; i++)
            {
                for (int j = 0; j < widths.Count; j++)
                {
                    TreeInput[] inputs = Enumerable.Range(0, batches[i])
                        .Select(slot => new TreeInput(slot, random.Next(model.Config.VocabSize),
                            DraftTree.Chain(Enumerable.Range(0, widths[j] - 1).Select(_ => random.Next(model.Config.VocabSize)).ToArray())))
                        .ToArray();
                    for (int r = -1; r < repeats; r++)
                    {
                        long start = Stopwatch.GetTimestamp();
                        model.VerifyGreedy(inputs);
                        double elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
                        if (r >= 0)
                        {
                            times[r] = elapsed;
                        }
                        foreach (TreeInput input in inputs)
                        {
                            model.Truncate(input.Slot, context);
                        }
                    }
                    Array.Sort(times);
                    seconds[i, j] = Math.Max(times[repeats / 2], 1e-9);
                }
            }
        }
        finally
        {
            for (int slot = 0; slot < model.MaxBatch; slot++)
            {
                model.Truncate(slot, 0);
            }
        }
        return new VerificationCostModel(batches, widths, seconds);
    }

    private double AtWidth(int batchIndex, double width)
    {
        (int lo, int hi, double f) = Bracket(_widths, width);
        double a = _seconds[batchIndex, lo], b = _seconds[batchIndex, hi];
        if (hi == lo && width > _widths[hi] && _widths.Length > 1)
        {
            // Past the widest measurement: extrapolate with the last segment's slope (never below flat).
            int p = _widths.Length - 2;
            double slope = Math.Max(0, (_seconds[batchIndex, hi] - _seconds[batchIndex, p]) / (_widths[hi] - _widths[p]));
            return b + slope * (width - _widths[hi]);
        }
        return a + (b - a) * f;
    }

    private static (int Lo, int Hi, double Fraction) Bracket(int[] axis, double x)
    {
        if (x <= axis[0])
        {
            return (0, 0, 0);
        }
        for (int i = 1; i < axis.Length; i++)
        {
            if (x <= axis[i])
            {
                return (i - 1, i, (x - axis[i - 1]) / (axis[i] - axis[i - 1]));
            }
        }
        return (axis.Length - 1, axis.Length - 1, 0);
    }

    private int Nearest(int batch)
    {
        int best = 0;
        for (int i = 1; i < _batches.Length; i++)
        {
            if (Math.Abs(_batches[i] - batch) < Math.Abs(_batches[best] - batch))
            {
                best = i;
            }
        }
        return best;
    }

    private static void CheckAxis(IReadOnlyList<int> axis, string name)
    {
        if (axis.Count == 0 || axis[0] < 1)
        {
            throw new ArgumentException("An axis needs at least one value, all >= 1.", name);
        }
        for (int i = 1; i < axis.Count; i++)
        {
            if (axis[i] <= axis[i - 1])
            {
                throw new ArgumentException("An axis must be strictly increasing.", name);
            }
        }
    }
}
