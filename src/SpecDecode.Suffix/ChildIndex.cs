using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecDecode.Suffix;

/// <summary>
/// An open-addressing hash map from (parent node, first token) to child node, used only for nodes with many children.
/// </summary>
/// <remarks>
/// Written by hand rather than <see cref="Dictionary{TKey,TValue}"/> because it stores 12 bytes a slot with no per-entry
/// object or chain (the BCL dictionary needs 24 bytes an entry plus a 4-byte bucket), supports removal without
/// tombstones (linear probing with backward-shift deletion), and the suffix tree's memory per cached token is a stated
/// goal. Keys are <c>(parent &lt;&lt; 32) | token</c>; both halves are non-negative, so <c>-1</c> marks an empty slot.
/// A key and its value share one 12-byte slot, so a lookup touches one cache line, not one in each of two arrays.
/// </remarks>
internal sealed class ChildIndex
{
    private const long Empty = -1;
    private Slot[] _slots;
    private int _mask;

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct Slot
    {
        public long Key;
        public int Value;
    }

    public ChildIndex(int capacity = 16)
    {
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity * 2));
        _slots = NewSlots(size);
        _mask = size - 1;
    }

    public int Count { get; private set; }

    public long MemoryBytes => (long)_slots.Length * Unsafe.SizeOf<Slot>();

    private static Slot[] NewSlots(int size)
    {
        var slots = new Slot[size];
        slots.AsSpan().Fill(new Slot { Key = Empty });
        return slots;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Key(int parent, int token) => ((long)parent << 32) | (uint)token;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Home(long key)
    {
        ulong h = (ulong)key * 0x9E3779B97F4A7C15UL;
        return (int)(h >> 32) & _mask;
    }

    public bool TryGet(int parent, int token, out int child)
    {
        long key = Key(parent, token);
        Slot[] slots = _slots;
        for (int i = Home(key); ; i = (i + 1) & _mask)
        {
            ref Slot slot = ref slots[i];
            long k = slot.Key;
            if (k == key)
            {
                child = slot.Value;
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
        if ((Count + 1) * 4 > _slots.Length * 3)
        {
            Grow();
        }
        long key = Key(parent, token);
        for (int i = Home(key); ; i = (i + 1) & _mask)
        {
            ref Slot slot = ref _slots[i];
            if (slot.Key == key)
            {
                slot.Value = child;
                return;
            }
            if (slot.Key == Empty)
            {
                slot.Key = key;
                slot.Value = child;
                Count++;
                return;
            }
        }
    }

    /// <summary>Removes the entry for (parent, token); returns false when there was none.</summary>
    public bool Remove(int parent, int token)
    {
        long key = Key(parent, token);
        int i = Home(key);
        while (true)
        {
            long k = _slots[i].Key;
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
            long k = _slots[j].Key;
            if (k == Empty)
            {
                break;
            }
            int home = Home(k);
            // Move k into the hole when its home slot is not cyclically within (hole, j].
            bool inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!inRange)
            {
                _slots[hole] = _slots[j];
                hole = j;
            }
        }
        _slots[hole].Key = Empty;
        Count--;
        return true;
    }

    private void Grow()
    {
        Slot[] old = _slots;
        _slots = NewSlots(old.Length * 2);
        _mask = _slots.Length - 1;
        Count = 0;
        foreach (Slot s in old)
        {
            if (s.Key != Empty)
            {
                int i = Home(s.Key);
                while (_slots[i].Key != Empty)
                {
                    i = (i + 1) & _mask;
                }
                _slots[i] = s;
                Count++;
            }
        }
    }
}
