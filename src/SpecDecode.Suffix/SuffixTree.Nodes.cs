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
    // Node.ChildCount stops here: a node that once had this many children keeps this value whatever it has later, so it
    // stays indexed, which stays correct (the index holds every child of an indexed node). Code that needs to know
    // whether a node has no child or exactly one reads the sibling list instead.
    private const int SaturatedChildCount = ushort.MaxValue;

    /// <summary>A node: 48 bytes.</summary>
    internal struct Node
    {
        public int Count;            // occurrences of this node's path string (suffixes that pass through or end here)
        public int Token;            // first token of the label
        public ushort Length;        // label length in tokens (0 only for the root; at most MaxDepth <= 4096)
        public ushort ChildCount;    // number of children, saturating at SaturatedChildCount
        public int RefSeq;           // slot of a sequence holding the label...
        public int RefIdx;           // ...at this index, inside an occurrence of the whole path string
        public int Parent;
        public int HeadChild;        // children sorted by decreasing count
        public int PrevSibling;      // previous sibling; for the first child ~(last child), see TailLink
        public int NextSibling;      // next sibling; Nil for the last child
        public int Group;            // run of equal-count siblings this node belongs to
        public long EndHead;         // first record of the suffixes that end at this node
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
            Length = (ushort)length,
            RefSeq = refSeq,
            RefIdx = refIdx,
            Parent = parent,
            HeadChild = Nil,
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
    private int FindChild(int parent, int token) => FindChild(parent, ref _nodes[parent], token);

    /// <summary>The child of <paramref name="parent"/> (whose node is <paramref name="p"/>) whose label starts with the token, or Nil.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int FindChild(int parent, ref Node p, int token)
    {
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

    /// <summary>
    /// As <see cref="FindChild(int, ref Node, int)"/>, also giving the child's node in place; a null reference
    /// (<see cref="Unsafe.IsNullRef"/>) when there is no such child.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref Node FindChildNode(int parent, ref Node p, int token, out int child)
    {
        if (p.ChildCount > IndexThreshold)
        {
            if (_childIndex.TryGet(parent, token, out child))
            {
                return ref _nodes[child];
            }
            return ref Unsafe.NullRef<Node>();
        }
        for (int c = p.HeadChild; c != Nil;)
        {
            ref Node cn = ref _nodes[c];
            if (cn.Token == token)
            {
                child = c;
                return ref cn;
            }
            c = cn.NextSibling;
        }
        child = Nil;
        return ref Unsafe.NullRef<Node>();
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

    /// <summary>True when the node has exactly one child (read from the sibling list: ChildCount may be saturated).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool HasOneChild(int n)
    {
        int head = _nodes[n].HeadChild;
        return head != Nil && _nodes[head].NextSibling == Nil;
    }

    // The sibling list has no tail pointer in the parent: the first child's PrevSibling holds ~(last child), a value
    // below -1 (the root is nobody's child, so the last child is >= 1), which also marks the first child without
    // reading the parent; the others' PrevSibling is the sibling before them, and an unlinked node's is Nil.

    /// <summary>The PrevSibling value of a first child whose list ends at <paramref name="tail"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int TailLink(int tail) => ~tail;

    /// <summary>True when a linked node's PrevSibling value marks it as the first child.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsTailLink(int prevSibling) => prevSibling < Nil;

    /// <summary>The sibling before a linked node, or Nil when it is the first child.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int PreviousSibling(int n)
    {
        int prev = _nodes[n].PrevSibling;
        return IsTailLink(prev) ? Nil : prev;
    }

    /// <summary>Adds a new child with the smallest count (1) at the end of the parent's sibling list.</summary>
    private void AppendChild(int parent, int child)
    {
        ref Node p = ref _nodes[parent];
        ref Node ch = ref _nodes[child];
        int head = p.HeadChild;
        int tail;
        ch.Parent = parent;
        ch.NextSibling = Nil;
        if (head == Nil)
        {
            tail = Nil;
            p.HeadChild = child;
            ch.PrevSibling = TailLink(child);
        }
        else
        {
            ref Node h = ref _nodes[head];
            tail = ~h.PrevSibling;
            ch.PrevSibling = tail;
            _nodes[tail].NextSibling = child;
            h.PrevSibling = TailLink(child);
        }
        if (tail != Nil && _nodes[tail].Count == ch.Count)
        {
            int g = _nodes[tail].Group;
            ch.Group = g;
            _groups[g].Tail = child;
        }
        else
        {
            ch.Group = NewGroup(child);
        }
        int old = p.ChildCount;
        if (old < SaturatedChildCount)
        {
            p.ChildCount = (ushort)(old + 1);
        }
        if (old > IndexThreshold)
        {
            _childIndex.Set(parent, ch.Token, child);
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
        int old = _nodes[parent].ChildCount;
        if (old < SaturatedChildCount)
        {
            _nodes[parent].ChildCount = (ushort)(old - 1);
            OnChildCountChanged(parent, old);
        }
    }

    /// <summary>
    /// Removes the child-index entry of the only child of <paramref name="n"/>, which is about to be fused with it and
    /// freed; only a node whose child count saturated is indexed with a single child.
    /// </summary>
    private void UnindexOnlyChild(int n, int child)
    {
        if (_nodes[n].ChildCount > IndexThreshold)
        {
            _childIndex.Remove(n, _nodes[child].Token);
        }
    }

    /// <summary>Puts <paramref name="replacement"/> where <paramref name="old"/> stands (same parent, same count, same position).</summary>
    private void ReplaceChild(int old, int replacement)
    {
        ref Node o = ref _nodes[old];
        ref Node r = ref _nodes[replacement];
        int parent = o.Parent;
        int prev = o.PrevSibling, next = o.NextSibling;
        r.Parent = parent;
        r.NextSibling = next;
        r.Group = o.Group;
        if (IsTailLink(prev))
        {
            _nodes[parent].HeadChild = replacement;
            r.PrevSibling = next == Nil ? TailLink(replacement) : prev;   // an only child is its own tail
        }
        else
        {
            r.PrevSibling = prev;
            _nodes[prev].NextSibling = replacement;
        }
        if (next != Nil)
        {
            _nodes[next].PrevSibling = replacement;
        }
        else if (!IsTailLink(prev))
        {
            _nodes[_nodes[parent].HeadChild].PrevSibling = TailLink(replacement);   // old was the last child
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
        int prev = node.PrevSibling, next = node.NextSibling;
        if (IsTailLink(prev))
        {
            _nodes[node.Parent].HeadChild = next;
            if (next != Nil)
            {
                _nodes[next].PrevSibling = prev;   // the new first child takes the link to the last
            }
        }
        else
        {
            _nodes[prev].NextSibling = next;
            if (next != Nil)
            {
                _nodes[next].PrevSibling = prev;
            }
            else
            {
                _nodes[_nodes[node.Parent].HeadChild].PrevSibling = TailLink(prev);   // n was the last child
            }
        }
        node.PrevSibling = node.NextSibling = Nil;
    }

    private void InsertBefore(int n, int other)
    {
        ref Node o = ref _nodes[other];
        int prev = o.PrevSibling;
        _nodes[n].PrevSibling = prev;   // a link to the last child when other was the first
        _nodes[n].NextSibling = other;
        o.PrevSibling = n;
        if (IsTailLink(prev))
        {
            _nodes[o.Parent].HeadChild = n;
        }
        else
        {
            _nodes[prev].NextSibling = n;
        }
    }

    private void InsertAfter(int n, int other)
    {
        ref Node o = ref _nodes[other];
        int next = o.NextSibling;
        _nodes[n].NextSibling = next;
        _nodes[n].PrevSibling = other;
        o.NextSibling = n;
        if (next == Nil)
        {
            _nodes[_nodes[o.Parent].HeadChild].PrevSibling = TailLink(n);   // n is the new last child
        }
        else
        {
            _nodes[next].PrevSibling = n;
        }
    }

    /// <summary>Takes the node out of its group (freeing the group if it was the only member); sibling links stay.</summary>
    private void LeaveGroup(int n)
    {
        ref Node node = ref _nodes[n];
        int g = node.Group;
        ref Group grp = ref _groups[g];
        if (grp.Head == n)
        {
            if (grp.Tail == n)
            {
                FreeGroup(g);
            }
            else
            {
                grp.Head = node.NextSibling;
            }
        }
        else if (grp.Tail == n)
        {
            grp.Tail = node.PrevSibling;   // n is not the first child, so this is the sibling before it
        }
        node.Group = Nil;
    }

    /// <summary>Gives a node that has no group the group of an equal-count neighbour, or a new one.</summary>
    private void JoinGroup(int n)
    {
        ref Node node = ref _nodes[n];
        int count = node.Count;
        int prev = node.PrevSibling, next = node.NextSibling;
        if (!IsTailLink(prev))
        {
            ref Node pn = ref _nodes[prev];
            if (pn.Count == count)
            {
                int g = pn.Group;
                node.Group = g;
                ref Group grp = ref _groups[g];
                if (grp.Tail == prev)
                {
                    grp.Tail = n;
                }
                return;
            }
        }
        if (next != Nil)
        {
            ref Node nx = ref _nodes[next];
            if (nx.Count == count)
            {
                int g = nx.Group;
                node.Group = g;
                ref Group grp = ref _groups[g];
                if (grp.Head == next)
                {
                    grp.Head = n;
                }
                return;
            }
        }
        node.Group = NewGroup(n);
    }

    /// <summary>Adds one to a node's count, keeping its parent's children sorted by decreasing count.</summary>
    private void IncrementCount(int n)
    {
        ref Node node = ref _nodes[n];
        if (n == Root)
        {
            node.Count++;
            return;
        }
        int head = _groups[node.Group].Head;
        LeaveGroup(n);
        if (head != n)
        {
            // Move in front of the first sibling of equal count: the end of the run of count + 1.
            Unlink(n);
            InsertBefore(n, head);
        }
        node.Count++;
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
