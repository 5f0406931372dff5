namespace SpecDecode.Tree.Tests.Paging;

/// <summary>The rules of <see cref="KvBlockManager"/> one at a time, with the integrity check after each case.</summary>
public sealed class KvBlockManagerTests
{
    private static int[] Tokens(int from, int to) => Enumerable.Range(from, to - from + 1).ToArray();

    private static List<int> Allocate(KvBlockManager m, int count)
    {
        var blocks = new List<int>();
        Assert.True(m.TryAllocate(count, blocks));
        return blocks;
    }

    [Theory]
    [InlineData(0, 4)]
    [InlineData(-1, 4)]
    [InlineData(4, 0)]
    [InlineData(4, -2)]
    [InlineData(4, 3)]
    [InlineData(4, 6)]
    [InlineData(4, 8192)]
    [InlineData(int.MaxValue, 4096)]
    public void ConstructorRefusesBadShapes(int blockCount, int blockSize)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvBlockManager(blockCount, blockSize));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 4096)]
    [InlineData(10, 16)]
    public void NewPoolIsAllFree(int blockCount, int blockSize)
    {
        var m = new KvBlockManager(blockCount, blockSize);
        Assert.Equal((blockCount, blockSize), (m.BlockCount, m.BlockSize));
        Assert.Equal(blockCount, m.FreeBlocks);
        Assert.Equal(blockCount, m.AvailableBlocks);
        Assert.Equal(0, m.IdleCachedBlocks + m.RegisteredBlocks + m.ReferencedBlocks);
        Assert.True(m.Match([1, 2, 3]).IsEmpty);
        m.CheckIntegrity();
    }

    /// <summary>Index: [1..10] in blocks a = [1 2 3 4], b = [5 6 7 8], c = [9 10] (partial), B = 4.</summary>
    [Theory]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, int.MaxValue, 2, 2, 2)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }, int.MaxValue, 2, 2, 2)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, int.MaxValue, 2, 1, 2)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8 }, int.MaxValue, 2, 0, -1)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 42 }, int.MaxValue, 2, 0, -1)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7 }, int.MaxValue, 1, 3, 1)] // fewer than B left: partial match of a full block
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 99, 100, 101 }, int.MaxValue, 1, 2, 1)] // diverges inside a full block
    [InlineData(new[] { 1, 2, 9 }, int.MaxValue, 0, 2, 0)]
    [InlineData(new[] { 7, 8 }, int.MaxValue, 0, 0, -1)]
    [InlineData(new int[0], int.MaxValue, 0, 0, -1)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 9, 2, 1, 2)] // capped by maxTokens
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 8, 2, 0, -1)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 5, 1, 1, 1)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 3, 0, 3, 0)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, 0, 0, 0, -1)]
    [InlineData(new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 }, 11, 2, 2, 2)]
    public void MatchFindsTheLongestCachedPrefix(int[] query, int maxTokens, int fullBlocks, int partialTokens, int partialIndex)
    {
        var m = new KvBlockManager(8, 4);
        List<int> blocks = Allocate(m, 3);
        m.Register(Tokens(1, 10), blocks.ToArray());

        PrefixMatch match = m.Match(query, maxTokens);

        Assert.Equal(blocks.Take(fullBlocks), match.FullBlocks);
        Assert.Equal(partialTokens, match.PartialTokens);
        Assert.Equal(partialIndex < 0 ? KvBlockManager.NoBlock : blocks[partialIndex], match.PartialBlock);
        Assert.Equal(fullBlocks * 4 + partialTokens, match.Tokens);
        Assert.All(blocks, b => Assert.Equal(1, m.RefCount(b))); // a lookup takes no reference
        m.CheckIntegrity();
    }

    [Fact]
    public void MatchRefusesANegativeCap()
    {
        var m = new KvBlockManager(2, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Match([1], -1));
    }

    [Fact]
    public void MatchPrefersTheChildWithTheLongestCommonPrefix()
    {
        var m = new KvBlockManager(8, 8);
        int[] x = Allocate(m, 1).ToArray(), y = Allocate(m, 1).ToArray(), z = Allocate(m, 1).ToArray();
        m.Register([1, 2, 3], x);
        m.Register([1, 2, 3, 4, 5, 9], y);
        m.Register([1, 7], z);

        PrefixMatch match = m.Match([1, 2, 3, 4, 5, 6, 7, 8, 9]);

        Assert.Equal((y[0], 5), (match.PartialBlock, match.PartialTokens));
        Assert.Empty(match.FullBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void PartialLeafGrowsInPlaceAndBecomesFull()
    {
        var m = new KvBlockManager(8, 4);
        int[] blocks = Allocate(m, 3).ToArray();

        m.Register(Tokens(1, 5), blocks);
        Assert.Equal([5], m.RegisteredTokens(blocks[1]).ToArray());
        m.Register(Tokens(1, 7), blocks);
        Assert.Equal([5, 6, 7], m.RegisteredTokens(blocks[1]).ToArray());
        Assert.Equal(2, m.RegisteredBlocks);
        PrefixMatch grown = m.Match(Tokens(1, 12));
        Assert.Equal((1, blocks[1], 3), (grown.FullBlocks.Length, grown.PartialBlock, grown.PartialTokens));

        m.Register(Tokens(1, 9), blocks);
        Assert.Equal(3, m.RegisteredBlocks);
        PrefixMatch full = m.Match(Tokens(1, 12));
        Assert.Equal(blocks[..2], full.FullBlocks);
        Assert.Equal((blocks[2], 1), (full.PartialBlock, full.PartialTokens));
        m.CheckIntegrity();
    }

    [Fact]
    public void RegisteringFewerTokensThanRecordedChangesNothing()
    {
        var m = new KvBlockManager(4, 4);
        int[] blocks = Allocate(m, 2).ToArray();
        m.Register(Tokens(1, 7), blocks);
        m.Register(Tokens(1, 5), blocks);
        Assert.Equal([5, 6, 7], m.RegisteredTokens(blocks[1]).ToArray());
        m.CheckIntegrity();
    }

    [Fact]
    public void NothingIsAddedWhenASiblingAlreadyStartsWithTheTokens()
    {
        var m = new KvBlockManager(8, 4);
        int[] first = Allocate(m, 2).ToArray(), second = Allocate(m, 2).ToArray();
        m.Register(Tokens(1, 7), first);

        m.Register(Tokens(1, 6), second);

        Assert.False(m.IsRegistered(second[0])); // a duplicate of first[0]
        Assert.False(m.IsRegistered(second[1])); // first[1] holds [5 6 7] already
        Assert.Equal(2, m.RegisteredBlocks);
        int free = m.FreeBlocks;
        m.Release(second);
        Assert.Equal(free + 2, m.FreeBlocks); // unregistered blocks go straight back
        m.CheckIntegrity();
    }

    [Fact]
    public void DuplicateFullBlocksStayOutOfTheIndex()
    {
        var m = new KvBlockManager(8, 4);
        int[] first = Allocate(m, 2).ToArray(), second = Allocate(m, 2).ToArray();
        m.Register(Tokens(1, 8), first);
        m.Register(Tokens(1, 8), second);

        Assert.True(m.IsRegistered(first[0]) && m.IsRegistered(first[1]));
        Assert.False(m.IsRegistered(second[0]) || m.IsRegistered(second[1]));
        Assert.Equal(first, m.Match(Tokens(1, 8)).FullBlocks);
        m.Release(second);
        m.Release(first);
        Assert.Equal((6, 2), (m.FreeBlocks, m.IdleCachedBlocks));
        m.CheckIntegrity();
    }

    [Fact]
    public void AnIdleBlockAboveAReferencedOneIsNotAvailableUntilThatOneGoes()
    {
        var m = new KvBlockManager(6, 4);
        int[] first = Allocate(m, 1).ToArray(), second = Allocate(m, 2).ToArray();
        m.Register(Tokens(1, 4), first);
        m.Register([1, 2, 3, 4, 9, 9, 9, 9], second); // second[0] duplicates first[0]; second[1] goes under first[0]
        Assert.False(m.IsRegistered(second[0]));
        Assert.True(m.IsRegistered(second[1]));

        m.Release(first);

        Assert.Equal(0, m.RefCount(first[0]));
        Assert.Equal(0, m.IdleCachedBlocks); // held by second[1] below it
        Assert.Equal(3, m.AvailableBlocks);
        Assert.False(m.TryAllocate(4, []));
        List<int> rest = Allocate(m, 3);
        Assert.True(m.IsRegistered(first[0]));

        m.Release(rest.ToArray());
        m.Release(second);
        Assert.Equal((2, 6), (m.IdleCachedBlocks, m.AvailableBlocks));
        Assert.Equal([first[0], second[1]], m.Match([1, 2, 3, 4, 9, 9, 9, 9]).FullBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void IdlePartialLeafShadowedByALongerSiblingIsFreed()
    {
        var m = new KvBlockManager(4, 4);
        int[] shorter = Allocate(m, 1).ToArray(), held = Allocate(m, 1).ToArray();
        m.Register([1, 2], shorter);
        m.Register([5], held);
        m.Release(shorter);
        Assert.Equal(1, m.IdleCachedBlocks);

        int[] longer = Allocate(m, 1).ToArray(), longerHeld = Allocate(m, 1).ToArray();
        m.Register([1, 2, 3], longer);
        m.Register([5, 6], longerHeld);

        Assert.False(m.IsRegistered(shorter[0])); // idle and shadowed: freed
        Assert.True(m.IsRegistered(held[0])); // referenced: kept
        Assert.Equal(0, m.IdleCachedBlocks);
        Assert.Equal(1, m.FreeBlocks);
        Assert.Equal((longer[0], 3), (m.Match([1, 2, 3]).PartialBlock, m.Match([1, 2, 3]).PartialTokens));
        m.CheckIntegrity();
    }

    [Fact]
    public void EvictionTakesTheLeastRecentlyUsedLeafAndMatchesCountAsUse()
    {
        var m = new KvBlockManager(3, 2);
        int[][] seqs = [.. Enumerable.Range(0, 3).Select(_ => Allocate(m, 1).ToArray())];
        for (int i = 0; i < 3; i++)
        {
            m.Register([i, i], seqs[i]);
        }
        foreach (int[] s in seqs)
        {
            m.Release(s);
        }
        Assert.Equal((0, 3), (m.FreeBlocks, m.IdleCachedBlocks));

        Assert.Equal([seqs[0][0]], m.Match([0, 0]).FullBlocks); // used again: now the most recent

        Assert.Equal([seqs[1][0]], Allocate(m, 1));
        Assert.Equal([seqs[2][0]], Allocate(m, 1));
        Assert.Equal([seqs[0][0]], Allocate(m, 1));
        Assert.Equal(0, m.RegisteredBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void AParentIsEvictedOnlyAfterItsChildren()
    {
        var m = new KvBlockManager(4, 2);
        int[] chain = Allocate(m, 3).ToArray();
        m.Register([1, 1, 2, 2, 3, 3], chain);
        foreach (int b in chain)
        {
            m.Release(b); // the root block is released first, so it is the least recently used
        }

        List<int> got = Allocate(m, 4);

        Assert.DoesNotContain(got[0], chain); // the free block first
        Assert.Equal([chain[2], chain[1], chain[0]], got[1..]);
        m.CheckIntegrity();
    }

    [Fact]
    public void AllocationIsAllOrNothing()
    {
        var m = new KvBlockManager(4, 2);
        int[] idle = Allocate(m, 1).ToArray();
        m.Register([1, 1], idle);
        m.Release(idle);
        Allocate(m, 2);
        var into = new List<int> { -7 };

        Assert.False(m.TryAllocate(3, into));
        Assert.Equal([-7], into);
        Assert.Equal((1, 1, 2), (m.FreeBlocks, m.IdleCachedBlocks, m.AvailableBlocks));
        Assert.True(m.IsRegistered(idle[0]));

        Assert.True(m.TryAllocate(2, into));
        Assert.Equal(3, into.Count);
        Assert.Equal(0, m.AvailableBlocks);
        Assert.True(m.TryAllocate(0, into));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.TryAllocate(-1, into));
        Assert.Throws<ArgumentNullException>(() => m.TryAllocate(1, null!));
        m.CheckIntegrity();
    }

    [Fact]
    public void ReferencedBlocksAreNeverEvicted()
    {
        var m = new KvBlockManager(4, 2);
        int[] running = Allocate(m, 2).ToArray(), done = Allocate(m, 2).ToArray();
        m.Register([1, 1, 2, 2], running);
        m.Register([3, 3, 4, 4], done);
        m.Release(done);

        Assert.False(m.TryAllocate(3, []));
        Assert.Equal(done.Reverse(), Allocate(m, 2)); // leaf first
        Assert.All(running, b => Assert.True(m.IsRegistered(b) && m.RefCount(b) == 1));
        Assert.Equal(running, m.Match([1, 1, 2, 2]).FullBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void RetainSharesACachedBlockAndRefusesAFreeOne()
    {
        var m = new KvBlockManager(4, 2);
        int[] owner = Allocate(m, 1).ToArray();
        m.Register([1, 1], owner);
        m.Release(owner);
        Assert.Equal(1, m.IdleCachedBlocks);

        m.Retain(m.Match([1, 1, 5]).FullBlocks);
        Assert.Equal((1, 0, 3), (m.RefCount(owner[0]), m.IdleCachedBlocks, m.AvailableBlocks));
        m.Retain(owner);
        Assert.Equal(2, m.RefCount(owner[0]));

        int free = Enumerable.Range(0, 4).First(b => b != owner[0]);
        var error = Assert.Throws<InvalidOperationException>(() => m.Retain([owner[0], free]));
        Assert.Contains("free", error.Message);
        Assert.Equal(2, m.RefCount(owner[0])); // validated first: nothing changed
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Retain([4]));
        m.CheckIntegrity();
    }

    [Fact]
    public void ReleaseAtZeroFreesOrCaches()
    {
        var m = new KvBlockManager(4, 2);
        int[] blocks = Allocate(m, 2).ToArray();
        m.Register([1, 1], blocks[..1]);

        m.Release(blocks);

        Assert.Equal((3, 1, 4), (m.FreeBlocks, m.IdleCachedBlocks, m.AvailableBlocks));
        Assert.True(m.IsRegistered(blocks[0]));
        Assert.False(m.IsRegistered(blocks[1]));
        m.CheckIntegrity();
    }

    [Fact]
    public void ReleaseRefusesBlocksNotReferencedAndChangesNothing()
    {
        var m = new KvBlockManager(4, 2);
        int[] held = Allocate(m, 1).ToArray();
        int free = Enumerable.Range(0, 4).First(b => b != held[0]);

        Assert.Throws<InvalidOperationException>(() => m.Release(free));
        Assert.Throws<InvalidOperationException>(() => m.Release([held[0], held[0]])); // one reference, two releases
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Release([held[0], 9]));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Release(-1));
        Assert.Equal(1, m.RefCount(held[0]));
        Assert.Equal(3, m.FreeBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void RegisterRefusesTooFewBlocksAndUnreferencedOnes()
    {
        var m = new KvBlockManager(4, 2);
        int[] held = Allocate(m, 1).ToArray();
        int free = Enumerable.Range(0, 4).First(b => b != held[0]);

        Assert.Throws<ArgumentException>(() => m.Register([1, 2, 3], held));
        Assert.Throws<InvalidOperationException>(() => m.Register([1, 2, 3], [held[0], free]));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.Register([1, 2, 3], [held[0], 4]));
        Assert.Equal(0, m.RegisteredBlocks); // validated first: nothing registered

        m.Register([], []);
        m.Register([1, 2], [held[0], free]); // blocks past the tokens are ignored
        Assert.Equal(1, m.RegisteredBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void RegisterRefusesABlockUnderTwoHistories()
    {
        var m = new KvBlockManager(8, 2);
        int[] blocks = Allocate(m, 2).ToArray();
        m.Register([1, 1, 2, 2], blocks);

        // blocks[1] is registered after [1 1]; listing it after [3 3] claims it holds another history.
        int[] other = Allocate(m, 1).ToArray();
        Assert.Throws<InvalidOperationException>(() => m.Register([3, 3, 2, 2], [other[0], blocks[1]]));

        // One block listed twice in a table.
        int[] twice = Allocate(m, 1).ToArray();
        Assert.Throws<InvalidOperationException>(() => m.Register([5, 5, 6, 6], [twice[0], twice[0]]));
        m.CheckIntegrity();
    }

    [Fact]
    public void RegisterRefusesRewrittenCommittedTokens()
    {
        var m = new KvBlockManager(4, 4);
        int[] block = Allocate(m, 1).ToArray();
        m.Register([1, 2], block);

        Assert.Throws<InvalidOperationException>(() => m.Register([1, 3], block));
        Assert.Throws<InvalidOperationException>(() => m.Register([1, 3, 4, 5], block));
        Assert.Equal([1, 2], m.RegisteredTokens(block[0]).ToArray());
        m.CheckIntegrity();
    }

    [Fact]
    public void APartialLeafSupersededByAnEqualFullBlockLeavesTheIndex()
    {
        var m = new KvBlockManager(8, 2);
        int[] first = Allocate(m, 2).ToArray(), second = Allocate(m, 2).ToArray();
        m.Register([1, 1, 2], first); // first[1] = partial [2]
        m.Register([1, 1, 2, 3], second); // second[1] = full [2 3]; first[1] is referenced, so it stays

        m.Register([1, 1, 2, 3], first); // first grew to the same tokens: its partial node is stale, the full one wins

        Assert.False(m.IsRegistered(first[1]));
        Assert.True(m.IsRegistered(second[1]));
        Assert.Equal([first[0], second[1]], m.Match([1, 1, 2, 3]).FullBlocks);
        m.CheckIntegrity();
    }

    [Fact]
    public void BlockIdsOutOfRangeAreRefused()
    {
        var m = new KvBlockManager(2, 2);
        Assert.Throws<ArgumentOutOfRangeException>(() => m.RefCount(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.IsRegistered(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => m.RegisteredTokens(5));
    }

    /// <summary>
    /// The serving scale of the issue: 100 conversations of 32k tokens (B = 16) behind one 2k-token system prompt, about
    /// 192k blocks in the index. Correctness only; Match's speed is in bench/SpecDecode.Benchmarks (KvBlockManagerBenchmarks).
    /// </summary>
    [Fact]
    public void MatchesAtServingScale()
    {
        const int B = 16, Prompts = 100, Length = 32_768, System = 2048;
        var rng = new Random(17);
        int[] system = [.. Enumerable.Range(0, System).Select(_ => rng.Next(128_000))];
        int[][] prompts = [.. Enumerable.Range(0, Prompts).Select(_ => (int[])[.. system, .. Enumerable.Range(0, Length - System).Select(_ => rng.Next(128_000))])];
        var m = new KvBlockManager(200_000, B);
        foreach (int[] prompt in prompts)
        {
            PrefixMatch shared = m.Match(prompt);
            m.Retain(shared.FullBlocks);
            List<int> table = [.. shared.FullBlocks];
            Assert.True(m.TryAllocate(Length / B - table.Count, table));
            m.Register(prompt, table.ToArray());
            m.Release(table.ToArray());
        }
        Assert.Equal(System / B + Prompts * (Length - System) / B, m.RegisteredBlocks);

        int[] next = [.. prompts[57], 1, 2, 3];
        Assert.Equal(Length / B, m.Match(next).FullBlocks.Length);
        next[30_005] ^= 1; // diverges 5 tokens into block 1875
        PrefixMatch cut = m.Match(next);
        Assert.Equal((1875, 5), (cut.FullBlocks.Length, cut.PartialTokens));
        m.CheckIntegrity();
    }
}
