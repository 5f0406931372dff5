namespace SpecDecode.Tree.Tests.Paging;

/// <summary>
/// The naive reference for <see cref="KvBlockManager"/>: explicit reference counts, a dictionary of registered blocks
/// (parent, tokens, last use), and every rule written as a scan over all blocks. Slow on purpose (O(blocks²) per query),
/// no hashing, no lists, no queue, no cached counts: what it says is what the rules in the brief say.
/// </summary>
internal sealed class NaiveBlockIndex(int blockCount, int blockSize)
{
    public const int Root = -2;

    public int BlockCount { get; } = blockCount;

    public int BlockSize { get; } = blockSize;

    public int[] RefCount { get; } = new int[blockCount];

    public long[] LastUse { get; } = new long[blockCount];

    public Dictionary<int, Node> Nodes { get; } = [];

    public long Clock { get; private set; }

    public sealed class Node(int parent, int[] tokens)
    {
        public int Parent { get; } = parent;

        public int[] Tokens { get; set; } = tokens;
    }

    public bool IsFree(int b) => RefCount[b] == 0 && !Nodes.ContainsKey(b);

    public IEnumerable<int> Children(int parent) => Nodes.Where(kv => kv.Value.Parent == parent).Select(kv => kv.Key);

    public int FreeBlocks => Enumerable.Range(0, BlockCount).Count(IsFree);

    /// <summary>Registered blocks that are neither referenced nor above a referenced block.</summary>
    public int IdleCachedBlocks
    {
        get
        {
            ILookup<int, int> children = Nodes.Keys.ToLookup(b => Nodes[b].Parent);
            var busy = new Dictionary<int, bool>();
            bool IsBusy(int b)
            {
                if (!busy.TryGetValue(b, out bool value))
                {
                    value = RefCount[b] > 0 || children[b].Count(IsBusy) > 0;
                    busy[b] = value;
                }
                return value;
            }
            return Nodes.Keys.Count(b => !IsBusy(b));
        }
    }

    /// <summary>Evictions checked by <see cref="Allocate"/> so far.</summary>
    public int Evictions { get; private set; }

    /// <summary>Full blocks registered where another block already held the same tokens (left out of the index).</summary>
    public int Duplicates { get; private set; }

    /// <summary>Partial leaves that grew in place (the same sequence registering again).</summary>
    public int Extensions { get; private set; }

    /// <summary>Idle partial leaves dropped because a sibling starts with their tokens.</summary>
    public int ShadowDrops { get; private set; }

    public int AvailableBlocks => FreeBlocks + IdleCachedBlocks;

    public int ReferencedBlocks => RefCount.Count(r => r > 0);

    /// <summary>The tokens from the root through <paramref name="b"/>'s own tokens.</summary>
    public int[] PathTokens(int b)
    {
        var parts = new List<int[]>();
        for (int c = b; c != Root; c = Nodes[c].Parent)
        {
            parts.Add(Nodes[c].Tokens);
        }
        parts.Reverse();
        return parts.SelectMany(p => p).ToArray();
    }

    /// <summary>
    /// The rule of the brief: the chain of full nodes equal to whole blocks of the (capped) tokens, then the largest
    /// common prefix of any child of the chain's end with the rest, with every child reaching that length.
    /// </summary>
    public (List<int> Full, int PartialTokens, List<int> PartialCandidates) Match(int[] tokens, int maxTokens)
    {
        int limit = Math.Min(tokens.Length, maxTokens);
        int node = Root, position = 0;
        var full = new List<int>();
        while (limit - position >= BlockSize)
        {
            int[] block = tokens[position..(position + BlockSize)];
            int next = Children(node).Where(c => Nodes[c].Tokens.SequenceEqual(block)).DefaultIfEmpty(-1).Single();
            if (next < 0)
            {
                break;
            }
            full.Add(next);
            node = next;
            position += BlockSize;
        }
        int best = 0;
        var candidates = new List<int>();
        int[] rest = tokens[position..limit];
        foreach (int c in Children(node))
        {
            int common = 0;
            while (common < rest.Length && common < Nodes[c].Tokens.Length && Nodes[c].Tokens[common] == rest[common])
            {
                common++;
            }
            if (common > best)
            {
                best = common;
                candidates.Clear();
            }
            if (common == best && common > 0)
            {
                candidates.Add(c);
            }
        }
        return (full, best, candidates);
    }

    /// <summary>A match's recency: one tick for the matched blocks, when anything matched.</summary>
    public void TouchMatch(IEnumerable<int> full, int partial)
    {
        var blocks = full.Concat(partial >= 0 ? [partial] : Array.Empty<int>()).ToList();
        if (blocks.Count == 0)
        {
            return;
        }
        long tick = ++Clock;
        foreach (int b in blocks)
        {
            LastUse[b] = tick;
        }
    }

    public void Retain(IReadOnlyList<int> blocks)
    {
        long tick = ++Clock;
        foreach (int b in blocks)
        {
            RefCount[b]++;
            LastUse[b] = tick;
        }
    }

    public void Release(IReadOnlyList<int> blocks)
    {
        long tick = ++Clock;
        foreach (int b in blocks)
        {
            RefCount[b]--;
            LastUse[b] = tick;
        }
    }

    /// <summary>
    /// Checks an allocation the manager made: first as many free blocks as there are (any of them), then evictions in
    /// exactly least-recently-used order among idle leaves (ties by block id). Applies it.
    /// </summary>
    public void Allocate(IReadOnlyList<int> got)
    {
        int fromFree = Math.Min(got.Count, FreeBlocks);
        Assert.Equal(got.Count, got.Distinct().Count());
        for (int i = 0; i < got.Count; i++)
        {
            int b = got[i];
            if (i < fromFree)
            {
                Assert.True(IsFree(b), $"allocation {i} took block {b}, which is not free while free blocks remain");
            }
            else
            {
                int victim = Nodes.Keys.Where(c => RefCount[c] == 0 && !Children(c).Any())
                    .OrderBy(c => LastUse[c]).ThenBy(c => c).First();
                Assert.Equal(victim, b);
                Nodes.Remove(b);
                Evictions++;
            }
            RefCount[b] = 1;
        }
    }

    /// <summary>The registration rules of the brief, written plainly; throws where the manager must throw.</summary>
    public void Register(int[] tokens, IReadOnlyList<int> blocks)
    {
        int needed = (tokens.Length + BlockSize - 1) / BlockSize;
        if (blocks.Count < needed)
        {
            throw new ArgumentException("too few blocks");
        }
        if (blocks.Take(needed).Any(b => RefCount[b] == 0))
        {
            throw new InvalidOperationException("unreferenced block");
        }
        long tick = ++Clock;
        int parent = Root;
        for (int i = 0; i < needed; i++)
        {
            int b = blocks[i];
            int[] content = tokens[(i * BlockSize)..Math.Min(tokens.Length, (i + 1) * BlockSize)];
            Nodes.TryGetValue(b, out Node? own);
            if (content.Length == BlockSize)
            {
                int existing = Children(parent).Where(c => Nodes[c].Tokens.SequenceEqual(content)).DefaultIfEmpty(-1).Single();
                if (existing == b)
                {
                    LastUse[b] = tick;
                    parent = b;
                    continue;
                }
                if (own is not null)
                {
                    if (own.Parent != parent || own.Tokens.Length == BlockSize || !content.AsSpan().StartsWith(own.Tokens))
                    {
                        throw new InvalidOperationException("misplaced");
                    }
                    if (existing >= 0)
                    {
                        Nodes.Remove(b);
                    }
                    else
                    {
                        own.Tokens = content;
                        Extensions++;
                        DropShadowed(b);
                        LastUse[b] = tick;
                        parent = b;
                        continue;
                    }
                }
                if (existing >= 0)
                {
                    Duplicates++;
                    LastUse[existing] = tick;
                    parent = existing;
                    continue;
                }
                Nodes[b] = new Node(parent, content);
                DropShadowed(b);
                LastUse[b] = tick;
                parent = b;
            }
            else
            {
                if (own is not null)
                {
                    if (own.Parent == parent && own.Tokens.AsSpan().StartsWith(content))
                    {
                        LastUse[b] = tick;
                        return;
                    }
                    if (own.Parent != parent || own.Tokens.Length == BlockSize || !content.AsSpan().StartsWith(own.Tokens))
                    {
                        throw new InvalidOperationException("misplaced");
                    }
                }
                if (Children(parent).Any(c => Nodes[c].Tokens.AsSpan().StartsWith(content)))
                {
                    return;
                }
                if (own is not null)
                {
                    own.Tokens = content;
                    Extensions++;
                }
                else
                {
                    Nodes[b] = new Node(parent, content);
                }
                DropShadowed(b);
                LastUse[b] = tick;
            }
        }
    }

    private void DropShadowed(int b)
    {
        Node node = Nodes[b];
        foreach (int s in Children(node.Parent).ToList())
        {
            int[] t = Nodes[s].Tokens;
            if (s != b && RefCount[s] == 0 && t.Length < node.Tokens.Length && node.Tokens.AsSpan().StartsWith(t))
            {
                Nodes.Remove(s);
                ShadowDrops++;
            }
        }
    }
}
