namespace SpecDecode.Tree;

/// <summary>How prefill forwards compute attention (<see cref="TargetModelOptions.PrefillAttention"/>; docs/kv-cache.md,
/// "Packed prefill").</summary>
internal enum PrefillAttention
{
    /// <summary><see cref="Flash"/> where it runs (scripted layers, CUDA, bfloat16 or float16, a head size that is a
    /// multiple of 8 up to 256, and a probe at load that agrees with <see cref="Packed"/>), else <see cref="Masked"/>.</summary>
    Auto,

    /// <summary>Padded chunks: a causal first chunk for an empty slot, then chunks with a materialised mask over all the
    /// cached keys. Every model and device can take it.</summary>
    Masked,

    /// <summary>Packed chunks with the script's reference attention (per sequence, SDPA with a causal mask aligned at the
    /// bottom right): any device. Tests check the packing with it; it is not fast.</summary>
    Packed,

    /// <summary>Packed chunks through libtorch's variable-length flash attention (<c>aten::_flash_attention_forward</c>):
    /// no padding, no mask, the cached keys read once per layer. Loading fails where it cannot run.</summary>
    Flash,
}

/// <summary>
/// One packed prefill forward: every sequence's next chunk of prompt tokens laid end to end, with no padding (a "varlen"
/// batch in FlashAttention's terms). Row r of sequence s is position length(s) + r; its keys are the sequence's
/// positions 0 .. length(s) + chunk(s) - 1, the chunk's own included (written before attention reads them), so the
/// chunk's rows are the last of its keys and causal attention aligned at the bottom right is exactly prefix attention.
/// </summary>
/// <remarks>The cache rows come from <see cref="KvCache.Row"/> (the cache owns the layout); the plan goes to the device in
/// one copy: tokens [N] | positions [N] | write rows [N] | read rows [K] | row starts [S+1] | key starts [S+1].</remarks>
internal sealed class PackedPrefillPlan
{
    private PackedPrefillPlan(long[] packed, int rows, int keys, int sequences, int maxRows, int maxKeys)
    {
        Packed = packed;
        Rows = rows;
        Keys = keys;
        Sequences = sequences;
        MaxRows = maxRows;
        MaxKeys = maxKeys;
    }

    /// <summary>tokens [N] | positions [N] | write rows [N] | read rows [K] | row starts [S+1] | key starts [S+1].</summary>
    public long[] Packed { get; }

    /// <summary>N: the chunks' tokens, all sequences together.</summary>
    public int Rows { get; }

    /// <summary>K: the keys attention reads, all sequences together.</summary>
    public int Keys { get; }

    /// <summary>S: the sequences of the forward.</summary>
    public int Sequences { get; }

    /// <summary>The longest chunk.</summary>
    public int MaxRows { get; }

    /// <summary>The most keys one sequence reads.</summary>
    public int MaxKeys { get; }

    /// <summary>Offset of the row starts in <see cref="Packed"/>; the key starts follow them.</summary>
    public int StartsOffset => 3 * Rows + Keys;

    /// <summary>The plan of one forward over <paramref name="chunks"/>, each slot's next tokens after what it caches now.
    /// The slots' blocks must be reserved for the chunks.</summary>
    /// <exception cref="ArgumentException">No chunk, an empty chunk, or a slot twice.</exception>
    public static PackedPrefillPlan For(IReadOnlyList<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, KvCache cache)
    {
        ArgumentNullException.ThrowIfNull(chunks);
        ArgumentNullException.ThrowIfNull(cache);
        if (chunks.Count == 0 || chunks.Any(c => c.Tokens.Length == 0))
        {
            throw new ArgumentException("A packed prefill forward needs at least one chunk, and no empty chunk.", nameof(chunks));
        }
        if (chunks.Select(c => c.Slot).Distinct().Count() != chunks.Count)
        {
            throw new ArgumentException("A slot appears twice in one packed prefill forward.", nameof(chunks));
        }
        int rows = chunks.Sum(c => c.Tokens.Length);
        int keys = chunks.Sum(c => cache.Length(c.Slot) + c.Tokens.Length);
        int s = chunks.Count;
        var packed = new long[3 * rows + keys + 2 * (s + 1)];
        int row = 0, key = 0, startsAt = 3 * rows + keys, maxRows = 0, maxKeys = 0;
        for (int i = 0; i < s; i++)
        {
            (int slot, ReadOnlyMemory<int> tokens) = chunks[i];
            int length = cache.Length(slot), n = tokens.Length;
            packed[startsAt + i] = row;
            packed[startsAt + s + 1 + i] = key;
            ReadOnlySpan<int> span = tokens.Span;
            for (int r = 0; r < n; r++, row++)
            {
                packed[row] = span[r];
                packed[rows + row] = length + r;
                packed[2 * rows + row] = cache.Row(slot, length + r);
            }
            for (int p = 0; p < length + n; p++, key++)
            {
                packed[3 * rows + key] = cache.Row(slot, p);
            }
            maxRows = Math.Max(maxRows, n);
            maxKeys = Math.Max(maxKeys, length + n);
        }
        packed[startsAt + s] = row;
        packed[startsAt + 2 * s + 1] = key;
        return new PackedPrefillPlan(packed, rows, keys, s, maxRows, maxKeys);
    }

    /// <summary>
    /// Splits prompts of the given lengths into forwards of at most <paramref name="budget"/> tokens in all: the prompts in
    /// order, each forward filled to the budget, a prompt cut where the budget ends and continued first in the next
    /// forward. Returns per forward its pieces: (prompt index, first token, count).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The budget is below 1 or a length is negative.</exception>
    public static List<List<(int Sequence, int Start, int Count)>> Schedule(IReadOnlyList<int> lengths, int budget)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        ArgumentOutOfRangeException.ThrowIfLessThan(budget, 1);
        var forwards = new List<List<(int, int, int)>>();
        var current = new List<(int, int, int)>();
        int room = budget;
        for (int i = 0; i < lengths.Count; i++)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(lengths[i]);
            int start = 0;
            while (start < lengths[i])
            {
                int count = Math.Min(room, lengths[i] - start);
                current.Add((i, start, count));
                start += count;
                room -= count;
                if (room == 0)
                {
                    forwards.Add(current);
                    current = [];
                    room = budget;
                }
            }
        }
        if (current.Count > 0)
        {
            forwards.Add(current);
        }
        return forwards;
    }
}
