using System.Numerics;
using System.Runtime.CompilerServices;

namespace SpecDecode.Suffix;

/// <summary>
/// An open-addressing hash map from (parent node, first token) to child node, used only for nodes with many children.
/// </summary>
/// <remarks>
/// Written by hand rather than <see cref="Dictionary{TKey,TValue}"/> because it stores 12 bytes a slot with no per-entry
/// object or chain (the BCL dictionary needs 24 bytes an entry plus a 4-byte bucket), supports removal without
/// tombstones (linear probing with backward-shift deletion), and the suffix tree's memory per cached token is a stated
/// goal. Keys are <c>(parent &lt;&lt; 32) | token</c>; both halves are non-negative, so <c>-1</c> marks an empty slot.
/// </remarks>
internal sealed class ChildIndex
{
    private const long Empty = -1;
    private long[] _keys;
    private int[] _values;
    private int _mask;

    public ChildIndex(int capacity = 16)
    {
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity * 2));
        _keys = new long[size];
        _values = new int[size];
        _keys.AsSpan().Fill(Empty);
        _mask = size - 1;
    }

    public int Count { get; private set; }

    public long MemoryBytes => (long)_keys.Length * (sizeof(long) + sizeof(int));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Key(int parent, int token) => ((long)parent << 32) | (uint)token;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Slot(long key)
    {
        ulong h = (ulong)key * 0x9E3779B97F4A7C15UL;
        return (int)(h >> 32) & _mask;
    }

    public bool TryGet(int parent, int token, out int child)
    {
        long key = Key(parent, token);
        long[] keys = _keys;
        for (int i = Slot(key); ; i = (i + 1) & _mask)
        {
            long k = keys[i];
            if (k == key)
            {
                child = _values[i];
                return true;
            }
            if (k == Empty)
            {
                child = -1;
                return false;
            }
        }
    }

    /// <summary>Adds or overwrites the entry for (parent, token).</summary>
    public void Set(int parent, int token, int child)
    {
        if ((Count + 1) * 4 > _keys.Length * 3)
        {
            Grow();
        }
        long key = Key(parent, token);
        for (int i = Slot(key); ; i = (i + 1) & _mask)
        {
            long k = _keys[i];
            if (k == key)
            {
                _values[i] = child;
                return;
            }
            if (k == Empty)
            {
                _keys[i] = key;
                _values[i] = child;
                Count++;
                return;
            }
        }
    }

    /// <summary>Removes the entry for (parent, token); returns false when there was none.</summary>
    public bool Remove(int parent, int token)
    {
        long key = Key(parent, token);
        int i = Slot(key);
        while (true)
        {
            long k = _keys[i];
            if (k == Empty)
            {
                return false;
            }
            if (k == key)
            {
                break;
            }
            i = (i + 1) & _mask;
        }
        // Backward-shift deletion: pull later entries of the probe run into the hole so no tombstone is needed.
        int hole = i;
        int j = i;
        while (true)
        {
            j = (j + 1) & _mask;
            long k = _keys[j];
            if (k == Empty)
            {
                break;
            }
            int home = Slot(k);
            // Move k into the hole when its home slot is not cyclically within (hole, j].
            bool inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!inRange)
            {
                _keys[hole] = k;
                _values[hole] = _values[j];
                hole = j;
            }
        }
        _keys[hole] = Empty;
        Count--;
        return true;
    }

    private void Grow()
    {
        long[] oldKeys = _keys;
        int[] oldValues = _values;
        _keys = new long[oldKeys.Length * 2];
        _values = new int[oldKeys.Length * 2];
        _keys.AsSpan().Fill(Empty);
        _mask = _keys.Length - 1;
        Count = 0;
        for (int i = 0; i < oldKeys.Length; i++)
        {
            if (oldKeys[i] != Empty)
            {
                long key = oldKeys[i];
                int slot = Slot(key);
                while (_keys[slot] != Empty)
                {
                    slot = (slot + 1) & _mask;
                }
                _keys[slot] = key;
                _values[slot] = oldValues[i];
                Count++;
            }
        }
    }
}
