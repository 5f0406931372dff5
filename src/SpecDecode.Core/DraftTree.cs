using System.Diagnostics;

namespace SpecDecode;

/// <summary>
/// A tree of candidate next tokens proposed by a drafter, stored as flat arrays with parents before children.
/// </summary>
/// <remarks>
/// <para>Node <c>i</c> carries a token id <see cref="Tokens"/>[i], the index of its parent node
/// <see cref="Parents"/>[i] (<c>-1</c> for a child of the last context token, i.e. a root-level candidate) and the
/// drafter's estimate <see cref="Probabilities"/>[i] that the target will accept the node (the probability of the whole
/// root-to-node path). A parent always precedes its children, so one pass in index order visits every node after its
/// ancestors; siblings carry distinct tokens. A linear draft is a chain: node <c>i</c>'s parent is <c>i - 1</c>.</para>
/// <para>This is the candidate layout of SpecInfer (Miao et al., 2023, "SpecInfer: Accelerating Generative LLM Serving
/// with Tree-based Speculative Inference") and of the drafts of SuffixDecoding (Oliaro et al., 2024).</para>
/// <para>Instances are immutable and safe to share between threads.</para>
/// </remarks>
[DebuggerDisplay("DraftTree {Count} nodes, depth {MaxDepth}, score {Score}")]
public sealed class DraftTree
{
    private readonly int[] _tokens;
    private readonly int[] _parents;
    private readonly float[] _probabilities;
    private readonly int[] _depths;
    // Children in compressed sparse row form: children of node p are _childIndex[_childStart[p + 1] .. _childStart[p + 2]),
    // children of the root (-1) at _childIndex[_childStart[0] .. _childStart[1]).
    private readonly int[] _childStart;
    private readonly int[] _childIndex;

    /// <summary>The tree with no nodes: "no draft this step".</summary>
    public static DraftTree Empty { get; } = new([], [], [], [], [0, 0], [], 0, 0, true);

    private DraftTree(int[] tokens, int[] parents, float[] probabilities, int[] depths, int[] childStart, int[] childIndex,
        int maxDepth, int matchLength, bool isChain)
    {
        _tokens = tokens;
        _parents = parents;
        _probabilities = probabilities;
        _depths = depths;
        _childStart = childStart;
        _childIndex = childIndex;
        MaxDepth = maxDepth;
        MatchLength = matchLength;
        IsChain = isChain;
        float score = 0;
        foreach (float p in probabilities)
        {
            score += p;
        }
        Score = score;
    }

    /// <summary>Number of draft nodes (draft tokens).</summary>
    public int Count => _tokens.Length;

    /// <summary>True when the tree has no nodes.</summary>
    public bool IsEmpty => _tokens.Length == 0;

    /// <summary>Token id of each node.</summary>
    public ReadOnlySpan<int> Tokens => _tokens;

    /// <summary>Parent index of each node; <c>-1</c> for children of the last context token.</summary>
    public ReadOnlySpan<int> Parents => _parents;

    /// <summary>The drafter's estimate, per node, that the target accepts the path from the root to that node.</summary>
    public ReadOnlySpan<float> Probabilities => _probabilities;

    /// <summary>Depth of each node: 1 for root-level candidates, parent's depth + 1 otherwise.</summary>
    public ReadOnlySpan<int> Depths => _depths;

    /// <summary>The expected number of accepted tokens under the drafter's estimates: the sum of <see cref="Probabilities"/>.</summary>
    public float Score { get; }

    /// <summary>Depth of the deepest node (0 for the empty tree).</summary>
    public int MaxDepth { get; }

    /// <summary>True when every node has at most one child and only one root-level node exists (a linear draft).</summary>
    public bool IsChain { get; }

    /// <summary>
    /// For drafters that match the context (suffix tree, prompt lookup): how many trailing context tokens the draft was
    /// grown from; 0 where not applicable.
    /// </summary>
    public int MatchLength { get; }

    /// <summary>Creates a validated tree from flat arrays (copied).</summary>
    /// <param name="tokens">Token id per node; each must be non-negative.</param>
    /// <param name="parents">Parent index per node: <c>-1</c> or an index smaller than the node's own.</param>
    /// <param name="probabilities">Per-node acceptance estimate in [0, 1]; empty means 1 for every node.</param>
    /// <param name="maxTokens">The budget the tree must fit; <c>int.MaxValue</c> for none.</param>
    /// <param name="matchLength">Recorded as <see cref="MatchLength"/>; must be non-negative.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTokens"/> or <paramref name="matchLength"/> is negative.</exception>
    /// <exception cref="InvalidDraftTreeException">The arrays are empty, of different lengths, a parent is out of range or
    /// after its child, a token is negative, two siblings share a token, a probability is outside [0, 1], or the tree has
    /// more than <paramref name="maxTokens"/> nodes.</exception>
    public static DraftTree Create(ReadOnlySpan<int> tokens, ReadOnlySpan<int> parents, ReadOnlySpan<float> probabilities,
        int maxTokens = int.MaxValue, int matchLength = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(matchLength);
        int n = tokens.Length;
        if (n == 0)
        {
            throw new InvalidDraftTreeException("A draft tree needs at least one node; use DraftTree.Empty for \"no draft\".");
        }
        if (parents.Length != n)
        {
            throw new InvalidDraftTreeException($"parents has {parents.Length} entries but tokens has {n}: give one parent per node.");
        }
        if (!probabilities.IsEmpty && probabilities.Length != n)
        {
            throw new InvalidDraftTreeException(
                $"probabilities has {probabilities.Length} entries but tokens has {n}: give one per node, or none for all 1.");
        }
        if (n > maxTokens)
        {
            throw new InvalidDraftTreeException($"The draft has {n} nodes, over the budget of {maxTokens}: cut it to the budget.");
        }

        var depths = new int[n];
        var childCount = new int[n + 1];
        int maxDepth = 0;
        bool isChain = true;
        for (int i = 0; i < n; i++)
        {
            if (tokens[i] < 0)
            {
                throw new InvalidDraftTreeException($"Node {i} has the negative token id {tokens[i]}: token ids are >= 0.");
            }
            int p = parents[i];
            if (p < -1 || p >= n)
            {
                throw new InvalidDraftTreeException($"Node {i} has parent {p}, out of range: use -1 or a node index below {n}.");
            }
            if (p >= i)
            {
                throw new InvalidDraftTreeException(
                    $"Node {i} has parent {p}, which does not precede it: order nodes so that parents come before children.");
            }
            if (!probabilities.IsEmpty)
            {
                float q = probabilities[i];
                if (!(q >= 0f && q <= 1f))
                {
                    throw new InvalidDraftTreeException($"Node {i} has probability {q}: probabilities must lie in [0, 1].");
                }
            }
            depths[i] = p < 0 ? 1 : depths[p] + 1;
            maxDepth = Math.Max(maxDepth, depths[i]);
            childCount[p + 1]++;
            if (p != i - 1)
            {
                isChain = false;
            }
        }

        var childStart = new int[n + 2];
        for (int i = 0; i <= n; i++)
        {
            childStart[i + 1] = childStart[i] + childCount[i];
        }
        var fill = new int[n + 1];
        var childIndex = new int[n];
        for (int i = 0; i < n; i++)
        {
            int slot = parents[i] + 1;
            childIndex[childStart[slot] + fill[slot]++] = i;
        }
        // Siblings must carry distinct tokens, otherwise two nodes stand for the same continuation.
        for (int slot = 0; slot <= n; slot++)
        {
            int from = childStart[slot], to = childStart[slot + 1];
            if (to - from < 2)
            {
                continue;
            }
            if (to - from <= 16)
            {
                for (int a = from; a < to; a++)
                {
                    for (int b = a + 1; b < to; b++)
                    {
                        if (tokens[childIndex[a]] == tokens[childIndex[b]])
                        {
                            throw DuplicateSibling(childIndex[a], childIndex[b], tokens[childIndex[a]]);
                        }
                    }
                }
            }
            else
            {
                var seen = new Dictionary<int, int>(to - from);
                for (int a = from; a < to; a++)
                {
                    if (!seen.TryAdd(tokens[childIndex[a]], childIndex[a]))
                    {
                        throw DuplicateSibling(seen[tokens[childIndex[a]]], childIndex[a], tokens[childIndex[a]]);
                    }
                }
            }
        }

        float[] probs = probabilities.IsEmpty ? Enumerable.Repeat(1f, n).ToArray() : probabilities.ToArray();
        return new DraftTree(tokens.ToArray(), parents.ToArray(), probs, depths, childStart, childIndex, maxDepth, matchLength,
            isChain);
    }

    /// <summary>Creates a linear draft: node <c>i</c> is the parent of node <c>i + 1</c>.</summary>
    /// <param name="tokens">The draft tokens in order; empty gives <see cref="Empty"/>.</param>
    /// <param name="probabilities">Per-node path probability, or empty for all 1.</param>
    /// <param name="matchLength">Recorded as <see cref="MatchLength"/>; must be non-negative.</param>
    /// <exception cref="InvalidDraftTreeException">A token is negative, a probability is outside [0, 1], or the lengths differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="matchLength"/> is negative.</exception>
    public static DraftTree Chain(ReadOnlySpan<int> tokens, ReadOnlySpan<float> probabilities = default, int matchLength = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(matchLength);
        if (tokens.IsEmpty)
        {
            return Empty;
        }
        var parents = new int[tokens.Length];
        for (int i = 0; i < parents.Length; i++)
        {
            parents[i] = i - 1;
        }
        return Create(tokens, parents, probabilities, int.MaxValue, matchLength);
    }

    /// <summary>Depth of node <paramref name="node"/> (1 for root-level candidates).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="node"/> is not a node index.</exception>
    public int Depth(int node)
    {
        CheckNode(node);
        return _depths[node];
    }

    /// <summary>The children of <paramref name="node"/> in index order; pass <c>-1</c> for the root-level candidates.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="node"/> is neither -1 nor a node index.</exception>
    public ReadOnlySpan<int> Children(int node)
    {
        if (node != -1)
        {
            CheckNode(node);
        }
        return _childIndex.AsSpan(_childStart[node + 1], _childStart[node + 2] - _childStart[node + 1]);
    }

    /// <summary>The node indices from the root-level ancestor down to <paramref name="node"/> inclusive.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="node"/> is not a node index.</exception>
    public int[] PathTo(int node)
    {
        CheckNode(node);
        var path = new int[_depths[node]];
        for (int i = path.Length - 1, n = node; i >= 0; i--, n = _parents[n])
        {
            path[i] = n;
        }
        return path;
    }

    /// <summary>The token ids on the path from the root-level ancestor down to <paramref name="node"/> inclusive.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="node"/> is not a node index.</exception>
    public int[] TokensTo(int node)
    {
        int[] path = PathTo(node);
        for (int i = 0; i < path.Length; i++)
        {
            path[i] = _tokens[path[i]];
        }
        return path;
    }

    /// <summary>
    /// Greedy verification against known next tokens: the longest root-to-node path whose tokens equal the prefix of
    /// <paramref name="expected"/>. This is what a greedy target accepts when <paramref name="expected"/> are its argmax
    /// continuations.
    /// </summary>
    /// <param name="expected">The true next tokens after the context.</param>
    /// <param name="deepestNode">The last accepted node, or -1 when nothing was accepted.</param>
    /// <returns>The number of accepted draft tokens (the path length).</returns>
    public int AcceptGreedy(ReadOnlySpan<int> expected, out int deepestNode)
    {
        deepestNode = -1;
        int accepted = 0;
        while (accepted < expected.Length)
        {
            int next = -1;
            foreach (int child in Children(deepestNode))
            {
                if (_tokens[child] == expected[accepted])
                {
                    next = child;
                    break;
                }
            }
            if (next < 0)
            {
                break;
            }
            deepestNode = next;
            accepted++;
        }
        return accepted;
    }

    private void CheckNode(int node)
    {
        if ((uint)node >= (uint)_tokens.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(node), node, $"The draft tree has nodes 0..{_tokens.Length - 1}.");
        }
    }

    private static InvalidDraftTreeException DuplicateSibling(int a, int b, int token) =>
        new($"Nodes {a} and {b} share the parent and the token {token}: merge them, siblings must carry distinct tokens.");
}
