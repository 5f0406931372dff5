using System.Diagnostics;

namespace SpecDecode.Tree;

/// <summary>
/// The longest cached prefix of a token sequence, as <see cref="KvBlockManager.Match"/> found it.
/// <list type="bullet">
/// <item><see cref="FullBlocks"/>: whole blocks whose content and history equal the sequence's; block i holds positions
/// i*B .. (i+1)*B - 1. The caller shares them as they are (<see cref="KvBlockManager.Retain"/>) and never writes to them.</item>
/// <item><see cref="PartialBlock"/> and <see cref="PartialTokens"/>: after those, a block whose first
/// <see cref="PartialTokens"/> positions (1 .. B-1) hold the sequence's next tokens. The caller copies those positions
/// into a block of its own (copy-on-write) and computes the rest; it must not write into this block. Retain it until the
/// copy is done if anything can allocate in between (an allocation may evict it).</item>
/// </list>
/// </summary>
/// <param name="FullBlocks">The shared whole blocks, in sequence order (never null; empty when none matched).</param>
/// <param name="PartialBlock">The block to copy from, or <see cref="KvBlockManager.NoBlock"/> when <see cref="PartialTokens"/> is 0.</param>
/// <param name="PartialTokens">Leading positions of <see cref="PartialBlock"/> that match, 0 .. B-1.</param>
/// <param name="BlockSize">Tokens per block (B).</param>
[DebuggerDisplay("{Tokens} tokens: {FullBlocks.Length} full blocks + {PartialTokens} of block {PartialBlock}")]
internal readonly record struct PrefixMatch(int[] FullBlocks, int PartialBlock, int PartialTokens, int BlockSize)
{
    /// <summary>Matched tokens: <c>FullBlocks.Length * BlockSize + PartialTokens</c>.</summary>
    public int Tokens => FullBlocks.Length * BlockSize + PartialTokens;

    /// <summary>Nothing matched.</summary>
    public bool IsEmpty => Tokens == 0;

    /// <summary>A block's leading positions matched after the full blocks (to be copied).</summary>
    public bool HasPartial => PartialTokens > 0;

    /// <summary>The empty match for blocks of <paramref name="blockSize"/> tokens.</summary>
    public static PrefixMatch None(int blockSize) => new([], KvBlockManager.NoBlock, 0, blockSize);
}
