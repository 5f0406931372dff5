using System.Runtime.CompilerServices;

namespace SpecDecode.Suffix;

/// <summary>How a suffix tree grows a draft from a matched context.</summary>
/// <param name="MaxTokens">The budget: most draft tokens in one draft.</param>
/// <param name="Rule">SuffixDecoding's match-length rule: a match of <c>m</c> tokens may draft at most <c>Rule.Limit(m)</c>.</param>
/// <param name="MinTokenProbability">Stop growing a branch once its estimated probability falls below this.</param>
/// <param name="UseTree">False: one path following the most frequent child. True: a tree grown best-first by path probability.</param>
public readonly record struct SpeculationSettings(int MaxTokens, MatchLengthRule Rule, float MinTokenProbability, bool UseTree)
{
    /// <summary>
    /// 0 (the default): SuffixDecoding's count-based drafting with <see cref="Rule"/> and <see cref="MinTokenProbability"/>.
    /// Above 0: calibrated drafting (used by <see cref="SuffixDecodingCache"/>, which learns how often drafts are accepted):
    /// each draft token's estimated acceptance probability, given its path, must stay at or above this value, and
    /// <see cref="Rule"/> and <see cref="MinTokenProbability"/> are not used. Must be below 1.
    /// </summary>
    public float CalibratedThreshold { get; init; }

    /// <summary>Calibrated drafting only: merge the candidates of every match length and of both trees into one token
    /// tree (shared prefixes, highest estimate per node) instead of keeping the single best candidate.</summary>
    public bool MergeCandidates { get; init; }

    /// <summary>The reference configuration of SuffixDecoding: factor 1, offset 0, minimum probability 0.1, path mode.</summary>
    public static SpeculationSettings Default(int maxTokens) => new(maxTokens, new MatchLengthRule(maxTokens, 1f, 0f), 0.1f, false);

    /// <summary>Checks the settings; throws <see cref="ArgumentOutOfRangeException"/> when a value is out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(MaxTokens, nameof(MaxTokens));
        if (!(MinTokenProbability >= 0f && MinTokenProbability <= 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(MinTokenProbability), MinTokenProbability, "Must lie in [0, 1].");
        }
        if (!(CalibratedThreshold >= 0f && CalibratedThreshold < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(CalibratedThreshold), CalibratedThreshold,
                "Must lie in [0, 1): 0 for count-based drafting, above 0 for the calibrated threshold.");
        }
    }
}

/// <summary>A draft under construction; two of them (best, current) are swapped while trying match lengths.</summary>
internal struct DraftBuffer
{
    public int[] Tokens;
    public int[] Parents;
    public float[] Probs;
    public int[] Cells;      // acceptance-model cell per node (calibrated drafting only)
    public int Count;
    public float Score;
    public int MatchLength;

    public void Reset(int capacity)
    {
        if (Tokens is null || Tokens.Length < capacity)
        {
            int size = Math.Max(capacity, 8);
            Tokens = new int[size];
            Parents = new int[size];
            Probs = new float[size];
            Cells = new int[size];
        }
        Count = 0;
        Score = 0f;
        MatchLength = 0;
    }

    public void Add(int token, int parent, float prob)
    {
        Tokens[Count] = token;
        Parents[Count] = parent;
        Probs[Count] = prob;
        Count++;
        Score += prob;
    }

    public void Add(int token, int parent, float prob, int cell)
    {
        Cells[Count] = cell;
        Add(token, parent, prob);
    }

    public readonly DraftTree ToDraftTree() =>
        Count == 0
            ? DraftTree.Empty
            : DraftTree.Create(Tokens.AsSpan(0, Count), Parents.AsSpan(0, Count), Probs.AsSpan(0, Count), int.MaxValue, MatchLength);
}

public sealed partial class SuffixTree
{
    [ThreadStatic] private static PriorityQueue<(int Node, int Idx, int Parent, float Prob), float>? t_queue;

    /// <summary>Fills <paramref name="best"/> with the best draft for the context; <paramref name="scratch"/> is working space.</summary>
    /// <returns>True when <paramref name="best"/> was replaced (a match of any length was found).</returns>
    internal bool SpeculateInto(ReadOnlySpan<int> context, in SpeculationSettings settings, ref DraftBuffer best, ref DraftBuffer scratch)
    {
        settings.Validate();
        int budget = settings.MaxTokens;
        best.Reset(budget);
        bool found = false;
        int maxMatch = Math.Min(context.Length, _maxDepth);
        for (int m = 1; m <= maxMatch; m++)
        {
            if (!Match(context[^m..], out int node, out int idx))
            {
                break;
            }
            int limit = Math.Min(budget, settings.Rule.Limit(m));
            scratch.Reset(budget);
            scratch.MatchLength = m;
            if (limit > 0)
            {
                if (settings.UseTree)
                {
                    DraftTreeFrom(node, idx, limit, settings.MinTokenProbability, ref scratch);
                }
                else
                {
                    DraftPathFrom(node, idx, limit, settings.MinTokenProbability, ref scratch);
                }
            }
            if (!found || scratch.Score >= best.Score)
            {
                (best, scratch) = (scratch, best);
                found = true;
            }
        }
        return found;
    }

    /// <summary>Walks the pattern from the root; on success gives the node and how many of its label tokens were consumed.</summary>
    private bool Match(ReadOnlySpan<int> pattern, out int node, out int idx)
    {
        // Locals rather than the out parameters in the loop: they stay in registers.
        int n = Root, i = 0;
        ref Node cn = ref _nodes[Root];
        int length = 0;    // label length of the current node (the root's is 0)
        int[]? data = null;
        int baseIdx = 0;
        bool matched = true;
        foreach (int token in pattern)
        {
            if (i == length)
            {
                cn = ref FindChildNode(n, ref cn, token, out n);
                if (Unsafe.IsNullRef(ref cn))
                {
                    matched = false;
                    break;
                }
                i = 0;
                length = cn.Length;
                data = _seqs[cn.RefSeq]!.Tokens;
                baseIdx = cn.RefIdx;
            }
            if (data![baseIdx + i] != token)
            {
                matched = false;
                break;
            }
            i++;
        }
        node = n;
        idx = i;
        return matched;
    }

    /// <summary>Path mode: follow the most frequent child while the path probability stays at or above the cut.</summary>
    private void DraftPathFrom(int node, int idx, int limit, float minProb, ref DraftBuffer draft)
    {
        float prob = 1f;
        ref Node n = ref _nodes[node];
        int[] data = _seqs[n.RefSeq]!.Tokens;
        int baseIdx = n.RefIdx, length = n.Length, count = n.Count, head = n.HeadChild;
        while (draft.Count < limit && prob >= minProb)
        {
            if (idx < length)
            {
                draft.Add(data[baseIdx + idx], draft.Count - 1, prob);
                idx++;
            }
            else
            {
                if (head == Nil)
                {
                    break;
                }
                n = ref _nodes[head];
                prob *= (float)n.Count / count;
                idx = 0;
                data = _seqs[n.RefSeq]!.Tokens;
                baseIdx = n.RefIdx;
                length = n.Length;
                count = n.Count;
                head = n.HeadChild;
            }
        }
    }

    /// <summary>Tree mode: grow best-first by path probability; children are visited in decreasing count, so the scan of
    /// a node's children stops at the first one below the cut.</summary>
    private void DraftTreeFrom(int node, int idx, int limit, float minProb, ref DraftBuffer draft)
    {
        var queue = t_queue ??= new PriorityQueue<(int, int, int, float), float>();
        queue.Clear();
        queue.Enqueue((node, idx, -1, 1f), -1f);
        while (draft.Count < limit && queue.TryDequeue(out var item, out _))
        {
            (int n, int i, int parent, float prob) = item;
            ref Node nn = ref _nodes[n];
            if (i < nn.Length)
            {
                draft.Add(TokenAt(nn.RefSeq, nn.RefIdx + i), parent, prob);
                queue.Enqueue((n, i + 1, draft.Count - 1, prob), -prob);
            }
            else
            {
                float parentCount = nn.Count;
                for (int c = nn.HeadChild; c != Nil;)
                {
                    ref Node cn = ref _nodes[c];
                    float p = prob * cn.Count / parentCount;
                    if (p < minProb)
                    {
                        break;
                    }
                    queue.Enqueue((c, 0, parent, p), -p);
                    c = cn.NextSibling;
                }
            }
        }
        queue.Clear();
    }
}

public sealed partial class SuffixTree
{
    /// <summary>Occurrences of <paramref name="pattern"/> (at most <see cref="MaxDepth"/> tokens) in the stored sequences; for tests.</summary>
    internal int CountOf(ReadOnlySpan<int> pattern)
    {
        if (pattern.Length > _maxDepth)
        {
            return 0;
        }
        if (!Match(pattern, out int node, out _))
        {
            return 0;
        }
        return _nodes[node].Count;
    }

    /// <summary>The draft grown from a match of exactly <paramref name="matchLength"/> trailing context tokens; for tests.</summary>
    internal DraftTree DraftForMatch(ReadOnlySpan<int> context, int matchLength, in SpeculationSettings settings)
    {
        var draft = new DraftBuffer();
        draft.Reset(settings.MaxTokens);
        draft.MatchLength = matchLength;
        if (!Match(context[^matchLength..], out int node, out int idx))
        {
            return DraftTree.Empty;
        }
        int limit = Math.Min(settings.MaxTokens, settings.Rule.Limit(matchLength));
        if (limit > 0)
        {
            if (settings.UseTree)
            {
                DraftTreeFrom(node, idx, limit, settings.MinTokenProbability, ref draft);
            }
            else
            {
                DraftPathFrom(node, idx, limit, settings.MinTokenProbability, ref draft);
            }
        }
        return draft.ToDraftTree();
    }
}
