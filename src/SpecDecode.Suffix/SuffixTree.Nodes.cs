using System.Runtime.CompilerServices;

namespace SpecDecode.Suffix;

// Node storage of the suffix tree: paged struct arrays with a free list, children kept in a sibling list sorted by
// decreasing count (runs of equal count form a group with O(1) access to its first and last member, so a count change
// by one moves a node in O(1)), and a hash index of children for nodes with many of them.
public sealed partial class SuffixTree
{
    private const int Nil = -1;
    private const int Root = 0;
    // A node whose number of children exceeds this has its children in _childIndex; others are found by a sibling scan.
    private const int IndexThreshold = 8;

    internal struct Node
    {
        public int Count;        // occurrences of this node's path string (suffixes that pass through or end here)
        public int Token;        // first token of the label
        public int Length;       // label length in tokens (0 only for the root)
        public int RefSeq;       // slot of a sequence holding the label...
        public int RefIdx;       // ...at this index, inside an occurrence of the whole path string
        public int Parent;
        public int HeadChild;    // children sorted by decreasing count
        public int TailChild;
        public int PrevSibling;
        public int NextSibling;
        public int Group;        // run of equal-count siblings this node belongs to
        public int ChildCount;
        public long EndHead;     // first record of the suffixes that end at this node
    }

    private struct Group
    {
        public int Head;
        public int Tail;
    }

    // Paged, so growth copies nothing (see PagedArray); never copy these fields.
    private PagedArray<Node> _nodes = new();
    private int _nodeHighWater;     // nodes ever allocated (slots 0.._nodeHighWater-1)
    private int _freeNode = Nil;    // free list threaded through Parent
    private int _liveNodes;

    private PagedArray<Group> _groups = new();
    private int _groupHighWater;
    private int _freeGroup = Nil;   // free list threaded through Head
    private int _liveGroups;

    private readonly ChildIndex _childIndex = new();

    private int NewNode(int count, int token, int length, int refSeq, int refIdx, int parent)
    {
        int n;
        if (_freeNode != Nil)
        {
            n = _freeNode;
            _freeNode = _nodes[n].Parent;
        }
        else
        {
            if (_nodeHighWater == _nodes.Capacity)
            {
                _nodes.Grow();
            }
            n = _nodeHighWater++;
        }
        _nodes[n] = new Node
        {
            Count = count,
            Token = token,
            Length = length,
            RefSeq = refSeq,
            RefIdx = refIdx,
            Parent = parent,
            HeadChild = Nil,
            TailChild = Nil,
            PrevSibling = Nil,
            NextSibling = Nil,
            Group = Nil,
            EndHead = NoRecord,
        };
        _liveNodes++;
        return n;
    }

    private void FreeNode(int n)
    {
        _nodes[n] = default;
        _nodes[n].Count = -1;   // marks a free slot for the integrity check
        _nodes[n].Parent = _freeNode;
        _freeNode = n;
        _liveNodes--;
    }

    private int NewGroup(int member)
    {
        int g;
        if (_freeGroup != Nil)
        {
            g = _freeGroup;
            _freeGroup = _groups[g].Head;
        }
        else
        {
            if (_groupHighWater == _groups.Capacity)
            {
                _groups.Grow();
            }
            g = _groupHighWater++;
        }
        _groups[g] = new Group { Head = member, Tail = member };
        _liveGroups++;
        return g;
    }

    private void FreeGroup(int g)
    {
        _groups[g].Head = _freeGroup;
        _groups[g].Tail = Nil;
        _freeGroup = g;
        _liveGroups--;
    }

    // ---------------------------------------------------------------- child lookup

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int FindChild(int parent, int token)
    {
        ref Node p = ref _nodes[parent];
        if (p.ChildCount > IndexThreshold)
        {
            return _childIndex.TryGet(parent, token, out int c) ? c : Nil;
        }
        for (int c = p.HeadChild; c != Nil;)
        {
            ref Node cn = ref _nodes[c];
            if (cn.Token == token)
            {
                return c;
            }
            c = cn.NextSibling;
        }
        return Nil;
    }

    private void IndexAdd(int parent, int token, int child)
    {
        if (_nodes[parent].ChildCount > IndexThreshold)
        {
            _childIndex.Set(parent, token, child);
        }
    }

    private void IndexRemove(int parent, int token)
    {
        if (_nodes[parent].ChildCount > IndexThreshold)
        {
            _childIndex.Remove(parent, token);
        }
    }

    private void OnChildCountChanged(int parent, int oldCount)
    {
        int newCount = _nodes[parent].ChildCount;
        bool wasIndexed = oldCount > IndexThreshold, isIndexed = newCount > IndexThreshold;
        if (wasIndexed == isIndexed)
        {
            return;
        }
        for (int c = _nodes[parent].HeadChild; c != Nil; c = _nodes[c].NextSibling)
        {
            if (isIndexed)
            {
                _childIndex.Set(parent, _nodes[c].Token, c);
            }
            else
            {
                _childIndex.Remove(parent, _nodes[c].Token);
            }
        }
    }

    // ---------------------------------------------------------------- sibling list with equal-count groups

    /// <summary>Adds a new child with the smallest count (1) at the end of the parent's sibling list.</summary>
    private void AppendChild(int parent, int child)
    {
        ref Node p = ref _nodes[parent];
        int tail = p.TailChild;
        _nodes[child].Parent = parent;
        _nodes[child].PrevSibling = tail;
        _nodes[child].NextSibling = Nil;
        if (tail == Nil)
        {
            p.HeadChild = child;
        }
        else
        {
            _nodes[tail].NextSibling = child;
        }
        p.TailChild = child;
        if (tail != Nil && _nodes[tail].Count == _nodes[child].Count)
        {
            int g = _nodes[tail].Group;
            _nodes[child].Group = g;
            _groups[g].Tail = child;
        }
        else
        {
            _nodes[child].Group = NewGroup(child);
        }
        int old = p.ChildCount++;
        if (old > IndexThreshold)
        {
            _childIndex.Set(parent, _nodes[child].Token, child);
        }
        else
        {
            OnChildCountChanged(parent, old);
        }
    }

    /// <summary>Removes a child from its parent's sibling list and index, leaving the child's own fields.</summary>
    private void DetachChild(int child)
    {
        int parent = _nodes[child].Parent;
        IndexRemove(parent, _nodes[child].Token);
        LeaveGroup(child);
        Unlink(child);
        int old = _nodes[parent].ChildCount--;
        OnChildCountChanged(parent, old);
    }

    /// <summary>Puts <paramref name="replacement"/> where <paramref name="old"/> stands (same parent, same count, same position).</summary>
    private void ReplaceChild(int old, int replacement)
    {
        ref Node o = ref _nodes[old];
        ref Node r = ref _nodes[replacement];
        int parent = o.Parent;
        r.Parent = parent;
        r.PrevSibling = o.PrevSibling;
        r.NextSibling = o.NextSibling;
        r.Group = o.Group;
        if (o.PrevSibling == Nil)
        {
            _nodes[parent].HeadChild = replacement;
        }
        else
        {
            _nodes[o.PrevSibling].NextSibling = replacement;
        }
        if (o.NextSibling == Nil)
        {
            _nodes[parent].TailChild = replacement;
        }
        else
        {
            _nodes[o.NextSibling].PrevSibling = replacement;
        }
        ref Group g = ref _groups[o.Group];
        if (g.Head == old)
        {
            g.Head = replacement;
        }
        if (g.Tail == old)
        {
            g.Tail = replacement;
        }
        if (o.Token != r.Token)
        {
            IndexRemove(parent, o.Token);
        }
        IndexAdd(parent, r.Token, replacement);
        o.PrevSibling = o.NextSibling = o.Group = Nil;
    }

    private void Unlink(int n)
    {
        ref Node node = ref _nodes[n];
        int parent = node.Parent;
        if (node.PrevSibling == Nil)
        {
            _nodes[parent].HeadChild = node.NextSibling;
        }
        else
        {
            _nodes[node.PrevSibling].NextSibling = node.NextSibling;
        }
        if (node.NextSibling == Nil)
        {
            _nodes[parent].TailChild = node.PrevSibling;
        }
        else
        {
            _nodes[node.NextSibling].PrevSibling = node.PrevSibling;
        }
        node.PrevSibling = node.NextSibling = Nil;
    }

    private void InsertBefore(int n, int other)
    {
        int parent = _nodes[other].Parent;
        int prev = _nodes[other].PrevSibling;
        _nodes[n].PrevSibling = prev;
        _nodes[n].NextSibling = other;
        _nodes[other].PrevSibling = n;
        if (prev == Nil)
        {
            _nodes[parent].HeadChild = n;
        }
        else
        {
            _nodes[prev].NextSibling = n;
        }
    }

    private void InsertAfter(int n, int other)
    {
        int parent = _nodes[other].Parent;
        int next = _nodes[other].NextSibling;
        _nodes[n].NextSibling = next;
        _nodes[n].PrevSibling = other;
        _nodes[other].NextSibling = n;
        if (next == Nil)
        {
            _nodes[parent].TailChild = n;
        }
        else
        {
            _nodes[next].PrevSibling = n;
        }
    }

    /// <summary>Takes the node out of its group (freeing the group if it was the only member); sibling links stay.</summary>
    private void LeaveGroup(int n)
    {
        int g = _nodes[n].Group;
        ref Group grp = ref _groups[g];
        if (grp.Head == n && grp.Tail == n)
        {
            FreeGroup(g);
        }
        else if (grp.Head == n)
        {
            grp.Head = _nodes[n].NextSibling;
        }
        else if (grp.Tail == n)
        {
            grp.Tail = _nodes[n].PrevSibling;
        }
        _nodes[n].Group = Nil;
    }

    /// <summary>Gives a node that has no group the group of an equal-count neighbour, or a new one.</summary>
    private void JoinGroup(int n)
    {
        int count = _nodes[n].Count;
        int prev = _nodes[n].PrevSibling, next = _nodes[n].NextSibling;
        if (prev != Nil && _nodes[prev].Count == count)
        {
            int g = _nodes[prev].Group;
            _nodes[n].Group = g;
            if (_groups[g].Tail == prev)
            {
                _groups[g].Tail = n;
            }
        }
        else if (next != Nil && _nodes[next].Count == count)
        {
            int g = _nodes[next].Group;
            _nodes[n].Group = g;
            if (_groups[g].Head == next)
            {
                _groups[g].Head = n;
            }
        }
        else
        {
            _nodes[n].Group = NewGroup(n);
        }
    }

    /// <summary>Adds one to a node's count, keeping its parent's children sorted by decreasing count.</summary>
    private void IncrementCount(int n)
    {
        if (n == Root)
        {
            _nodes[n].Count++;
            return;
        }
        int head = _groups[_nodes[n].Group].Head;
        LeaveGroup(n);
        if (head != n)
        {
            // Move in front of the first sibling of equal count: the end of the run of count + 1.
            Unlink(n);
            InsertBefore(n, head);
        }
        _nodes[n].Count++;
        JoinGroup(n);
    }

    /// <summary>Subtracts one from a node's count, keeping its parent's children sorted by decreasing count.</summary>
    private void DecrementCount(int n)
    {
        if (n == Root)
        {
            _nodes[n].Count--;
            return;
        }
        int tail = _groups[_nodes[n].Group].Tail;
        LeaveGroup(n);
        if (tail != n)
        {
            Unlink(n);
            InsertAfter(n, tail);
        }
        _nodes[n].Count--;
        JoinGroup(n);
    }
}
