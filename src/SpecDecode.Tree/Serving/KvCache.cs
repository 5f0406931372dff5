using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The preallocated key/value cache: one tensor [layers, 2, slots, kv heads, capacity + 1, head size], zeroed, never
/// grown. Each slot's length lives on the host (the host decides every step's shape anyway). Position
/// <c>capacity</c> is scratch: padding rows of a ragged batch write there, so they never touch a sequence's cache.
/// </summary>
internal sealed class KvCache : IDisposable
{
    private readonly Tensor _data;
    private readonly int[] _lengths;

    public KvCache(ModelConfig config, int slots, int capacity, ScalarType dtype, Device device)
    {
        Slots = slots;
        Capacity = capacity;
        _lengths = new int[slots];
        _data = zeros([config.LayerCount, 2, slots, config.KeyValueHeadCount, capacity + 1, config.HeadDim], dtype, device);
    }

    public int Slots { get; }

    /// <summary>The whole cache tensor (for the scripted decoder, which indexes it itself).</summary>
    public Tensor Data => _data;

    public int Capacity { get; }

    /// <summary>The scratch position padding rows write to.</summary>
    public int Scratch => Capacity;

    /// <summary>Every slot's length (read-only use).</summary>
    public int[] Lengths => _lengths;

    public int Length(int slot) => _lengths[slot];

    public void SetLength(int slot, int length) => _lengths[slot] = length;

    /// <summary>Writes one layer's new keys and values [B, kv heads, T, D] at positions <paramref name="writeAt"/> [B, T].</summary>
    public void Write(int layer, Tensor writeAt, Tensor keys, Tensor values)
    {
        long b = keys.shape[0], heads = keys.shape[1], t = keys.shape[2], d = keys.shape[3];
        using Tensor index = writeAt.view(b, 1, t, 1).expand(b, heads, t, d);
        using Tensor k = _data.select(0, layer).select(0, 0).narrow(0, 0, b);
        using Tensor v = _data.select(0, layer).select(0, 1).narrow(0, 0, b);
        k.scatter_(2, index, keys);
        v.scatter_(2, index, values);
    }

    /// <summary>Writes one layer's new keys and values [B, kv heads, T, D] of rows whose slots are <paramref name="slots"/>
    /// [B] at positions <paramref name="writeAt"/> [B, T] (rows need not be slots 0 .. B-1).</summary>
    public void WriteRows(int layer, Tensor slots, Tensor writeAt, Tensor keys, Tensor values)
    {
        long b = keys.shape[0], heads = keys.shape[1], t = keys.shape[2];
        using var scope = NewDisposeScope();
        Tensor slotRows = slots.view(b, 1, 1), headRows = arange(heads, int64, keys.device).view(1, heads, 1), positionRows = writeAt.view(b, 1, t);
        _data.select(0, layer).select(0, 0).index_put_(keys, slotRows, headRows, positionRows);
        _data.select(0, layer).select(0, 1).index_put_(values, slotRows, headRows, positionRows);
    }

    /// <summary>One layer's keys and values of slots 0 .. <paramref name="batch"/>-1, positions 0 .. <paramref name="keys"/>-1 (views).</summary>
    public (Tensor Keys, Tensor Values) Read(int layer, long batch, long keys)
    {
        Tensor k = _data.select(0, layer).select(0, 0).narrow(0, 0, batch).narrow(2, 0, keys);
        Tensor v = _data.select(0, layer).select(0, 1).narrow(0, 0, batch).narrow(2, 0, keys);
        return (k, v);
    }

    /// <summary>
    /// SpecInfer's commit, on the device, for every layer at once: for each slot b and d &lt; <paramref name="window"/>,
    /// position lengths[b] + d receives the entry at lengths[b] + entryAtDepth[b, d]. The accepted path's entries
    /// (root, then one per depth) end up right after the prefix; entries past the path copy onto themselves.
    /// </summary>
    public void MoveAccepted(Tensor entryAtDepth, Tensor lengths, int window)
    {
        using var scope = NewDisposeScope();
        long b = entryAtDepth.shape[0];
        long layers = _data.shape[0], heads = _data.shape[3], d = _data.shape[5];
        Tensor start = lengths.view(b, 1);
        Tensor source = (start + entryAtDepth.narrow(1, 0, window)).view(1, 1, b, 1, window, 1).expand(layers, 2, b, heads, window, d);
        Tensor target = (start + arange(window, int64, lengths.device).view(1, window)).view(1, 1, b, 1, window, 1).expand(layers, 2, b, heads, window, d);
        Tensor data = _data.narrow(2, 0, b);
        Tensor moved = data.gather(4, source);
        data.scatter_(4, target, moved);
    }

    /// <summary>Fills slots with random keys and values and sets their lengths: benchmarks of long contexts, whose cost
    /// does not depend on the cached values.</summary>
    public void FillRandomForBenchmark(int length)
    {
        using (no_grad())
        {
            _data.normal_(0, 1);
        }
        Array.Fill(_lengths, length);
    }

    public void Dispose() => _data.Dispose();
}
