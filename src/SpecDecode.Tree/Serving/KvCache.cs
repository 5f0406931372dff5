using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The paged key/value cache, and the one owner of its layout: a pool of <see cref="BlockCount"/> blocks of
/// <see cref="BlockSize"/> token rows, one tensor [layers, 2, (blocks + 1) × block size, kv heads, head size] (vLLM's
/// [blocks, block size, kv heads, head size] per layer and k/v, with blocks and rows flattened into one row index), and per
/// sequence slot a block table: position p of slot s lives in row <c>table[s][p / BlockSize] × BlockSize + p % BlockSize</c>.
/// The last block is scratch: padding rows of a ragged batch write there, unused table entries point there, so nothing
/// ever touches another sequence's rows. Everything else asks this class for rows, views, tables or pointers.
/// </summary>
/// <remarks>
/// <para>Blocks are reference counted by <see cref="KvBlockManager"/>, which also keeps the prefix index: when a sequence
/// is released (and right after a prefill) its content is registered, so a later sequence whose tokens begin the same way
/// shares those blocks (<see cref="ReusePrefix"/>) instead of recomputing them. A block matched only in part is copied
/// first (copy-on-write), so a sequence only ever writes rows at or past its cached length, which lie in blocks it owns
/// alone: tree rows, rejected drafts and the compaction after acceptance never reach a shared block.</para>
/// <para>Lengths and contents live on the host (the host decides every step's shape anyway); the block tables live on
/// both sides, the device copy refreshed by <see cref="SyncTables"/> before a step when they changed.</para>
/// </remarks>
internal sealed class KvCache : IDisposable
{
    private readonly Tensor _data;
    private readonly int[] _lengths;
    private readonly List<int>[] _blocks;
    private readonly List<int>?[] _content; // the tokens of rows 0 .. length-1, or null where unknown
    private readonly int[] _hostTables;
    private readonly Tensor _tables;
    private readonly KvBlockManager _manager;
    private readonly int _shift;
    private readonly List<int> _allocated = [];
    private bool _tablesDirty = true;
    // Scalars of the row arithmetic, made once: a temporary Scalar that the garbage collector finalizes while libtorch
    // still reads it is a use after free (seen as a libtorch "toLong" assertion under parallel tests). Zero is
    // TorchScalars.Zero.
    private readonly Scalar _lastPosition, _blockSizeScalar, _scratchRow;

    public KvCache(ModelConfig config, int slots, int capacity, int blockSize, int blockCount, bool prefixCaching, ScalarType dtype, Device device)
    {
        if (blockSize < 1 || (blockSize & (blockSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "The KV block size must be a power of two.");
        }
        Slots = slots;
        Capacity = capacity;
        BlockSize = blockSize;
        BlockCount = blockCount;
        PrefixCaching = prefixCaching;
        _shift = System.Numerics.BitOperations.Log2((uint)blockSize);
        BlocksPerSequence = (capacity + blockSize - 1) / blockSize;
        _lengths = new int[slots];
        _blocks = new List<int>[slots];
        _content = new List<int>?[slots];
        for (int s = 0; s < slots; s++)
        {
            _blocks[s] = [];
            _content[s] = [];
        }
        _manager = new KvBlockManager(blockCount, blockSize);
        _data = zeros([config.LayerCount, 2, (blockCount + 1L) * blockSize, config.KeyValueHeadCount, config.HeadDim], dtype, device);
        _hostTables = new int[slots * BlocksPerSequence];
        Array.Fill(_hostTables, blockCount);
        _tables = full([slots, BlocksPerSequence], blockCount, ScalarType.Int32, device);
        _lastPosition = ((long)BlocksPerSequence * blockSize - 1).ToScalar();
        _blockSizeScalar = ((long)blockSize).ToScalar();
        _scratchRow = ((long)blockCount * blockSize).ToScalar();
    }

    /// <summary>Sequence slots (0 .. Slots-1): sequences the cache serves at once.</summary>
    public int Slots { get; }

    /// <summary>Tokens one sequence holds at most (prompt, generated tokens and one step's rows).</summary>
    public int Capacity { get; }

    /// <summary>Token rows per block (a power of two).</summary>
    public int BlockSize { get; }

    /// <summary>Blocks in the pool (the scratch block not counted).</summary>
    public int BlockCount { get; }

    /// <summary>Entries of one slot's block table: enough blocks for <see cref="Capacity"/> tokens.</summary>
    public int BlocksPerSequence { get; }

    /// <summary>Whether released content is registered for reuse (<see cref="ReusePrefix"/>).</summary>
    public bool PrefixCaching { get; }

    /// <summary>The block bookkeeping: references, the prefix index, eviction.</summary>
    public KvBlockManager Blocks => _manager;

    /// <summary>The whole pool [layers, 2, rows, kv heads, head size] (for the kernels and the scripted layers).</summary>
    public Tensor Data => _data;

    /// <summary>The first row of the scratch block, where padding rows write.</summary>
    public long ScratchRow => (long)BlockCount * BlockSize;

    /// <summary><see cref="ScratchRow"/> as a Scalar held for the cache's lifetime (for <c>full_like</c> and the like: a
    /// temporary Scalar can be finalized while libtorch still reads it).</summary>
    public Scalar ScratchRowScalar => _scratchRow;

    /// <summary>Every slot's length (read-only use).</summary>
    public int[] Lengths => _lengths;

    /// <summary>The block tables on the device, [slots, <see cref="BlocksPerSequence"/>] int32 (entries past a sequence's
    /// blocks name the scratch block); current after <see cref="SyncTables"/>.</summary>
    public Tensor Tables => _tables;

    /// <summary>log2 of <see cref="BlockSize"/>.</summary>
    public int BlockShift => _shift;

    public int Length(int slot) => _lengths[slot];

    /// <summary>How a kernel addresses the pool: per layer and k/v a base pointer, rows and kv heads apart by their
    /// strides (elements), and per slot a block table row (int32) on the device.</summary>
    public KernelAddressing Addressing
    {
        get
        {
            long[] stride = _data.stride(); // [layer, k/v, row, kv head, dim]
            return new KernelAddressing(DecodeKernels.DataPointer(_data), stride[0], stride[1], stride[2], stride[3],
                DecodeKernels.DataPointer(_tables), BlocksPerSequence, _shift, _data.element_size());
        }
    }

    /// <summary>Blocks a sequence of <paramref name="tokens"/> rows needs.</summary>
    public int BlocksFor(long tokens) => (int)((tokens + BlockSize - 1) >> _shift);

    /// <summary>The blocks <paramref name="slot"/> holds, in table order.</summary>
    public IReadOnlyList<int> BlocksOf(int slot) => _blocks[slot];

    /// <summary>The tokens cached for <paramref name="slot"/> (rows 0 .. length-1), or null where a benchmark set the
    /// length without tokens.</summary>
    public IReadOnlyList<int>? Content(int slot) => _content[slot];

    /// <summary>Whether <paramref name="slot"/> can hold <paramref name="tokens"/> rows after allocating what it lacks
    /// (counting blocks that eviction of unused cached prefixes would free).</summary>
    public bool CanReserve(int slot, long tokens) =>
        tokens <= Capacity && BlocksFor(tokens) - _blocks[slot].Count <= _manager.AvailableBlocks;

    /// <summary>Gives <paramref name="slot"/> blocks for rows 0 .. <paramref name="tokens"/>-1 (nothing when it has them).
    /// False, with nothing allocated, when the pool cannot.</summary>
    public bool TryReserve(int slot, long tokens)
    {
        if (tokens > Capacity)
        {
            return false;
        }
        int missing = BlocksFor(tokens) - _blocks[slot].Count;
        if (missing <= 0)
        {
            return true;
        }
        _allocated.Clear();
        if (!_manager.TryAllocate(missing, _allocated))
        {
            return false;
        }
        foreach (int block in _allocated)
        {
            _hostTables[slot * BlocksPerSequence + _blocks[slot].Count] = block;
            _blocks[slot].Add(block);
        }
        _tablesDirty = true;
        return true;
    }

    /// <summary><see cref="TryReserve"/>, throwing when the pool is exhausted.</summary>
    /// <exception cref="KvCacheExhaustedException">Not enough free or evictable blocks.</exception>
    public void Reserve(int slot, long tokens)
    {
        if (!TryReserve(slot, tokens))
        {
            int missing = BlocksFor(tokens) - _blocks[slot].Count;
            throw new KvCacheExhaustedException(
                $"Slot {slot} needs {missing} more KV blocks of {BlockSize} tokens for {tokens} tokens, but only {_manager.AvailableBlocks} of {BlockCount} are free or evictable; " +
                "finish or release other sequences first, or load the model with a larger TargetModelOptions.KvCacheTokens.");
        }
    }

    /// <summary>Advances <paramref name="slot"/>'s length by <paramref name="tokens"/>, whose rows the step just wrote
    /// (or moved) into place.</summary>
    public void Append(int slot, ReadOnlySpan<int> tokens)
    {
        _content[slot]?.AddRange(tokens);
        _lengths[slot] += tokens.Length;
    }

    /// <summary>Advances <paramref name="slot"/>'s length by <paramref name="count"/> rows whose tokens are not known
    /// (benchmarks that skip prefill): the sequence's content is not registered for reuse.</summary>
    public void AppendUnknown(int slot, int count)
    {
        _content[slot] = null;
        _lengths[slot] += count;
    }

    /// <summary>Rolls <paramref name="slot"/> back to <paramref name="length"/> rows; 0 releases the sequence
    /// (<see cref="Release"/>). Blocks past the new length go back to the pool.</summary>
    public void Truncate(int slot, int length)
    {
        if (length == 0)
        {
            Release(slot);
            return;
        }
        _lengths[slot] = length;
        List<int>? content = _content[slot];
        if (content is not null && content.Count > length)
        {
            content.RemoveRange(length, content.Count - length);
        }
        int keep = BlocksFor(length);
        List<int> blocks = _blocks[slot];
        for (int i = blocks.Count - 1; i >= keep; i--)
        {
            _manager.Release(blocks[i]);
            _hostTables[slot * BlocksPerSequence + i] = BlockCount;
            blocks.RemoveAt(i);
            _tablesDirty = true;
        }
    }

    /// <summary>Ends <paramref name="slot"/>'s sequence: its content is registered in the prefix index (with prefix caching
    /// on and the content known), its blocks released (those registered stay cached until evicted), its length 0.</summary>
    public void Release(int slot)
    {
        Register(slot);
        List<int> blocks = _blocks[slot];
        foreach (int block in blocks)
        {
            _manager.Release(block);
        }
        Array.Fill(_hostTables, BlockCount, slot * BlocksPerSequence, blocks.Count);
        _tablesDirty |= blocks.Count > 0;
        blocks.Clear();
        _lengths[slot] = 0;
        _content[slot] = [];
    }

    /// <summary>Registers <paramref name="slot"/>'s cached rows in the prefix index, so that other sequences can share
    /// them while this one runs (its rows before its length never change again). Where a full block of the same content
    /// is cached already, the slot adopts that block and its own copy goes back to the pool.</summary>
    public void Register(int slot)
    {
        if (!PrefixCaching || _content[slot] is not { Count: > 0 } content)
        {
            return;
        }
        Span<int> blocks = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_blocks[slot]);
        _manager.Register(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(content), blocks);
        Span<int> table = _hostTables.AsSpan(slot * BlocksPerSequence, blocks.Length);
        if (!table.SequenceEqual(blocks))
        {
            blocks.CopyTo(table);
            _tablesDirty = true;
        }
    }

    /// <summary>
    /// Starts the empty <paramref name="slot"/> from the longest cached prefix of <paramref name="tokens"/> (at most
    /// <paramref name="maxTokens"/> of them): whole matched blocks are shared, a block matched in part is copied into a new
    /// block of the slot's own. Returns the tokens reused (0 with prefix caching off, on a miss, or when the copy's block
    /// cannot be had); the slot's length is that.
    /// </summary>
    public int ReusePrefix(int slot, ReadOnlySpan<int> tokens, int maxTokens)
    {
        if (_lengths[slot] != 0 || _blocks[slot].Count != 0)
        {
            throw new InvalidOperationException($"Slot {slot} caches {_lengths[slot]} tokens; a prefix is reused only by an empty slot.");
        }
        if (!PrefixCaching || maxTokens <= 0)
        {
            return 0;
        }
        PrefixMatch match = _manager.Match(tokens, Math.Min(maxTokens, Capacity));
        if (match.IsEmpty)
        {
            return 0;
        }
        _manager.Retain(match.FullBlocks);
        List<int> blocks = _blocks[slot];
        foreach (int block in match.FullBlocks)
        {
            _hostTables[slot * BlocksPerSequence + blocks.Count] = block;
            blocks.Add(block);
        }
        int reused = match.FullBlocks.Length * BlockSize;
        if (match.PartialTokens > 0)
        {
            // Retain the source while allocating, so that eviction cannot take it for the copy's own block.
            _manager.Retain([match.PartialBlock]);
            _allocated.Clear();
            bool copied = _manager.TryAllocate(1, _allocated);
            if (copied)
            {
                CopyBlock(match.PartialBlock, _allocated[0]);
                _hostTables[slot * BlocksPerSequence + blocks.Count] = _allocated[0];
                blocks.Add(_allocated[0]);
                reused += match.PartialTokens;
            }
            _manager.Release(match.PartialBlock);
        }
        _tablesDirty = true;
        _lengths[slot] = reused;
        _content[slot] = [.. tokens[..reused]];
        return reused;
    }

    /// <summary>Copies every layer's rows of block <paramref name="source"/> into block <paramref name="target"/>.</summary>
    private void CopyBlock(int source, int target)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _data.narrow(2, (long)target * BlockSize, BlockSize).copy_(_data.narrow(2, (long)source * BlockSize, BlockSize));
    }

    /// <summary>Forgets every cached prefix no sequence uses (their blocks become free): benchmarks that compare runs
    /// from a cold cache on one model.</summary>
    public void DropCachedPrefixes()
    {
        _allocated.Clear();
        if (_manager.TryAllocate(_manager.AvailableBlocks, _allocated)) // takes the free blocks, then evicts every idle cached one
        {
            foreach (int block in _allocated)
            {
                _manager.Release(block);
            }
        }
    }

    /// <summary>Uploads the block tables when they changed since the last call (one copy).</summary>
    public void SyncTables()
    {
        if (!_tablesDirty)
        {
            return;
        }
        using var scope = NewDisposeScope();
        _tables.copy_(tensor(_hostTables, [Slots, BlocksPerSequence]));
        _tablesDirty = false;
    }

    /// <summary>The row of position <paramref name="position"/> of <paramref name="slot"/> (host side; the position must
    /// lie in a reserved block).</summary>
    public long Row(int slot, int position) =>
        ((long)_hostTables[slot * BlocksPerSequence + (position >> _shift)] << _shift) + (position & (BlockSize - 1));

    /// <summary>Rows [B, T] of positions [B, T] of the sequences in <paramref name="slots"/> [B] (device tensors, int64),
    /// through the device tables (<see cref="SyncTables"/> first). Positions past a sequence's blocks give scratch rows.</summary>
    public Tensor Rows(Tensor slots, Tensor positions)
    {
        Tensor table = _tables.index_select(0, slots).to(ScalarType.Int64);             // [B, blocks]
        Tensor block = table.gather(1, positions.clamp(TorchScalars.Zero, _lastPosition).floor_divide(_blockSizeScalar));
        return block.mul(_blockSizeScalar).Plus(positions.remainder(_blockSizeScalar));
    }

    /// <summary>Rows [B, keys] of positions 0 .. keys-1 of the sequences in <paramref name="slots"/> [B]: what attention
    /// reads (positions past a sequence's blocks give scratch rows, which the mask hides).</summary>
    public Tensor ReadRows(Tensor slots, long keys)
    {
        long b = slots.shape[0];
        using Scalar count = keys; // held for the call (TorchScalars)
        return Rows(slots, arange(count, ScalarType.Int64, slots.device).view(1, keys).expand(b, keys));
    }

    /// <summary>Writes one layer's keys and values [N, kv heads, head size] at <paramref name="rows"/> [N].</summary>
    public void Write(int layer, Tensor rows, Tensor keys, Tensor values)
    {
        using Tensor k = _data.select(0, layer).select(0, 0);
        using Tensor v = _data.select(0, layer).select(0, 1);
        k.index_copy_(0, rows, keys);
        v.index_copy_(0, rows, values);
    }

    /// <summary>One layer's keys and values at <paramref name="rows"/> [B, S], as [B, kv heads, S, head size] (copies).</summary>
    public (Tensor Keys, Tensor Values) Read(int layer, Tensor rows)
    {
        long b = rows.shape[0], s = rows.shape[1];
        using Tensor kAll = _data.select(0, layer).select(0, 0);
        using Tensor vAll = _data.select(0, layer).select(0, 1);
        Tensor flat = rows.view(-1);
        Tensor k = kAll.index_select(0, flat).view(b, s, kAll.shape[1], kAll.shape[2]).transpose(1, 2);
        Tensor v = vAll.index_select(0, flat).view(b, s, vAll.shape[1], vAll.shape[2]).transpose(1, 2);
        return (k, v);
    }

    /// <summary>
    /// SpecInfer's commit, on the device, for every layer at once: for each sequence b of <paramref name="slots"/> and
    /// d &lt; <paramref name="window"/>, position lengths[b] + d receives the entry at lengths[b] + entryAtDepth[b, d]. The
    /// accepted path's entries (root, then one per depth) end up right after the prefix; entries past the path copy onto
    /// themselves. Every row involved is at or past the sequence's length, so in blocks the sequence owns alone.
    /// </summary>
    public void MoveAccepted(Tensor slots, Tensor entryAtDepth, Tensor lengths, int window)
    {
        using var scope = NewDisposeScope();
        long b = entryAtDepth.shape[0];
        Tensor start = lengths.view(b, 1);
        using Scalar count = window; // held for the call (TorchScalars)
        Tensor source = Rows(slots, start.Plus(entryAtDepth.narrow(1, 0, window))).view(-1);
        Tensor target = Rows(slots, start.Plus(arange(count, ScalarType.Int64, lengths.device).view(1, window))).view(-1);
        Tensor moved = _data.index_select(2, source);
        _data.index_copy_(2, target, moved);
    }

    /// <summary>Every row of <paramref name="slot"/>'s positions 0 .. count-1, all layers: [layers, 2, kv heads, count,
    /// head size], on the CPU (tests compare ways of filling the cache).</summary>
    public Tensor SequenceRows(int slot, int start, int count)
    {
        using var scope = NewDisposeScope();
        long[] rows = Enumerable.Range(start, count).Select(p => Row(slot, p)).ToArray();
        return _data.index_select(2, tensor(rows, device: _data.device)).permute(0, 1, 3, 2, 4).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>Reserves and fills every slot with random keys and values of <paramref name="length"/> rows: benchmarks of
    /// long contexts, whose cost does not depend on the cached values. Only the slots' own blocks are written: blocks that
    /// keep cached prefixes for reuse are left as they are (or evicted, when the slots need them).</summary>
    public void FillRandomForBenchmark(int length)
    {
        for (int slot = 0; slot < Slots; slot++)
        {
            Release(slot);
            Reserve(slot, length);
            AppendUnknown(slot, length);
            using (no_grad())
            {
                foreach (int block in _blocks[slot])
                {
                    using Tensor rows = _data.narrow(2, (long)block * BlockSize, BlockSize);
                    rows.normal_(0, 1);
                }
            }
        }
    }

    public void Dispose()
    {
        _data.Dispose();
        _tables.Dispose();
        _lastPosition.Dispose();
        _blockSizeScalar.Dispose();
        _scratchRow.Dispose();
    }
}

/// <summary>What a kernel needs to find a sequence's rows in the pool (<see cref="KvCache.Addressing"/>): strides in
/// elements of <paramref name="ElementBytes"/> bytes.</summary>
internal readonly record struct KernelAddressing(IntPtr Base, long LayerStride, long KvStride, long RowStride, long HeadStride,
    IntPtr Tables, int TableStride, int BlockShift, long ElementBytes)
{
    /// <summary>The pool of <paramref name="layer"/>'s keys (<paramref name="kv"/> 0) or values (1).</summary>
    public IntPtr Layer(int layer, int kv) => Base + (nint)((layer * LayerStride + kv * KvStride) * ElementBytes);

    /// <summary>The first entry of <paramref name="slot"/>'s block table.</summary>
    public IntPtr Table(int slot) => Tables + (nint)((long)slot * TableStride * sizeof(int));
}

/// <summary>The KV cache has no free or evictable block left for a sequence that needs one (the message gives the
/// numbers and what to do).</summary>
public sealed class KvCacheExhaustedException : SpecDecodeException
{
    /// <summary>Creates the exception with a message that says what was needed and what to do.</summary>
    public KvCacheExhaustedException(string message) : base(message)
    {
    }
}
