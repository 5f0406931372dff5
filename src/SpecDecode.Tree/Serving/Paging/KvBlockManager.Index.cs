using System.Runtime.InteropServices;

namespace SpecDecode.Tree;

// The prefix index: a radix tree whose nodes are blocks. A node's key is its own content (B tokens for a full node,
// 1 .. B-1 for a partial node, always a leaf) under its parent; the root is the id BlockCount. Full children are found
// by exact content in one hash set keyed by (parent, content); every child is also on its parent's list of children
// that start with the same token, for the longest-common-prefix search of a partial match.
internal sealed partial class KvBlockManager
{
    private const int Unregistered = -1;

    private readonly int _root;
    private readonly int[] _parent;
    private readonly int[] _length;
    private readonly int[] _tokens;
    private readonly int[] _childCount;
    private readonly int[] _busyChildren;
    private readonly int[] _nextSibling;
    private readonly int[] _prevSibling;
    private readonly int[] _fullChildHint;
    private readonly HashSet<int> _fullChildren;
    private readonly HashSet<int>.AlternateLookup<ChildContent> _fullLookup;
    private readonly Dictionary<long, int> _firstTokenHeads;
    private readonly List<int> _path = [];
    private int _registered;

    /// <summary>Whether <paramref name="block"/> is a node of the prefix index.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a block id of this pool.</exception>
    public bool IsRegistered(int block)
    {
        CheckBlock(block);
        return _parent[block] != Unregistered;
    }

    /// <summary>The tokens the index records for <paramref name="block"/> (its first positions); empty when not registered.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a block id of this pool.</exception>
    public ReadOnlySpan<int> RegisteredTokens(int block)
    {
        CheckBlock(block);
        return _tokens.AsSpan(block * BlockSize, _length[block]);
    }

    /// <summary>
    /// Finds the longest cached prefix of <paramref name="tokens"/>: the chain of full blocks matched exactly from the
    /// root, then, among the children of the chain's last node (full or partial), the one with the longest common prefix
    /// with the remaining tokens, when that is at least one token (a copy-on-write match; also when fewer than B tokens
    /// remain and a full child starts with all of them). Changes no reference count; marks the matched blocks as
    /// recently used. O(matched tokens + B x children sharing the next token).
    /// </summary>
    /// <param name="tokens">The sequence's tokens from position 0.</param>
    /// <param name="maxTokens">A cap on the match (callers pass the prompt length - 1 so that one token is computed).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTokens"/> is negative.</exception>
    public PrefixMatch Match(ReadOnlySpan<int> tokens, int maxTokens = int.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        int limit = Math.Min(tokens.Length, maxTokens);
        int node = _root, position = 0;
        _path.Clear();
        int child;
        while (limit - position >= BlockSize && (child = FullChild(node, tokens.Slice(position, BlockSize))) != NoBlock)
        {
            _path.Add(child);
            node = child;
            position += BlockSize;
        }
        int partial = NoBlock, partialTokens = 0;
        if (position < limit)
        {
            ReadOnlySpan<int> rest = tokens[position..limit];
            for (int c = FirstChild(node, rest[0]); c != NoBlock; c = _nextSibling[c])
            {
                int common = Content(c).CommonPrefixLength(rest);
                if (common > partialTokens)
                {
                    (partial, partialTokens) = (c, common);
                }
            }
        }
        if (_path.Count == 0 && partialTokens == 0)
        {
            return PrefixMatch.None(BlockSize);
        }
        long tick = ++_clock;
        foreach (int b in _path)
        {
            Touch(b, tick);
        }
        if (partial != NoBlock)
        {
            Touch(partial, tick);
        }
        return new PrefixMatch([.. _path], partial, partialTokens, BlockSize);
    }

    /// <summary>
    /// Records a sequence's content in the index: <paramref name="blocks"/>[i] holds
    /// <paramref name="tokens"/>[i*B .. min((i+1)*B, tokens.Length)). Walking from the root, a full block follows the
    /// existing child with its content (when that child is another block, this one stays out of the index: a duplicate)
    /// or becomes that child. The last, partial block adds nothing when a child already starts with its tokens; extends
    /// its own node in place when it is already the partial leaf there (the sequence grew since it last registered);
    /// else becomes a new partial leaf. Idle partial leaves whose tokens a new or grown node starts with are freed.
    /// Reference counts never change; the walked blocks count as used now.
    /// </summary>
    /// <param name="tokens">The sequence's committed tokens from position 0 (never rejected drafts).</param>
    /// <param name="blocks">Its block table; at least ceil(tokens / B) entries, the rest ignored. Every block used must
    /// be referenced (the caller holds it).</param>
    /// <exception cref="ArgumentException">Fewer blocks than the tokens need.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A block id out of range (nothing changed).</exception>
    /// <exception cref="InvalidOperationException">A block that is not referenced (nothing changed); or a block already
    /// in the index under another history or with other tokens (the blocks before it stay registered): a block table
    /// that lists a block at two places, or a sequence that rewrote committed positions.</exception>
    public void Register(ReadOnlySpan<int> tokens, ReadOnlySpan<int> blocks)
    {
        int needed = (int)(((long)tokens.Length + BlockSize - 1) / BlockSize);
        if (blocks.Length < needed)
        {
            throw new ArgumentException(
                $"{tokens.Length} tokens need {needed} blocks of {BlockSize} tokens; the block table has {blocks.Length}.", nameof(blocks));
        }
        for (int i = 0; i < needed; i++)
        {
            int b = blocks[i];
            if ((uint)b >= (uint)BlockCount)
            {
                throw new ArgumentOutOfRangeException(nameof(blocks), b, $"Block ids are 0 .. {BlockCount - 1}.");
            }
            if (_refCount[b] == 0)
            {
                throw new InvalidOperationException(
                    $"Block {b} (block {i} of the sequence) is not referenced: register a sequence's blocks while it holds them, before releasing them.");
            }
        }
        long tick = ++_clock;
        int node = _root;
        for (int i = 0; i < needed; i++)
        {
            int start = i * BlockSize;
            ReadOnlySpan<int> content = tokens.Slice(start, Math.Min(BlockSize, tokens.Length - start));
            if (content.Length == BlockSize)
            {
                node = RegisterFull(node, blocks[i], content, tick);
            }
            else
            {
                RegisterPartial(node, blocks[i], content, tick);
            }
        }
    }

    /// <summary>Registers one full block under <paramref name="node"/>; returns the node the walk continues from.</summary>
    private int RegisterFull(int node, int b, ReadOnlySpan<int> content, long tick)
    {
        if (_parent[b] == node && _length[b] == BlockSize && Content(b).SequenceEqual(content))
        {
            // Already this very child (a shared or re-registered block): no hashing needed.
            Touch(b, tick);
            return b;
        }
        int existing = FullChild(node, content); // not b: b would have been found above
        bool found = existing != NoBlock;
        if (_parent[b] != Unregistered)
        {
            // Only this node's partial leaf for the same block may change: the sequence filled it since registering.
            if (_parent[b] != node || _length[b] == BlockSize || !content.StartsWith(Content(b)))
            {
                throw Misplaced(b, content);
            }
            if (found)
            {
                Unlink(b);
            }
            else
            {
                SetContent(b, content);
                _fullChildren.Add(b);
                _fullChildHint[node] = b;
                DropShadowedPartials(b);
                Touch(b, tick);
                return b;
            }
        }
        if (found)
        {
            Touch(existing, tick);
            return existing;
        }
        AddChild(node, b, content);
        DropShadowedPartials(b);
        Touch(b, tick);
        return b;
    }

    /// <summary>Registers the last block of a sequence, holding 1 .. B-1 tokens, under <paramref name="node"/>.</summary>
    private void RegisterPartial(int node, int b, ReadOnlySpan<int> content, long tick)
    {
        bool registered = _parent[b] != Unregistered;
        if (registered)
        {
            ReadOnlySpan<int> old = Content(b);
            if (_parent[b] == node && old.StartsWith(content))
            {
                Touch(b, tick);
                return;
            }
            if (_parent[b] != node || old.Length == BlockSize || !content.StartsWith(old))
            {
                throw Misplaced(b, content);
            }
        }
        for (int c = FirstChild(node, content[0]); c != NoBlock; c = _nextSibling[c])
        {
            if (Content(c).StartsWith(content))
            {
                return;
            }
        }
        if (registered)
        {
            SetContent(b, content);
        }
        else
        {
            AddChild(node, b, content);
        }
        DropShadowedPartials(b);
        Touch(b, tick);
    }

    /// <summary>Adds referenced block <paramref name="b"/> as a child of <paramref name="node"/> holding <paramref name="content"/>.</summary>
    private void AddChild(int node, int b, ReadOnlySpan<int> content)
    {
        _parent[b] = node;
        SetContent(b, content);
        if (content.Length == BlockSize)
        {
            if (!_fullChildren.Add(b))
            {
                throw new InvalidOperationException($"KV block manager corrupted: node {node} already has a child with block {b}'s tokens.");
            }
            _fullChildHint[node] = b;
        }
        long key = SiblingKey(node, content[0]);
        if (_firstTokenHeads.TryGetValue(key, out int head))
        {
            _prevSibling[head] = b;
            _nextSibling[b] = head;
        }
        _firstTokenHeads[key] = b;
        _childCount[node]++;
        _registered++;
        PropagateBusy(node, +1);
    }

    /// <summary>Removes leaf <paramref name="b"/> from the index (its parent may become an evictable leaf).</summary>
    private void Unlink(int b)
    {
        int p = _parent[b];
        if (_childCount[b] != 0)
        {
            throw new InvalidOperationException($"KV block manager corrupted: block {b} left the index with {_childCount[b]} children.");
        }
        if (_length[b] == BlockSize && !_fullChildren.Remove(b))
        {
            throw new InvalidOperationException($"KV block manager corrupted: full block {b} was not in the child table.");
        }
        int prev = _prevSibling[b], next = _nextSibling[b];
        if (prev != NoBlock)
        {
            _nextSibling[prev] = next;
        }
        else
        {
            long key = SiblingKey(p, _tokens[b * BlockSize]);
            if (next == NoBlock)
            {
                _firstTokenHeads.Remove(key);
            }
            else
            {
                _firstTokenHeads[key] = next;
            }
        }
        if (next != NoBlock)
        {
            _prevSibling[next] = prev;
        }
        _prevSibling[b] = _nextSibling[b] = NoBlock;
        bool busy = IsBusy(b);
        _parent[b] = Unregistered;
        _length[b] = 0;
        _childCount[p]--;
        _registered--;
        if (busy)
        {
            PropagateBusy(p, -1);
        }
        else
        {
            _idleCached--;
            if (p != _root && IsEvictable(p))
            {
                Enqueue(p);
            }
        }
    }

    /// <summary>Frees the idle partial siblings of <paramref name="b"/> whose tokens <paramref name="b"/> starts with.</summary>
    private void DropShadowedPartials(int b)
    {
        ReadOnlySpan<int> content = Content(b);
        int next;
        for (int s = FirstChild(_parent[b], content[0]); s != NoBlock; s = next)
        {
            next = _nextSibling[s];
            if (s != b && _refCount[s] == 0 && _length[s] < content.Length && content.StartsWith(Content(s)))
            {
                Unlink(s);
                _free[s] = true;
                _freeList.Push(s);
            }
        }
    }

    private void SetContent(int b, ReadOnlySpan<int> content)
    {
        content.CopyTo(_tokens.AsSpan(b * BlockSize, BlockSize));
        _length[b] = content.Length;
    }

    private ReadOnlySpan<int> Content(int b) => new(_tokens, b * BlockSize, _length[b]);

    /// <summary>
    /// The full child of <paramref name="node"/> holding <paramref name="content"/>, or <see cref="NoBlock"/>. Tries the
    /// child last found or added under the node first (a conversation's chain has one child a node, so a long match
    /// mostly skips hashing; the hint is checked like any candidate, so a stale one costs one compare), then the table.
    /// </summary>
    private int FullChild(int node, ReadOnlySpan<int> content)
    {
        int hint = _fullChildHint[node];
        if (hint != NoBlock && _parent[hint] == node && _length[hint] == BlockSize && Content(hint).SequenceEqual(content))
        {
            return hint;
        }
        if (!_fullLookup.TryGetValue(new ChildContent(node, content), out int child))
        {
            return NoBlock;
        }
        _fullChildHint[node] = child;
        return child;
    }

    private int FirstChild(int node, int token) =>
        _firstTokenHeads.TryGetValue(SiblingKey(node, token), out int head) ? head : NoBlock;

    private static long SiblingKey(int node, int token) => ((long)node << 32) | (uint)token;

    private InvalidOperationException Misplaced(int b, ReadOnlySpan<int> content) => new(
        $"Block {b} is already in the prefix index under another history or with other tokens " +
        $"({_length[b]} tokens registered, {content.Length} now): a block table must not list a block twice, and a " +
        "sequence must not rewrite committed positions.");

    /// <summary>A child's key given by its parent and a span of tokens: looks full children up without copying.</summary>
    private readonly ref struct ChildContent(int parent, ReadOnlySpan<int> content)
    {
        public int Parent { get; } = parent;

        public ReadOnlySpan<int> Content { get; } = content;
    }

    /// <summary>Hashes and compares full nodes by (parent, content), reading both from the manager's arrays.</summary>
    private sealed class FullChildComparer(KvBlockManager owner) : IEqualityComparer<int>, IAlternateEqualityComparer<ChildContent, int>
    {
        public bool Equals(int x, int y) =>
            x == y || (owner._parent[x] == owner._parent[y] && owner.Content(x).SequenceEqual(owner.Content(y)));

        public int GetHashCode(int block) => Hash(owner._parent[block], owner.Content(block));

        public bool Equals(ChildContent key, int block) =>
            owner._parent[block] == key.Parent && key.Content.SequenceEqual(owner.Content(block));

        public int GetHashCode(ChildContent key) => Hash(key.Parent, key.Content);

        public int Create(ChildContent key) =>
            throw new NotSupportedException("Full children are added by block id, never from a span.");

        private static int Hash(int parent, ReadOnlySpan<int> content)
        {
            var hash = new HashCode();
            hash.Add(parent);
            hash.AddBytes(MemoryMarshal.AsBytes(content));
            return hash.ToHashCode();
        }
    }
}
