namespace SpecDecode.Tree;

internal sealed partial class KvBlockManager
{
    /// <summary>
    /// Verifies every invariant from scratch: the states partition the blocks (free list = free blocks, no block leaked),
    /// reference counts are non-negative, the counters match a recount, the index is a tree rooted at the root whose
    /// parents are full nodes (partial nodes are leaves), child counts and busy-children counts match, siblings have
    /// distinct contents, the full-child table and the first-token lists hold exactly the registered nodes, and every
    /// evictable leaf (idle, registered, childless) has a live entry in the eviction queue. O(blocks x B + queue);
    /// for tests and debugging.
    /// </summary>
    /// <exception cref="InvalidOperationException">An invariant is broken; the message names it.</exception>
    public void CheckIntegrity()
    {
        int n = BlockCount;
        var listed = new bool[n];
        foreach (int b in _freeList)
        {
            Require((uint)b < (uint)n && !listed[b], $"free list holds block {b} twice or out of range");
            listed[b] = true;
        }

        int referenced = 0, registered = 0, full = 0;
        var childCount = new int[n + 1];
        for (int b = 0; b < n; b++)
        {
            Require(_refCount[b] >= 0, $"block {b} has reference count {_refCount[b]}");
            bool isRegistered = _parent[b] != Unregistered;
            Require(_free[b] == listed[b], $"block {b}: free flag {_free[b]} but {(listed[b] ? "" : "not ")}on the free list");
            if (_free[b])
            {
                Require(_refCount[b] == 0 && !isRegistered, $"free block {b} is referenced or registered");
            }
            else
            {
                Require(_refCount[b] > 0 || isRegistered, $"block {b} is neither free, referenced nor registered (leaked)");
            }
            referenced += _refCount[b] > 0 ? 1 : 0;
            if (!isRegistered)
            {
                Require(_length[b] == 0 && _nextSibling[b] == NoBlock && _prevSibling[b] == NoBlock,
                    $"unregistered block {b} keeps index state");
                continue;
            }
            registered++;
            int p = _parent[b];
            Require(_length[b] >= 1 && _length[b] <= BlockSize, $"block {b} holds {_length[b]} tokens");
            Require(p == _root || ((uint)p < (uint)n && _parent[p] != Unregistered && _length[p] == BlockSize),
                $"block {b}'s parent {p} is not the root or a registered full node");
            full += _length[b] == BlockSize ? 1 : 0;
            childCount[p]++;
        }
        Require(referenced == _referenced, $"referenced blocks {_referenced}, recount {referenced}");
        Require(registered == _registered, $"registered blocks {_registered}, recount {registered}");
        for (int b = 0; b <= n; b++)
        {
            Require(childCount[b] == _childCount[b], $"node {b} counts {_childCount[b]} children, has {childCount[b]}");
        }

        // Depths by walking up (a cycle never reaches the root), then busy states bottom-up.
        var depth = new int[n];
        Array.Fill(depth, -1);
        for (int b = 0; b < n; b++)
        {
            if (_parent[b] != Unregistered)
            {
                DepthOf(b, depth, registered);
            }
        }
        var order = Enumerable.Range(0, n).Where(b => _parent[b] != Unregistered).OrderByDescending(b => depth[b]).ToArray();
        var busyChildren = new int[n];
        int idle = 0;
        foreach (int b in order)
        {
            bool busy = _refCount[b] > 0 || busyChildren[b] > 0;
            if (busy && _parent[b] != _root)
            {
                busyChildren[_parent[b]]++;
            }
            idle += busy ? 0 : 1;
        }
        for (int b = 0; b < n; b++)
        {
            Require(busyChildren[b] == _busyChildren[b], $"block {b} counts {_busyChildren[b]} busy children, has {busyChildren[b]}");
        }
        Require(idle == _idleCached, $"idle cached blocks {_idleCached}, recount {idle}");

        // The full-child table: exactly the full nodes, each found under its own parent by its own content.
        Require(_fullChildren.Count == full, $"full-child table holds {_fullChildren.Count}, {full} full nodes registered");
        foreach (int b in order)
        {
            if (_length[b] == BlockSize)
            {
                Require(_fullLookup.TryGetValue(new ChildContent(_parent[b], Content(b)), out int found) && found == b,
                    $"full block {b} is not found by its content");
            }
        }

        // The first-token lists: every registered node on exactly the list of its (parent, first token), contents distinct.
        var visited = new bool[n];
        int onLists = 0;
        foreach ((long key, int head) in _firstTokenHeads)
        {
            Require((uint)head < (uint)n && _prevSibling[head] == NoBlock, $"list head {head} has a previous sibling");
            for (int c = head, prev = NoBlock; c != NoBlock; prev = c, c = _nextSibling[c])
            {
                Require((uint)c < (uint)n && !visited[c] && _parent[c] != Unregistered, $"sibling list reaches block {c} twice or unregistered");
                Require(_prevSibling[c] == prev, $"block {c}'s previous sibling is {_prevSibling[c]}, not {prev}");
                Require(SiblingKey(_parent[c], _tokens[c * BlockSize]) == key, $"block {c} is on another parent's or token's list");
                for (int o = head; o != c; o = _nextSibling[o])
                {
                    Require(!Content(o).SequenceEqual(Content(c)), $"siblings {o} and {c} hold the same tokens");
                }
                visited[c] = true;
                onLists++;
            }
        }
        Require(onLists == registered, $"{onLists} nodes on sibling lists, {registered} registered");

        // The eviction queue: a live entry for every evictable leaf.
        var entries = new HashSet<(int, long)>();
        foreach ((int b, (long tick, int _)) in _evictable.UnorderedItems)
        {
            entries.Add((b, tick));
        }
        Require(_evictable.Count <= 2 * n + 64, $"eviction queue holds {_evictable.Count} entries for {n} blocks");
        for (int b = 0; b < n; b++)
        {
            if (IsEvictable(b))
            {
                Require(entries.Contains((b, _lastUse[b])), $"evictable leaf {b} (last use {_lastUse[b]}) is not queued");
            }
        }
    }

    private void DepthOf(int b, int[] depth, int registered)
    {
        int steps = 0, c = b;
        while (c != _root && depth[c] < 0)
        {
            c = _parent[c];
            Require(++steps <= registered, $"the index has a cycle through block {b}");
        }
        int d = c == _root ? 0 : depth[c];
        var chain = new Stack<int>();
        for (c = b; c != _root && depth[c] < 0; c = _parent[c])
        {
            chain.Push(c);
        }
        while (chain.Count > 0)
        {
            depth[chain.Pop()] = ++d;
        }
    }

    private static void Require(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvalidOperationException("KV block manager integrity check failed: " + what + ".");
        }
    }
}
