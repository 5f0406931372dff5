namespace SpecDecode.Suffix.Tests;

/// <summary>
/// Brute-force reference for <see cref="SuffixTree"/>: stores the sequences and counts substring occurrences by scanning
/// them. Slow and obviously right.
/// </summary>
internal sealed class NaiveSuffixIndex(int maxDepth)
{
    public readonly Dictionary<int, List<int>> Sequences = new();

    public int MaxDepth { get; } = maxDepth;

    public void Append(int id, int token)
    {
        if (!Sequences.TryGetValue(id, out var list))
        {
            Sequences[id] = list = new List<int>();
        }
        list.Add(token);
    }

    public bool Remove(int id) => Sequences.Remove(id);

    /// <summary>Occurrences of the pattern (at most MaxDepth long) over all sequences.</summary>
    public int Count(ReadOnlySpan<int> pattern)
    {
        if (pattern.Length == 0 || pattern.Length > MaxDepth)
        {
            return pattern.Length == 0 ? Sequences.Values.Sum(s => s.Count) : 0;
        }
        int total = 0;
        foreach (var seq in Sequences.Values)
        {
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq);
            for (int p = 0; p + pattern.Length <= span.Length; p++)
            {
                if (span.Slice(p, pattern.Length).SequenceEqual(pattern))
                {
                    total++;
                }
            }
        }
        return total;
    }

    /// <summary>Counts of every one-token extension of the pattern that stays within MaxDepth.</summary>
    public Dictionary<int, int> Children(ReadOnlySpan<int> pattern)
    {
        var result = new Dictionary<int, int>();
        if (pattern.Length + 1 > MaxDepth)
        {
            return result;
        }
        foreach (var seq in Sequences.Values)
        {
            var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq);
            for (int p = 0; p + pattern.Length < span.Length; p++)
            {
                if (span.Slice(p, pattern.Length).SequenceEqual(pattern))
                {
                    int t = span[p + pattern.Length];
                    result[t] = result.GetValueOrDefault(t) + 1;
                }
            }
        }
        return result;
    }

    /// <summary>Longest m (at most MaxDepth and the context length) such that the last m context tokens occur.</summary>
    public int LongestMatch(ReadOnlySpan<int> context)
    {
        int best = 0;
        for (int m = 1; m <= Math.Min(context.Length, MaxDepth); m++)
        {
            if (Count(context[^m..]) == 0)
            {
                break;
            }
            best = m;
        }
        return best;
    }

    /// <summary>The probability the suffix tree gives a one-token extension: unchanged inside a node (equal counts),
    /// else multiplied by the count ratio, with the same float operations as the tree.</summary>
    public static float Extend(float prob, int childCount, int parentCount, bool treeMode)
    {
        if (childCount == parentCount)
        {
            return prob;
        }
        return treeMode ? prob * childCount / (float)parentCount : prob * ((float)childCount / parentCount);
    }
}
