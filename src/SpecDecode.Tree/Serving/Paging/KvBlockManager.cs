using System.Diagnostics;
using System.Numerics;

namespace SpecDecode.Tree;

/// <summary>
/// The bookkeeping of a paged KV cache: a pool of <see cref="BlockCount"/> blocks of <see cref="BlockSize"/> token
/// positions, their reference counts, and a prefix index over their contents so that a new sequence whose tokens begin
/// like a cached one shares those blocks instead of computing them again. Pure host code: it hands out block ids, the
/// KV cache owns the memory they name.
/// </summary>
/// <remarks>
/// <para>Each block is in exactly one state:</para>
/// <list type="bullet">
/// <item><b>free</b>: never used, or released while not in the index;</item>
/// <item><b>referenced</b>: <see cref="RefCount"/> &gt;= 1, the number of running sequences whose block table lists it
/// (it may also be in the index: a running sequence's prompt blocks are registered right after its prefill);</item>
/// <item><b>idle cached</b>: in the index, referenced by no sequence, and with no referenced block below it in the
/// index; evictable (least recently used leaf first);</item>
/// <item><b>held idle</b>: in the index and referenced by no sequence, but above a referenced block (after a duplicate
/// registration, see <see cref="Register"/>); it becomes idle cached when the blocks below it are released.</item>
/// </list>
/// <para>The index is a radix tree whose nodes are blocks (SGLang's RadixAttention, Zheng et al. 2024, with one block
/// per node as in vLLM's prefix caching): a node's key is its own content under its parent, the path from the root
/// carries the history the block's keys and values depend on. docs/kv-cache.md, "Block manager", explains the rules and
/// why.</para>
/// <para>Not thread-safe: the engine's scheduler thread owns it.</para>
/// </remarks>
internal sealed partial class KvBlockManager
{
    /// <summary>"No block": a partial match's block when there is none, and the end of a sibling list.</summary>
    public const int NoBlock = -1;

    /// <summary>The largest block size accepted.</summary>
    public const int MaxBlockSize = 4096;

    private readonly int[] _refCount;
    private readonly bool[] _free;
    private readonly Stack<int> _freeList;
    private readonly long[] _lastUse;
    private readonly PriorityQueue<int, (long Tick, int Block)> _evictable;
    private long _clock;
    private int _referenced;
    private int _idleCached;

    /// <summary>Creates a pool of <paramref name="blockCount"/> free blocks of <paramref name="blockSize"/> tokens.</summary>
    /// <param name="blockCount">Blocks in the pool, at least 1.</param>
    /// <param name="blockSize">Token positions per block: a power of two from 1 to <see cref="MaxBlockSize"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A count below 1, a block size that is not a power of two in range,
    /// or more positions in all than one array can index.</exception>
    public KvBlockManager(int blockCount, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockCount, 1);
        if (blockSize < 1 || blockSize > MaxBlockSize || !BitOperations.IsPow2(blockSize))
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize,
                $"The block size must be a power of two from 1 to {MaxBlockSize} tokens (vLLM uses 16).");
        }
        if ((long)blockCount * blockSize > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(blockCount), blockCount,
                $"{blockCount} blocks of {blockSize} tokens exceed {Array.MaxLength} positions; use fewer or larger blocks.");
        }

        BlockCount = blockCount;
        BlockSize = blockSize;
        _refCount = new int[blockCount];
        _free = new bool[blockCount];
        _freeList = new Stack<int>(blockCount);
        for (int b = blockCount - 1; b >= 0; b--)
        {
            _free[b] = true;
            _freeList.Push(b);
        }
        _lastUse = new long[blockCount];
        _evictable = new PriorityQueue<int, (long, int)>();
        _root = blockCount;
        _parent = new int[blockCount];
        Array.Fill(_parent, Unregistered);
        _length = new int[blockCount];
        _tokens = new int[blockCount * blockSize];
        _childCount = new int[blockCount + 1];
        _busyChildren = new int[blockCount];
        _nextSibling = new int[blockCount];
        _prevSibling = new int[blockCount];
        Array.Fill(_nextSibling, NoBlock);
        Array.Fill(_prevSibling, NoBlock);
        _fullChildHint = new int[blockCount + 1];
        Array.Fill(_fullChildHint, NoBlock);
        _fullChildren = new HashSet<int>(new FullChildComparer(this));
        _fullLookup = _fullChildren.GetAlternateLookup<ChildContent>();
        _firstTokenHeads = [];
    }

    /// <summary>Token positions per block (B).</summary>
    public int BlockSize { get; }

    /// <summary>Blocks in the pool.</summary>
    public int BlockCount { get; }

    /// <summary>Blocks in the free state (neither referenced nor cached).</summary>
    public int FreeBlocks => _freeList.Count;

    /// <summary>Cached blocks that no running sequence needs: evictable, now or once the idle blocks below them go.</summary>
    public int IdleCachedBlocks => _idleCached;

    /// <summary>What <see cref="TryAllocate"/> can hand out: <see cref="FreeBlocks"/> + <see cref="IdleCachedBlocks"/>.</summary>
    public int AvailableBlocks => _freeList.Count + _idleCached;

    /// <summary>Blocks referenced by at least one sequence.</summary>
    public int ReferencedBlocks => _referenced;

    /// <summary>Blocks in the prefix index (referenced or not).</summary>
    public int RegisteredBlocks => _registered;

    /// <summary>The number of sequences whose block table lists <paramref name="block"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a block id of this pool.</exception>
    public int RefCount(int block)
    {
        CheckBlock(block);
        return _refCount[block];
    }

    /// <summary>
    /// Takes one reference on each block (a sequence lists it in its block table): blocks from a <see cref="Match"/>
    /// (shared), or, briefly, a partial match's block while it is copied. Idle cached blocks stop being evictable.
    /// Validated first: on an exception nothing changed.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A block id out of range.</exception>
    /// <exception cref="InvalidOperationException">A free block: it holds nothing to share (retain matched blocks right
    /// after <see cref="Match"/>, before anything allocates).</exception>
    public void Retain(ReadOnlySpan<int> blocks)
    {
        foreach (int b in blocks)
        {
            CheckBlock(b);
            if (_free[b])
            {
                throw new InvalidOperationException(
                    $"Block {b} is free, so it holds nothing to share: retain blocks from Match right after the match, " +
                    "before an allocation can evict them, and get new blocks from TryAllocate.");
            }
        }
        long tick = ++_clock;
        foreach (int b in blocks)
        {
            if (_refCount[b]++ == 0)
            {
                _referenced++;
                if (_busyChildren[b] == 0)
                {
                    // An idle cached node (only registered blocks are retained at 0) becomes busy, and so may its ancestors.
                    _idleCached--;
                    PropagateBusy(_parent[b], +1);
                }
            }
            _lastUse[b] = tick;
        }
    }

    /// <summary>
    /// Allocates <paramref name="count"/> private blocks (reference count 1, not in the index) and appends them to
    /// <paramref name="into"/>: free blocks first, then cached ones evicted least recently used leaf first (a node whose
    /// last child goes becomes an evictable leaf in turn; a referenced block is never evicted). All or nothing.
    /// </summary>
    /// <returns>False, with nothing changed, when fewer than <paramref name="count"/> blocks are available.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="into"/> is null.</exception>
    public bool TryAllocate(int count, List<int> into)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentNullException.ThrowIfNull(into);
        if (count > AvailableBlocks)
        {
            return false;
        }
        into.EnsureCapacity(into.Count + count);
        for (int i = 0; i < count; i++)
        {
            int b;
            if (_freeList.Count > 0)
            {
                b = _freeList.Pop();
                _free[b] = false;
            }
            else
            {
                b = EvictLeastRecentlyUsed();
            }
            _refCount[b] = 1;
            _referenced++;
            into.Add(b);
        }
        return true;
    }

    /// <summary>
    /// Drops one reference. At zero a block in the index becomes idle cached (most recently used), any other block free.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a block id of this pool.</exception>
    /// <exception cref="InvalidOperationException">The block is not referenced (released more often than retained).</exception>
    public void Release(int block)
    {
        CheckBlock(block);
        if (_refCount[block] == 0)
        {
            throw NotReferenced(block);
        }
        ReleaseOne(block, ++_clock);
    }

    /// <summary>
    /// Drops one reference on each block (a sequence's whole block table), as <see cref="Release(int)"/> does, all
    /// with the same recency. Validated first: on an exception nothing changed.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A block id out of range.</exception>
    /// <exception cref="InvalidOperationException">A block would be released more often than it is referenced.</exception>
    public void Release(ReadOnlySpan<int> blocks)
    {
        // Validate by taking the references away, then give them back: a block listed twice needs two references.
        int taken = 0;
        Exception? error = null;
        for (; taken < blocks.Length; taken++)
        {
            int b = blocks[taken];
            if ((uint)b >= (uint)BlockCount)
            {
                error = new ArgumentOutOfRangeException(nameof(blocks), b, $"Block ids are 0 .. {BlockCount - 1}.");
                break;
            }
            if (_refCount[b] == 0)
            {
                error = NotReferenced(b);
                break;
            }
            _refCount[b]--;
        }
        for (int i = 0; i < taken; i++)
        {
            _refCount[blocks[i]]++;
        }
        if (error is not null)
        {
            throw error;
        }
        long tick = ++_clock;
        foreach (int b in blocks)
        {
            ReleaseOne(b, tick);
        }
    }

    private void ReleaseOne(int b, long tick)
    {
        _lastUse[b] = tick;
        if (--_refCount[b] > 0)
        {
            return;
        }
        _referenced--;
        if (_parent[b] == Unregistered)
        {
            _free[b] = true;
            _freeList.Push(b);
        }
        else if (_busyChildren[b] == 0)
        {
            _idleCached++;
            PropagateBusy(_parent[b], -1);
            if (_childCount[b] == 0)
            {
                Enqueue(b);
            }
        }
    }

    /// <summary>Referenced, or above a referenced block in the index: not evictable.</summary>
    private bool IsBusy(int b) => _refCount[b] > 0 || _busyChildren[b] > 0;

    private bool IsEvictable(int b) => _parent[b] != Unregistered && _refCount[b] == 0 && _childCount[b] == 0;

    /// <summary>
    /// A child of <paramref name="parent"/> became busy (+1) or stopped being busy (-1): update the busy-children counts
    /// up the tree while a node's own busy state flips. O(1) when a chain is retained or released in order.
    /// </summary>
    private void PropagateBusy(int parent, int delta)
    {
        for (int p = parent; p != _root; p = _parent[p])
        {
            bool was = IsBusy(p);
            _busyChildren[p] += delta;
            if (IsBusy(p) == was)
            {
                return;
            }
            if (delta > 0)
            {
                _idleCached--;
            }
            else
            {
                _idleCached++;
                if (_childCount[p] == 0)
                {
                    Enqueue(p);
                }
            }
        }
    }

    /// <summary>Records a use of <paramref name="b"/> at <paramref name="tick"/>, keeping its place in the eviction order.</summary>
    private void Touch(int b, long tick)
    {
        _lastUse[b] = tick;
        if (IsEvictable(b))
        {
            Enqueue(b);
        }
    }

    /// <summary>
    /// Queues an evictable leaf under its last use. Entries are never removed: one is stale once its block is no longer
    /// an evictable leaf or was used again (its tick differs), and is skipped when it comes up. The queue is rebuilt
    /// from the blocks when stale entries could outnumber live ones, so it stays O(blocks).
    /// </summary>
    private void Enqueue(int b)
    {
        Debug.Assert(IsEvictable(b), $"block {b} queued for eviction is not an idle leaf");
        if (_evictable.Count < 2 * BlockCount + 64)
        {
            _evictable.Enqueue(b, (_lastUse[b], b));
            return;
        }
        _evictable.Clear();
        for (int i = 0; i < BlockCount; i++)
        {
            if (IsEvictable(i))
            {
                _evictable.Enqueue(i, (_lastUse[i], i));
            }
        }
    }

    private int EvictLeastRecentlyUsed()
    {
        while (_evictable.TryDequeue(out int b, out var entry))
        {
            if (IsEvictable(b) && entry.Tick == _lastUse[b])
            {
                Unlink(b);
                return b;
            }
        }
        throw new InvalidOperationException(
            $"KV block manager corrupted: {_idleCached} blocks count as idle cached but none is an evictable leaf. Run CheckIntegrity.");
    }

    private void CheckBlock(int block)
    {
        if ((uint)block >= (uint)BlockCount)
        {
            throw new ArgumentOutOfRangeException(nameof(block), block, $"Block ids are 0 .. {BlockCount - 1}.");
        }
    }

    private static InvalidOperationException NotReferenced(int block) => new(
        $"Block {block} is not referenced: release each block once per Retain or TryAllocate that gave it to the sequence.");
}
