using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SpecDecode.Suffix;

/// <summary>
/// A growable array of structs stored in pages of <see cref="PageSize"/> elements, indexed by <c>int</c> and read and
/// written in place through a <c>ref</c>.
/// </summary>
/// <remarks>
/// <para>Growing adds a page and copies nothing, so there is no 2x slack, no transient double footprint and no pause
/// to copy a huge array; no array is larger than one page. The first page starts small and doubles up to
/// <see cref="PageSize"/>, so a small tree (a request's own context) stays small.</para>
/// <para>Indexing checks the index against <see cref="Capacity"/> once and then reads the page table and the page
/// without the runtime's two array bounds checks (a measurable share of drafting time, which is node lookups); it stays
/// memory-safe because every index below <see cref="Capacity"/> lies in an allocated page: page 0 holds
/// <c>min(Capacity, PageSize)</c> elements and every later page <see cref="PageSize"/>.</para>
/// <para>A mutable struct: keep it in a field and never copy it. A <c>ref</c> into a full page stays valid when the
/// array grows; one into the first page does not while it is still below <see cref="PageSize"/> (it is resized).</para>
/// </remarks>
internal struct PagedArray<T> where T : struct
{
    public const int PageShift = 14;
    public const int PageSize = 1 << PageShift;
    private const int PageMask = PageSize - 1;
    private const int FirstPageSize = 64;

    private T[][] _pages;
    private int _capacity;

    public PagedArray()
    {
        _pages = [new T[FirstPageSize]];
        _capacity = FirstPageSize;
    }

    /// <summary>Elements that can be stored without growing (indices 0 .. Capacity - 1).</summary>
    public readonly int Capacity => _capacity;

    /// <summary>The element at index <paramref name="i"/>, in place.</summary>
    /// <exception cref="IndexOutOfRangeException"><paramref name="i"/> is negative or not below <see cref="Capacity"/>.</exception>
    public readonly ref T this[int i]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            if ((uint)i >= (uint)_capacity)
            {
                ThrowIndexOutOfRange();
            }
            T[] page = Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_pages), i >> PageShift);
            return ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(page), i & PageMask);
        }
    }

    [DoesNotReturn]
    private static void ThrowIndexOutOfRange() => throw new IndexOutOfRangeException();

    /// <summary>Makes room for one more element: doubles the first page while it is below a full page, else adds a page.</summary>
    public void Grow()
    {
        if (_capacity < PageSize)
        {
            Array.Resize(ref _pages[0], Math.Min(_capacity * 2, PageSize));
            _capacity = _pages[0].Length;
            return;
        }
        int page = _capacity >> PageShift;
        if (page == _pages.Length)
        {
            Array.Resize(ref _pages, _pages.Length * 2);
        }
        _pages[page] = new T[PageSize];
        _capacity += PageSize;
    }

    /// <summary>Bytes allocated: every page at its full length, plus the page table.</summary>
    public readonly long MemoryBytes => (long)_capacity * Unsafe.SizeOf<T>() + (long)_pages.Length * IntPtr.Size;
}
