using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace SpecDecode.Suffix;

/// <summary>
/// A suffix tree over a set of token sequences, truncated at <see cref="MaxDepth"/>, in which every node counts the
/// occurrences of its path string. It drafts continuations of a context from those counts.
/// </summary>
/// <remarks>
/// <para>The data structure of SuffixDecoding (Oliaro et al., 2024, "SuffixDecoding: Extreme Speculative Decoding for
/// Emerging AI Applications"). Paths are compressed: a node's label is a run of tokens stored once, as a reference
/// into one of the sequences, and carries one count for the whole run. Every suffix of every sequence, cut at
/// <see cref="MaxDepth"/> tokens, ends exactly at a node and is recorded there, which lets a removed sequence's
/// references be moved to another occurrence.</para>
/// <para>Costs: <see cref="Append"/> is O(<see cref="MaxDepth"/>) per token, <see cref="Remove"/> O(<see cref="MaxDepth"/>)
/// per removed token, <see cref="Speculate"/> O(depth² + depth × draft size). Children are kept sorted by decreasing
/// count (equal counts form a run whose ends are known), so a count change reorders in O(1) and path drafting reads
/// the most frequent child directly.</para>
/// <para>Not thread-safe: one writer at a time, and no reads during a write. the suffix decoding cache adds the
/// locking.</para>
/// </remarks>
[DebuggerDisplay("SuffixTree {SequenceCount} sequences, {TokenCount} tokens, {NodeCount} nodes")]
public sealed partial class SuffixTree
{
    private const long NoRecord = -1;

    private readonly int _maxDepth;
    private readonly Dictionary<int, int> _slotOfId = new();
    private Sequence?[] _seqs = new Sequence?[4];
    private int _seqHighWater;
    private readonly Stack<int> _freeSlots = new();
    private long _tokenCount;
    private readonly List<(int Node, int DepthStart)> _removePath = new();

    /// <summary>Creates an empty tree.</summary>
    /// <param name="maxDepth">Longest suffix, in tokens, the tree indexes (SuffixDecoding's default is 64).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxDepth"/> is below 1 or above 4096.</exception>
    public SuffixTree(int maxDepth = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDepth, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxDepth, 4096);
        _maxDepth = maxDepth;
        NewNode(0, 0, 0, Nil, Nil, Nil);
    }

    /// <summary>Longest suffix, in tokens, that the tree indexes.</summary>
    public int MaxDepth => _maxDepth;

    /// <summary>Number of sequences stored.</summary>
    public int SequenceCount => _slotOfId.Count;

    /// <summary>Total tokens over all stored sequences.</summary>
    public long TokenCount => _tokenCount;

    /// <summary>Nodes in the tree, the root included.</summary>
    public int NodeCount => _liveNodes;

    /// <summary>True when a sequence with this id is stored.</summary>
    public bool Contains(int sequenceId) => _slotOfId.ContainsKey(sequenceId);

    /// <summary>Length of a stored sequence.</summary>
    /// <exception cref="KeyNotFoundException">No sequence has this id.</exception>
    public int SequenceLength(int sequenceId) => SequenceOf(sequenceId).Length;

    /// <summary>The tokens of a stored sequence (a view that is valid until the tree next changes).</summary>
    /// <exception cref="KeyNotFoundException">No sequence has this id.</exception>
    public ReadOnlySpan<int> SequenceTokens(int sequenceId)
    {
        Sequence s = SequenceOf(sequenceId);
        return s.Tokens.AsSpan(0, s.Length);
    }

    /// <summary>Appends one token to a sequence, creating the sequence if the id is new.</summary>
    /// <param name="sequenceId">Any non-negative id.</param>
    /// <param name="token">A non-negative token id.</param>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative.</exception>
    public void Append(int sequenceId, int token)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(token);
        AppendCore(GetOrCreate(sequenceId), token);
    }

    /// <summary>Appends tokens to a sequence, creating the sequence if the id is new. Cost: O(<see cref="MaxDepth"/>) per token.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id or a token is negative; nothing is appended then.</exception>
    public void Extend(int sequenceId, ReadOnlySpan<int> tokens)
    {
        foreach (int t in tokens)
        {
            if (t < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), t, "Token ids must be non-negative; nothing was appended.");
            }
        }
        if (tokens.IsEmpty)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(sequenceId);
            return;
        }
        Sequence s = GetOrCreate(sequenceId);
        s.EnsureCapacity(s.Length + tokens.Length);
        foreach (int t in tokens)
        {
            AppendCore(s, t);
        }
    }

    /// <summary>Removes a sequence and every count it contributed. Cost: O(<see cref="MaxDepth"/>) per token of the sequence.</summary>
    /// <returns>False (and nothing changes) when no sequence has this id.</returns>
    public bool Remove(int sequenceId)
    {
        if (!_slotOfId.TryGetValue(sequenceId, out int slot))
        {
            return false;
        }
        Sequence s = _seqs[slot]!;
        for (int j = 0; j < s.Length; j++)
        {
            RemoveSuffix(s, slot, j);
        }
        _tokenCount -= s.Length;
        _seqs[slot] = null;
        _freeSlots.Push(slot);
        _slotOfId.Remove(sequenceId);
        return true;
    }

    /// <summary>
    /// Trims a sequence's storage to its length: its tokens and suffix records are reallocated at exactly its length, and
    /// the ring of its newest suffixes' end nodes (<see cref="MaxDepth"/> ints) is dropped. Call it when a sequence will
    /// not grow for a while, e.g. when the request whose response it is has ended; it saves the growth slack (up to half
    /// of 20 bytes a token) and the ring. Drafting and counts do not change. A later <see cref="Append"/> or
    /// <see cref="Extend"/> still works: it regrows the storage and rebuilds the ring by walking the sequence's newest
    /// suffixes from the root, O(<see cref="MaxDepth"/>²) once.
    /// Cost: O(length of the sequence) when there is slack to trim, else O(1).
    /// </summary>
    /// <returns>False (and nothing changes) when no sequence has this id.</returns>
    public bool Seal(int sequenceId)
    {
        if (!_slotOfId.TryGetValue(sequenceId, out int slot))
        {
            return false;
        }
        _seqs[slot]!.Trim();
        return true;
    }

    /// <summary>
    /// Drafts a continuation of <paramref name="context"/>: for every length <c>m</c> of a context suffix found in the tree
    /// (up to <see cref="MaxDepth"/>), grows a draft from the matched node under the budget
    /// <c>min(settings.MaxTokens, settings.Rule.Limit(m))</c>, and returns the draft with the highest score (the expected
    /// number of accepted tokens); among equal scores the longer match wins.
    /// </summary>
    /// <param name="context">The tokens so far; only the last <see cref="MaxDepth"/> matter.</param>
    /// <param name="settings">Budget, match-length rule, probability cut and path or tree mode.</param>
    /// <returns>The best draft, or <see cref="DraftTree.Empty"/> when nothing matches or the budget is 0.</returns>
    public DraftTree Speculate(ReadOnlySpan<int> context, in SpeculationSettings settings)
    {
        var best = new DraftBuffer();
        var scratch = new DraftBuffer();
        SpeculateInto(context, settings, ref best, ref scratch);
        return best.ToDraftTree();
    }

    // ------------------------------------------------------------------------------------------------ append

    private Sequence GetOrCreate(int sequenceId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sequenceId);
        if (_slotOfId.TryGetValue(sequenceId, out int slot))
        {
            return _seqs[slot]!;
        }
        if (!_freeSlots.TryPop(out slot))
        {
            if (_seqHighWater == _seqs.Length)
            {
                Array.Resize(ref _seqs, _seqs.Length * 2);
            }
            slot = _seqHighWater++;
        }
        var s = new Sequence(sequenceId, slot, _maxDepth);
        _seqs[slot] = s;
        _slotOfId.Add(sequenceId, slot);
        return s;
    }

    private Sequence SequenceOf(int sequenceId) =>
        _slotOfId.TryGetValue(sequenceId, out int slot)
            ? _seqs[slot]!
            : throw new KeyNotFoundException($"The suffix tree has no sequence {sequenceId}.");

    private void AppendCore(Sequence s, int token)
    {
        int i = s.Length;
        s.EnsureCapacity(i + 1);
        s.Tokens[i] = token;
        s.EndNext[i] = NoRecord;
        s.EndPrev[i] = NoRecord;
        s.Length = i + 1;
        _tokenCount++;
        _nodes[Root].Count++;

        int[] ring = s.Active ?? RebuildActive(s, i);
        int d = _maxDepth;
        if (s.ActiveCount == d)
        {
            // The oldest suffix has reached the maximum depth: it stays where it ends.
            s.ActiveStart = s.ActiveStart + 1 == d ? 0 : s.ActiveStart + 1;
            s.ActiveCount--;
        }
        int back = s.ActiveStart + s.ActiveCount;
        ring[back >= d ? back - d : back] = Root;
        s.ActiveCount++;

        // Extend the active suffixes oldest (deepest) first; see ExtendSuffix for why the order matters.
        int firstStart = i - s.ActiveCount + 1;
        for (int k = 0, pos = s.ActiveStart; k < s.ActiveCount; k++, pos = pos + 1 == d ? 0 : pos + 1)
        {
            ring[pos] = ExtendSuffix(s.Slot, firstStart + k, ring[pos], token, i);
        }
    }

    /// <summary>
    /// Recreates the ring of a sealed sequence (see <see cref="Seal"/>) as it stood after its first <paramref name="length"/>
    /// tokens: the nodes where its newest min(length, MaxDepth) suffixes end, found by walking them from the root.
    /// </summary>
    private int[] RebuildActive(Sequence s, int length)
    {
        var ring = new int[_maxDepth];
        int count = Math.Min(length, _maxDepth);
        for (int k = 0, j = length - count; k < count; k++, j++)
        {
            int node = Root, idx = j;
            while (idx < length)
            {
                node = FindChild(node, s.Tokens[idx]);
                if (node == Nil)
                {
                    throw new InvalidOperationException(
                        $"Suffix tree corrupted: suffix {j} of sequence {s.Id} has no node at depth {idx - j}. Run CheckIntegrity.");
                }
                idx += _nodes[node].Length;
            }
            Debug.Assert(idx == length, "a suffix ends inside a node");
            ring[k] = node;
        }
        s.Active = ring;
        s.ActiveStart = 0;
        s.ActiveCount = count;
        return ring;
    }

    /// <summary>
    /// Extends the suffix of sequence <paramref name="slot"/> that starts at <paramref name="start"/> and currently ends
    /// at the end of node <paramref name="n"/> by <paramref name="token"/> (stored at position <paramref name="i"/>).
    /// Returns the node where the longer suffix ends.
    /// </summary>
    /// <remarks>
    /// Suffixes are extended deepest first, so when a node is found to hold exactly one ending suffix (ours) and its
    /// only child carries every other occurrence, no other active suffix of the same sequence can end at that node.
    /// </remarks>
    private int ExtendSuffix(int slot, int start, int n, int token, int i)
    {
        long rec = Record(slot, start);
        // References into the node storage stay valid until the next NewNode (which may resize the first page).
        ref Node nn = ref _nodes[n];
        int c = FindChild(n, ref nn, token);
        if (c == Nil)
        {
            if (n != Root && nn.Count == 1)
            {
                // Only this suffix passes through n, so n is a leaf labelled by the end of this very sequence: grow it.
                Debug.Assert(nn.HeadChild == Nil && nn.RefSeq == slot && nn.RefIdx + nn.Length == i);
                nn.Length++;
                return n;
            }
            int leaf = NewNode(1, token, 1, slot, i, n);
            AppendChild(n, leaf);
            MoveRecord(n, leaf, rec);
            return leaf;
        }

        ref Node cn = ref _nodes[c];
        if (n != Root && nn.Count == cn.Count + 1)
        {
            // This suffix is the only one ending at n; every other occurrence continues into c, n's only child.
            Debug.Assert(HasOneChild(n));
            if (cn.Length == 1)
            {
                // The extended suffix covers n and c exactly: c takes n's place with n's label plus its own token.
                UnindexOnlyChild(n, c);
                cn.Count = nn.Count;
                cn.Token = nn.Token;
                cn.Length = (ushort)(nn.Length + 1);
                cn.RefSeq = slot;
                cn.RefIdx = i + 1 - cn.Length;
                FreeGroup(cn.Group);
                cn.Group = Nil;
                ReplaceChild(n, c);
                UnlinkRecord(n, rec);
                LinkRecord(c, rec);
                FreeNode(n);
                return c;
            }
            else
            {
                // n grows by c's first token, which c gives up.
                UnindexOnlyChild(n, c);
                nn.Length++;
                nn.RefSeq = slot;
                nn.RefIdx = i + 1 - nn.Length;
                cn.Length--;
                cn.RefIdx++;
                cn.Token = TokenAt(cn.RefSeq, cn.RefIdx);
                IndexAdd(n, cn.Token, c);
                return n;
            }
        }

        if (cn.Length == 1)
        {
            MoveRecord(n, c, rec);
            IncrementCount(c);
            return c;
        }

        // Split c after its first token: the new node m carries the extra occurrence.
        int m = NewNode(cn.Count, token, 1, slot, i, n);
        ReplaceChild(c, m);
        ref Node ch = ref _nodes[c];
        ch.Length--;
        ch.RefIdx++;
        ch.Token = TokenAt(ch.RefSeq, ch.RefIdx);
        ch.Parent = m;
        ch.Group = NewGroup(c);
        ch.PrevSibling = TailLink(c);   // an only child is its own last child
        ch.NextSibling = Nil;
        ref Node mn = ref _nodes[m];
        mn.HeadChild = c;
        mn.ChildCount = 1;
        MoveRecord(n, m, rec);
        IncrementCount(m);
        return m;
    }

    // ------------------------------------------------------------------------------------------------ remove

    private void RemoveSuffix(Sequence s, int slot, int j)
    {
        long rec = Record(slot, j);
        int end = Math.Min(j + _maxDepth, s.Length);
        int node = Root;
        _nodes[Root].Count--;
        int idx = j;
        bool recordGone = false;
        List<(int Node, int DepthStart)> path = _removePath;
        path.Clear();
        while (idx < end)
        {
            int c = FindChild(node, s.Tokens[idx]);
            if (c == Nil)
            {
                throw new InvalidOperationException(
                    $"Suffix tree corrupted: suffix {j} of sequence {s.Id} has no node at depth {idx - j}. Run CheckIntegrity.");
            }
            if (_nodes[c].Count > 1)
            {
                DecrementCount(c);
                path.Add((c, idx - j));
                idx += _nodes[c].Length;
                node = c;
            }
            else
            {
                // Only this suffix passes through c, so c is a leaf holding just this suffix's record.
                Debug.Assert(_nodes[c].HeadChild == Nil);
                UnlinkRecord(c, rec);
                recordGone = true;
                DetachChild(c);
                FreeNode(c);
                break;
            }
        }
        if (!recordGone)
        {
            UnlinkRecord(node, rec);
        }

        // The deepest surviving node may now have one child with an equal count: fuse them.
        if (node != Root && HasOneChild(node))
        {
            int child = _nodes[node].HeadChild;
            if (_nodes[child].Count == _nodes[node].Count)
            {
                Debug.Assert(_nodes[node].EndHead == NoRecord);
                UnindexOnlyChild(node, child);
                ref Node cn = ref _nodes[child];
                ref Node nn = ref _nodes[node];
                cn.Token = nn.Token;
                cn.Length += nn.Length;
                cn.RefIdx -= nn.Length;
                FreeGroup(cn.Group);
                cn.Group = Nil;
                ReplaceChild(node, child);
                FreeNode(node);
                path[^1] = (child, path[^1].DepthStart);
                node = child;
            }
        }

        if (path.Count == 0)
        {
            return;
        }
        // Nodes of this path that reference the removed sequence move to another occurrence: any suffix recorded at a
        // leaf below the deepest node passes through every node of the path. If that leaf holds only suffixes of the
        // removed sequence, a later suffix of it passes through the same nodes and repairs them then.
        int leafNode = node;
        int leafDepth = path[^1].DepthStart + _nodes[node].Length;
        while (_nodes[leafNode].HeadChild != Nil)
        {
            leafNode = _nodes[leafNode].HeadChild;
            leafDepth += _nodes[leafNode].Length;
        }
        long other = NoRecord;
        for (long r = _nodes[leafNode].EndHead; r != NoRecord; r = _seqs[RecordSlot(r)]!.EndNext[RecordStart(r)])
        {
            if (RecordSlot(r) != slot)
            {
                other = r;
                break;
            }
        }
        if (other == NoRecord)
        {
            return;
        }
        int otherSlot = RecordSlot(other), otherStart = RecordStart(other);
        foreach ((int pn, int depthStart) in path)
        {
            ref Node p = ref _nodes[pn];
            if (p.RefSeq == slot)
            {
                p.RefSeq = otherSlot;
                p.RefIdx = otherStart + depthStart;
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ records

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Record(int slot, int start) => ((long)slot << 32) | (uint)start;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RecordSlot(long record) => (int)(record >> 32);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RecordStart(long record) => (int)record;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int TokenAt(int slot, int index) => _seqs[slot]!.Tokens[index];

    private void MoveRecord(int from, int to, long rec)
    {
        if (from != Root)
        {
            UnlinkRecord(from, rec);
        }
        LinkRecord(to, rec);
    }

    private void LinkRecord(int node, long rec)
    {
        Sequence s = _seqs[RecordSlot(rec)]!;
        int j = RecordStart(rec);
        long head = _nodes[node].EndHead;
        s.EndNext[j] = head;
        s.EndPrev[j] = NoRecord;
        if (head != NoRecord)
        {
            _seqs[RecordSlot(head)]!.EndPrev[RecordStart(head)] = rec;
        }
        _nodes[node].EndHead = rec;
    }

    private void UnlinkRecord(int node, long rec)
    {
        Sequence s = _seqs[RecordSlot(rec)]!;
        int j = RecordStart(rec);
        long prev = s.EndPrev[j], next = s.EndNext[j];
        if (prev == NoRecord)
        {
            Debug.Assert(_nodes[node].EndHead == rec);
            _nodes[node].EndHead = next;
        }
        else
        {
            _seqs[RecordSlot(prev)]!.EndNext[RecordStart(prev)] = next;
        }
        if (next != NoRecord)
        {
            _seqs[RecordSlot(next)]!.EndPrev[RecordStart(next)] = prev;
        }
        s.EndNext[j] = NoRecord;
        s.EndPrev[j] = NoRecord;
    }

    /// <summary>One stored sequence: its tokens, the records of its suffixes, and the nodes where its newest suffixes end
    /// (the ring, dropped while the sequence is sealed).</summary>
    private sealed class Sequence
    {
        public Sequence(int id, int slot, int maxDepth)
        {
            Id = id;
            Slot = slot;
            Active = new int[maxDepth];
        }

        public readonly int Id;
        public readonly int Slot;
        public int[] Tokens = new int[16];
        public long[] EndNext = new long[16];   // record list links of the suffix starting at each position
        public long[] EndPrev = new long[16];
        public int Length;
        public int[]? Active;                   // ring: end nodes of the newest min(Length, MaxDepth) suffixes; null when sealed
        public int ActiveStart;
        public int ActiveCount;

        public void EnsureCapacity(int length)
        {
            if (length <= Tokens.Length)
            {
                return;
            }
            int size = Math.Max(length, Tokens.Length * 2);
            Array.Resize(ref Tokens, size);
            Array.Resize(ref EndNext, size);
            Array.Resize(ref EndPrev, size);
        }

        /// <summary>Reallocates the arrays at exactly <see cref="Length"/> and drops the ring.</summary>
        public void Trim()
        {
            if (Tokens.Length != Length)
            {
                Array.Resize(ref Tokens, Length);
                Array.Resize(ref EndNext, Length);
                Array.Resize(ref EndPrev, Length);
            }
            Active = null;
            ActiveStart = ActiveCount = 0;
        }

        // The object (header and fields), three array headers and elements, and the ring with its header.
        public long MemoryBytes =>
            72 + 3 * ArrayHeader + Tokens.Length * (long)(sizeof(int) + 2 * sizeof(long))
            + (Active is null ? 0 : ArrayHeader + Active.Length * sizeof(int));

        private const int ArrayHeader = 24;
    }
}
