namespace SpecDecode.Suffix;

/// <summary>
/// Online calibration of suffix drafts: the probability that the target accepts a draft token given that the tokens
/// before it were accepted, learned from the drafts' own outcomes.
/// </summary>
/// <remarks>
/// <para>Count ratios from the suffix tree are poor probabilities on their own: a continuation seen once after a
/// one-token match has ratio 1 but is rarely right, while one seen once after a 40-token match almost always is.
/// SuffixDecoding hedges with a fixed rule (draft at most <c>factor × match length</c> tokens, cut paths below
/// <c>min_token_prob</c>). This model instead keeps acceptance counts per cell of (tree the draft came from, effective
/// match length = match length + draft depth so far, count ratio of the token, support = count of the path before it)
/// and estimates each token's conditional acceptance as a smoothed cell mean. Drafts are then grown while the cumulative
/// estimate stays at or above a threshold, and compared by their expected accepted tokens.</para>
/// <para>Prior (before any outcome): <c>ratio × e / (e + 1)</c> for <c>e</c> = match length + depth, worth
/// <see cref="PriorWeight"/> outcomes. A path of count-1 tokens after an <c>m</c>-token match then has cumulative
/// prior <c>m / (m + k)</c> at depth <c>k</c>, so with threshold 0.5 it drafts about <c>m</c> tokens: the reference rule.</para>
/// <para>Thread-safe: counts are updated with interlocked increments; reads may see a count a moment old.</para>
/// </remarks>
internal sealed class AcceptanceModel
{
    // 0: the request's own tree, 1: the global tree; +RecentOffset: the continuation of one referenced occurrence.
    public const int Sources = 4;
    public const int RecentOffset = 2;
    private const int MaxMatch = 64;
    private const int DepthBuckets = 8;      // draft depth before the token: 0, 1, 2, 3, 4-5, 6-8, 9-15, 16+
    private const int RatioBuckets = 11;     // floor(10 × ratio), with ratio 1 alone in bucket 10
    private const int SupportBuckets = 7;    // 1, 2, 3, 4, 5-8, 9-16, 17+
    public const float PriorWeight = 8f;

    private readonly int[] _trials;
    private readonly int[] _accepts;
    private readonly float[] _prior;

    public AcceptanceModel()
    {
        int cells = Sources * (MaxMatch + 1) * DepthBuckets * RatioBuckets * SupportBuckets;
        _trials = new int[cells];
        _accepts = new int[cells];
        _prior = new float[cells];
        for (int cell = 0; cell < cells; cell++)
        {
            int rest = cell / SupportBuckets;
            int ratioBucket = rest % RatioBuckets;
            rest /= RatioBuckets;
            int depth = DepthFloor[rest % DepthBuckets];
            int match = rest / DepthBuckets % (MaxMatch + 1);
            float ratio = ratioBucket == 10 ? 1f : (ratioBucket + 0.5f) / 10f;
            float effective = match + depth;
            _prior[cell] = ratio * effective / (effective + 1f);
        }
    }

    /// <summary>The cell of a draft token.</summary>
    /// <param name="source">0 for the request's own tree, 1 for the global tree, 2 and 3 for their referenced-occurrence continuations.</param>
    /// <param name="match">Length of the context match the draft grew from.</param>
    /// <param name="depth">Draft tokens before this one on its path.</param>
    /// <param name="count">Occurrences of the path with this token.</param>
    /// <param name="parentCount">Occurrences of the path before it.</param>
    public static int Cell(int source, int match, int depth, int count, int parentCount)
    {
        int m = Math.Min(match, MaxMatch);
        int d = depth switch
        {
            <= 3 => depth,
            <= 5 => 4,
            <= 8 => 5,
            <= 15 => 6,
            _ => 7,
        };
        int ratioBucket = count >= parentCount ? 10 : Math.Min(9, count * 10 / parentCount);
        int support = parentCount switch
        {
            <= 4 => parentCount - 1,
            <= 8 => 4,
            <= 16 => 5,
            _ => 6,
        };
        return (((source * (MaxMatch + 1) + m) * DepthBuckets + d) * RatioBuckets + ratioBucket) * SupportBuckets + support;
    }

    private static readonly int[] DepthFloor = [0, 1, 2, 3, 4, 6, 9, 16];

    /// <summary>Estimated probability that a token of this cell is accepted, given that its parent was.</summary>
    public float Conditional(int cell)
    {
        int n = Volatile.Read(ref _trials[cell]);
        int a = Volatile.Read(ref _accepts[cell]);
        return (a + PriorWeight * _prior[cell]) / (n + PriorWeight);
    }

    /// <summary>Records the outcome of a draft token whose parent was accepted.</summary>
    public void Record(int cell, bool accepted)
    {
        Interlocked.Increment(ref _trials[cell]);
        if (accepted)
        {
            Interlocked.Increment(ref _accepts[cell]);
        }
    }

    /// <summary>Outcomes recorded so far.</summary>
    public long Observations
    {
        get
        {
            long total = 0;
            foreach (int n in _trials)
            {
                total += n;
            }
            return total;
        }
    }
}
