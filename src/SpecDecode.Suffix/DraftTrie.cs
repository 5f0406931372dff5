namespace SpecDecode.Suffix;

/// <summary>
/// Merges candidate drafts (from several match lengths and from both trees of the cache) into one token tree: equal
/// prefixes share nodes, and a node keeps the highest acceptance estimate any candidate gave it. The result keeps the
/// best <c>budget</c> nodes.
/// </summary>
internal sealed class DraftTrie
{
    private int[] _tokens = new int[64];
    private int[] _parents = new int[64];
    private float[] _probs = new float[64];
    private int[] _cells = new int[64];
    private int[] _firstChild = new int[64];
    private int[] _nextSibling = new int[64];
    private int _count;
    private int _firstRoot = -1;
    private int _bestMatch;
    private float _bestMatchScore = -1f;
    private int[] _map = new int[64];
    private int[] _order = new int[64];

    public int Count => _count;

    public void Clear()
    {
        _count = 0;
        _firstRoot = -1;
        _bestMatch = 0;
        _bestMatchScore = -1f;
    }

    /// <summary>Adds every node of a candidate draft (parents before children).</summary>
    public void Add(in DraftBuffer draft)
    {
        if (draft.Count == 0)
        {
            return;
        }
        if (_map.Length < draft.Count)
        {
            _map = new int[Math.Max(draft.Count, _map.Length * 2)];
        }
        for (int i = 0; i < draft.Count; i++)
        {
            int parent = draft.Parents[i] < 0 ? -1 : _map[draft.Parents[i]];
            _map[i] = FindOrAdd(parent, draft.Tokens[i], draft.Probs[i], draft.Cells[i]);
        }
        if (draft.Score > _bestMatchScore)
        {
            (_bestMatchScore, _bestMatch) = (draft.Score, draft.MatchLength);
        }
    }

    /// <summary>Writes the best <paramref name="budget"/> nodes (by estimate; parents first on ties) into <paramref name="output"/>.</summary>
    public void Emit(int budget, ref DraftBuffer output)
    {
        output.Reset(budget);
        output.MatchLength = _bestMatch;
        int n = _count;
        if (n == 0 || budget == 0)
        {
            return;
        }
        if (_order.Length < n)
        {
            _order = new int[Math.Max(n, _order.Length * 2)];
        }
        for (int i = 0; i < n; i++)
        {
            _order[i] = i;
        }
        int keep = Math.Min(budget, n);
        if (keep < n)
        {
            // Estimates never grow along a path and parents have smaller indices, so this order keeps every parent.
            Array.Sort(_order, 0, n, Comparer<int>.Create((a, b) =>
            {
                int c = _probs[b].CompareTo(_probs[a]);
                return c != 0 ? c : a.CompareTo(b);
            }));
            Array.Sort(_order, 0, keep);
        }
        if (_map.Length < n)
        {
            _map = new int[Math.Max(n, _map.Length * 2)];
        }
        for (int k = 0; k < keep; k++)
        {
            int node = _order[k];
            int parent = _parents[node];
            _map[node] = output.Count;
            output.Add(_tokens[node], parent < 0 ? -1 : _map[parent], _probs[node], _cells[node]);
        }
    }

    private int FindOrAdd(int parent, int token, float prob, int cell)
    {
        int head = parent < 0 ? _firstRoot : _firstChild[parent];
        for (int c = head; c >= 0; c = _nextSibling[c])
        {
            if (_tokens[c] == token)
            {
                if (prob > _probs[c])
                {
                    _probs[c] = prob;
                    _cells[c] = cell;
                }
                return c;
            }
        }
        if (_count == _tokens.Length)
        {
            int size = _count * 2;
            Array.Resize(ref _tokens, size);
            Array.Resize(ref _parents, size);
            Array.Resize(ref _probs, size);
            Array.Resize(ref _cells, size);
            Array.Resize(ref _firstChild, size);
            Array.Resize(ref _nextSibling, size);
        }
        int n = _count++;
        _tokens[n] = token;
        _parents[n] = parent;
        _probs[n] = prob;
        _cells[n] = cell;
        _firstChild[n] = -1;
        _nextSibling[n] = head;
        if (parent < 0)
        {
            _firstRoot = n;
        }
        else
        {
            _firstChild[parent] = n;
        }
        return n;
    }
}
