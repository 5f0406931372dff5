using System.Runtime.CompilerServices;

namespace SpecDecode.Suffix;

/// <summary>Thrown by <see cref="SuffixTree.CheckIntegrity"/> when an invariant of the tree does not hold (a bug).</summary>
public sealed class SuffixTreeIntegrityException : InvalidOperationException
{
    /// <summary>Creates the exception with the invariant that failed.</summary>
    public SuffixTreeIntegrityException(string message) : base("Suffix tree integrity check failed: " + message) { }
}

public sealed partial class SuffixTree
{
    /// <summary>
    /// Verifies every invariant of the tree: node labels and references, counts (each node's count equals the number of
    /// stored suffixes through it, recomputed from the sequences), the order and groups of every sibling list, the child
    /// index, the suffix records and the active suffixes of each sequence. Cost: O(tokens × depth); for tests and debugging.
    /// </summary>
    /// <exception cref="SuffixTreeIntegrityException">An invariant is broken; the message names it.</exception>
    public void CheckIntegrity()
    {
        // 1. Nodes, reached from the root.
        var depthStart = new Dictionary<int, int> { [Root] = 0 };
        var stack = new Stack<int>();
        stack.Push(Root);
        int reached = 0, indexed = 0, groupsSeen = 0;
        var groupIds = new HashSet<int>();
        while (stack.Count > 0)
        {
            int n = stack.Pop();
            reached++;
            ref Node node = ref _nodes[n];
            int d0 = depthStart[n];
            if (n == Root)
            {
                Require(node.Length == 0 && node.Parent == Nil && node.EndHead == NoRecord, "root has a label, a parent or records");
                Require(node.Count == _tokenCount, $"root count {node.Count} != stored tokens {_tokenCount}");
            }
            else
            {
                Require(node.Length >= 1 && node.Count >= 1, $"node {n} has length {node.Length}, count {node.Count}");
                Require(d0 + node.Length <= _maxDepth, $"node {n} ends at depth {d0 + node.Length} > {_maxDepth}");
                Require(node.RefSeq >= 0 && node.RefSeq < _seqHighWater && _seqs[node.RefSeq] is not null,
                    $"node {n} references missing sequence slot {node.RefSeq}");
                Sequence rs = _seqs[node.RefSeq]!;
                Require(node.RefIdx >= d0 && node.RefIdx + node.Length <= rs.Length,
                    $"node {n} reference {node.RefIdx}+{node.Length} outside its sequence (length {rs.Length}, depth {d0})");
                Require(node.Token == rs.Tokens[node.RefIdx], $"node {n} caches token {node.Token} but its label starts with {rs.Tokens[node.RefIdx]}");
                Require(FindChild(node.Parent, node.Token) == n, $"node {n} is not found under its parent by its token");
                // The reference lies inside an occurrence of the whole path: the tokens before it spell the ancestors' labels.
                for (int a = n, pos = node.RefIdx + node.Length; a != Root; a = _nodes[a].Parent)
                {
                    pos -= _nodes[a].Length;
                    for (int k = 0; k < _nodes[a].Length; k++)
                    {
                        Require(rs.Tokens[pos + k] == TokenAt(_nodes[a].RefSeq, _nodes[a].RefIdx + k),
                            $"node {n}'s reference is not inside an occurrence of its path (ancestor {a})");
                    }
                }
            }

            // Children: linked list, order, groups, counts.
            long childSum = 0;
            int seen = 0, prev = Nil;
            // A saturated child count only says that the node once had that many children (see SaturatedChildCount).
            bool saturated = node.ChildCount == SaturatedChildCount;
            for (int c = node.HeadChild; c != Nil; prev = c, c = _nodes[c].NextSibling)
            {
                ref Node cn = ref _nodes[c];
                seen++;
                Require(seen <= node.ChildCount || saturated, $"node {n}'s sibling list is longer than its child count {node.ChildCount}");
                Require(seen <= _nodeHighWater, $"node {n}'s sibling list has a cycle");
                Require(cn.Parent == n && (prev == Nil ? IsTailLink(cn.PrevSibling) : cn.PrevSibling == prev),
                    $"node {c} has wrong parent or previous-sibling links");
                Require(n == Root || cn.Count < node.Count, $"child {c} (count {cn.Count}) is not below its parent {n} (count {node.Count}): should be merged");
                Require(cn.Group >= 0 && cn.Group < _groupHighWater, $"node {c} has no group");
                if (prev != Nil)
                {
                    ref Node pn = ref _nodes[prev];
                    Require(pn.Count >= cn.Count, $"children of {n} are not sorted by decreasing count");
                    Require((pn.Count == cn.Count) == (pn.Group == cn.Group), $"children {prev} and {c} of {n}: groups disagree with counts");
                }
                if (prev == Nil || _nodes[prev].Count != cn.Count)
                {
                    Require(_groups[cn.Group].Head == c, $"group of {c} does not start at it");
                    groupsSeen++;
                    Require(groupIds.Add(cn.Group), $"group {cn.Group} is used by two runs");
                }
                if (cn.NextSibling == Nil || _nodes[cn.NextSibling].Count != cn.Count)
                {
                    Require(_groups[cn.Group].Tail == c, $"group of {c} does not end at it");
                }
                if (node.ChildCount > IndexThreshold)
                {
                    Require(_childIndex.TryGet(n, cn.Token, out int ic) && ic == c, $"child {c} of {n} is missing from the child index");
                    indexed++;
                }
                childSum += cn.Count;
                depthStart[c] = d0 + node.Length;
                stack.Push(c);
            }
            Require(seen == node.ChildCount || saturated, $"node {n} counts {node.ChildCount} children but lists {seen}");
            Require(node.HeadChild == Nil || _nodes[node.HeadChild].PrevSibling == TailLink(prev),
                $"node {n}'s first child does not link to the last child");
            long records = 0;
            for (long r = node.EndHead; r != NoRecord; r = _seqs[RecordSlot(r)]!.EndNext[RecordStart(r)])
            {
                records++;
                Require(records <= node.Count, $"node {n}'s record list is longer than its count");
            }
            Require(n == Root || childSum + records == node.Count,
                $"node {n}: count {node.Count} != children {childSum} + suffixes ending here {records}");
        }
        Require(reached == _liveNodes, $"{_liveNodes} live nodes but {reached} reachable from the root");
        Require(indexed == _childIndex.Count, $"child index holds {_childIndex.Count} entries, expected {indexed}");
        Require(groupsSeen == _liveGroups, $"{_liveGroups} live groups but {groupsSeen} in use");

        // 2. Every suffix of every sequence: its path exists, ends at a node boundary, and is recorded at that node.
        var visits = new Dictionary<int, long>();
        for (int slot = 0; slot < _seqHighWater; slot++)
        {
            Sequence? s = _seqs[slot];
            if (s is null)
            {
                continue;
            }
            Require(_slotOfId.TryGetValue(s.Id, out int mapped) && mapped == slot, $"sequence {s.Id} is not mapped to slot {slot}");
            int firstActive = s.Length - s.ActiveCount;
            for (int j = 0; j < s.Length; j++)
            {
                int end = Math.Min(j + _maxDepth, s.Length);
                int node = Root, idx = j;
                while (idx < end)
                {
                    int c = FindChild(node, s.Tokens[idx]);
                    Require(c != Nil, $"suffix {j} of sequence {s.Id} leaves the tree at depth {idx - j}");
                    Require(idx + _nodes[c].Length <= end, $"suffix {j} of sequence {s.Id} ends inside node {c}");
                    for (int k = 0; k < _nodes[c].Length; k++)
                    {
                        Require(s.Tokens[idx + k] == TokenAt(_nodes[c].RefSeq, _nodes[c].RefIdx + k),
                            $"suffix {j} of sequence {s.Id} disagrees with node {c}'s label");
                    }
                    visits[c] = visits.GetValueOrDefault(c) + 1;
                    idx += _nodes[c].Length;
                    node = c;
                }
                Require(RecordIsAt(node, Record(slot, j)), $"suffix {j} of sequence {s.Id} is not recorded at node {node}");
                if (s.Active is not null && j >= firstActive)
                {
                    int pos = (s.ActiveStart + (j - firstActive)) % _maxDepth;
                    Require(s.Active[pos] == node, $"active suffix {j} of sequence {s.Id} points at {s.Active[pos]}, not {node}");
                }
            }
        }
        foreach ((int n, int _) in depthStart)
        {
            if (n != Root)
            {
                Require(visits.GetValueOrDefault(n) == _nodes[n].Count,
                    $"node {n} counts {_nodes[n].Count} suffixes but {visits.GetValueOrDefault(n)} pass through it");
            }
        }
    }

    private bool RecordIsAt(int node, long rec)
    {
        for (long r = _nodes[node].EndHead; r != NoRecord; r = _seqs[RecordSlot(r)]!.EndNext[RecordStart(r)])
        {
            if (r == rec)
            {
                return true;
            }
        }
        return false;
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw new SuffixTreeIntegrityException(message);
        }
    }

    /// <summary>
    /// Bytes held by the tree: node, group and index storage at their allocated capacity, and each sequence's tokens,
    /// suffix records and active-suffix ring. Cost: O(sequences).
    /// </summary>
    public long EstimateMemoryBytes()
    {
        long total = 128;
        total += _nodes.MemoryBytes;
        total += _groups.MemoryBytes;
        total += _childIndex.MemoryBytes;
        total += (long)_seqs.Length * IntPtr.Size + _slotOfId.Count * 24L;
        for (int slot = 0; slot < _seqHighWater; slot++)
        {
            if (_seqs[slot] is { } s)
            {
                total += s.MemoryBytes;
            }
        }
        return total;
    }
}
