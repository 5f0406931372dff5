namespace SpecDecode.Tree;

/// <summary>A snapshot of a <see cref="TargetModel"/>'s paged KV cache (<see cref="TargetModel.KvCache"/>).</summary>
/// <param name="BlockSize">Token rows per block.</param>
/// <param name="Blocks">Blocks in the pool.</param>
/// <param name="FreeBlocks">Blocks holding nothing.</param>
/// <param name="IdleCachedBlocks">Blocks no sequence uses that keep a cached prefix for reuse; taken (least recently used
/// first) when the pool needs room.</param>
/// <param name="CachedBlocks">Blocks registered in the prefix index, in use or not.</param>
public sealed record KvCacheUsage(int BlockSize, int Blocks, int FreeBlocks, int IdleCachedBlocks, int CachedBlocks)
{
    /// <summary>Blocks running sequences hold.</summary>
    public int UsedBlocks => Blocks - FreeBlocks - IdleCachedBlocks;

    /// <summary>Blocks a new sequence can get now: free ones and evictable cached ones.</summary>
    public int AvailableBlocks => FreeBlocks + IdleCachedBlocks;

    /// <summary>Tokens the pool holds in all.</summary>
    public long Tokens => (long)Blocks * BlockSize;
}
