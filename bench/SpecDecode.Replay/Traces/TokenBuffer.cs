namespace SpecDecode.Replay;

/// <summary>A growable array of token ids that hands out its backing array when done (no copy).</summary>
public sealed class TokenBuffer
{
    private int[] _items;

    /// <summary>Creates an empty buffer with room for <paramref name="capacity"/> ids.</summary>
    public TokenBuffer(int capacity = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _items = capacity == 0 ? [] : new int[capacity];
    }

    /// <summary>Ids written so far.</summary>
    public int Count { get; private set; }

    /// <summary>The ids written so far.</summary>
    public ReadOnlySpan<int> Span => _items.AsSpan(0, Count);

    /// <summary>Appends ids.</summary>
    public void Append(ReadOnlySpan<int> ids)
    {
        EnsureRoom(ids.Length);
        ids.CopyTo(_items.AsSpan(Count));
        Count += ids.Length;
    }

    /// <summary>Appends ids from a list (as the tokenizer returns them).</summary>
    public void Append(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        EnsureRoom(ids.Count);
        for (int i = 0; i < ids.Count; i++)
        {
            _items[Count + i] = ids[i];
        }
        Count += ids.Count;
    }

    /// <summary>Forgets the content, keeping the capacity.</summary>
    public void Clear() => Count = 0;

    /// <summary>A right-sized copy of the content.</summary>
    public int[] ToArray() => Span.ToArray();

    private void EnsureRoom(int extra)
    {
        int needed = checked(Count + extra);
        if (needed > _items.Length)
        {
            Array.Resize(ref _items, Math.Max(needed, Math.Max(16, _items.Length * 2)));
        }
    }
}
