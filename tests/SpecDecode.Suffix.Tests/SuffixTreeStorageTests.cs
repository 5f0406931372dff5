using System.Runtime.CompilerServices;

namespace SpecDecode.Suffix.Tests;

/// <summary>Node layout, saturated child counts, sealing and the memory estimate of <see cref="SuffixTree"/>.</summary>
public sealed class SuffixTreeStorageTests
{
    [Fact]
    public void NodeIs48Bytes() => Assert.Equal(48, Unsafe.SizeOf<SuffixTree.Node>());

    [Fact]
    public void PagedArrayGrowsWithoutMovingFullPagesAndChecksIndices()
    {
        var a = new PagedArray<long>();
        Assert.Equal(64, a.Capacity);
        int n = 3 * PagedArray<long>.PageSize + 5;
        for (int i = 0; i < n; i++)
        {
            if (i == a.Capacity)
            {
                a.Grow();
            }
            a[i] = i * 7L;
        }
        Assert.Equal(4 * PagedArray<long>.PageSize, a.Capacity);
        ref long inFullPage = ref a[PagedArray<long>.PageSize + 3];
        a.Grow();
        inFullPage = -1;   // still the element: growing copied nothing
        Assert.Equal(-1, a[PagedArray<long>.PageSize + 3]);
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(i == PagedArray<long>.PageSize + 3 ? -1 : i * 7L, a[i]);
        }
        Assert.Equal(5 * PagedArray<long>.PageSize * 8L + 8 * IntPtr.Size, a.MemoryBytes);
        Assert.Throws<IndexOutOfRangeException>(() => { var b = a; _ = b[b.Capacity]; });
        Assert.Throws<IndexOutOfRangeException>(() => { var b = a; _ = b[-1]; });
        var small = new PagedArray<int>();
        small.Grow();
        Assert.Equal(128, small.Capacity);
        Assert.Throws<IndexOutOfRangeException>(() => { var b = small; _ = b[128]; });   // inside a page, beyond the first page's length
    }

    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 16)]
    [InlineData(3, 64)]
    public void SealTrimsStorageWithoutChangingDraftsAndAppendsStillWork(int seed, int maxDepth)
    {
        var rng = new Random(seed);
        var tree = new SuffixTree(maxDepth);
        var seqs = new List<int>[12];
        for (int id = 0; id < seqs.Length; id++)
        {
            seqs[id] = [];
            // Lengths below, at and above the depth; tokens appended one by one so the arrays have growth slack.
            int len = id switch { 0 => 1, 1 => maxDepth - 1, 2 => maxDepth, 3 => maxDepth + 1, _ => rng.Next(1, 5 * maxDepth) };
            for (int k = 0; k < len; k++)
            {
                int t = rng.Next(5);
                tree.Append(id, t);
                seqs[id].Add(t);
            }
        }
        int[][] contexts = Enumerable.Range(0, 40).Select(_ => Enumerable.Range(0, 6).Select(_ => rng.Next(5)).ToArray()).ToArray();
        var settings = new[] { SpeculationSettings.Default(8), SpeculationSettings.Default(8) with { UseTree = true } };
        DraftTree[] Drafts() => contexts.SelectMany(c => settings.Select(st => tree.Speculate(c, st))).ToArray();
        DraftTree[] before = Drafts();
        long bytesBefore = tree.EstimateMemoryBytes();

        for (int id = 0; id < seqs.Length; id++)
        {
            Assert.True(tree.Seal(id));
            Assert.True(tree.Seal(id));   // sealing twice changes nothing
        }
        Assert.False(tree.Seal(seqs.Length));
        tree.CheckIntegrity();
        Assert.True(tree.EstimateMemoryBytes() < bytesBefore);
        DraftTree[] after = Drafts();
        for (int k = 0; k < before.Length; k++)
        {
            Assert.Equal(before[k].Tokens.ToArray(), after[k].Tokens.ToArray());
            Assert.Equal(before[k].Parents.ToArray(), after[k].Parents.ToArray());
            Assert.Equal(before[k].Score, after[k].Score);
        }
        for (int id = 0; id < seqs.Length; id++)
        {
            Assert.Equal(seqs[id], tree.SequenceTokens(id).ToArray());
        }

        // Appending to sealed sequences (one token, then a run) rebuilds their rings; the tree stays exact.
        for (int id = 0; id < seqs.Length; id++)
        {
            int t = rng.Next(5);
            tree.Append(id, t);
            seqs[id].Add(t);
            tree.CheckIntegrity();
            int[] run = Enumerable.Range(0, rng.Next(1, 2 * maxDepth)).Select(_ => rng.Next(5)).ToArray();
            tree.Seal(id);
            tree.Extend(id, run);
            seqs[id].AddRange(run);
        }
        tree.CheckIntegrity();
        var naive = new NaiveSuffixIndex(maxDepth);
        for (int id = 0; id < seqs.Length; id++)
        {
            foreach (int t in seqs[id])
            {
                naive.Append(id, t);
            }
        }
        foreach (int[] c in contexts)
        {
            for (int len = 1; len <= c.Length; len++)
            {
                Assert.Equal(naive.Count(c.AsSpan(c.Length - len)), tree.CountOf(c.AsSpan(c.Length - len)));
            }
        }
        for (int id = 0; id < seqs.Length; id++)
        {
            tree.Seal(id);
            Assert.True(tree.Remove(id));   // removing a sealed sequence works too
        }
        tree.CheckIntegrity();
        Assert.Equal(1, tree.NodeCount);
    }

    /// <summary>
    /// A node that has had more than 65535 children keeps a saturated child count and stays in the child index; it must
    /// stay correct when its children go away and when it is then fused with its last child: by a removal, by an
    /// extension that covers it and a one-token child, or by taking its child's first token.
    /// </summary>
    [Theory]
    [InlineData("remove")]
    [InlineData("fuse")]
    [InlineData("grow")]
    public void SaturatedChildCountStaysCorrect(string how)
    {
        const int X = 0, Children = 65_540, Other = 1_000_000;
        var tree = new SuffixTree(3);
        // X is followed by Children distinct tokens, so both X and the root have more than 65535 children.
        for (int k = 0; k < Children; k++)
        {
            tree.Extend(k, [X, k + 1]);
        }
        if (how == "grow")
        {
            tree.Append(0, 2);   // X's child for token 1 becomes the two-token label "1 2"
        }
        tree.Extend(Other, [7, X]);   // one suffix ends at X
        tree.CheckIntegrity();
        Assert.Equal(Children + 1, tree.CountOf([X]));

        for (int k = 1; k < Children; k++)
        {
            Assert.True(tree.Remove(k));
        }
        // X now has one child (token 1) and one suffix ending at it, and is still found through the child index.
        tree.CheckIntegrity();
        Assert.Equal(2, tree.CountOf([X]));
        Assert.Equal(1, tree.CountOf([X, 1]));
        Assert.Equal(0, tree.CountOf([X, 2]));

        switch (how)
        {
            case "remove":
                Assert.True(tree.Remove(Other));           // X's count falls to its child's: they fuse
                Assert.Equal(1, tree.CountOf([X]));
                break;
            case "fuse":
            case "grow":
                tree.Append(Other, 1);                     // the suffix ending at X now continues into X's child
                Assert.Equal(2, tree.CountOf([X, 1]));
                break;
        }
        tree.CheckIntegrity();
        DraftTree draft = tree.Speculate([5, X], SpeculationSettings.Default(4));
        Assert.Equal(1, draft.Tokens[0]);

        // Saturated nodes regrow and shrink again.
        for (int k = 1; k < 20; k++)
        {
            tree.Extend(k, [X, k + 1]);
        }
        tree.CheckIntegrity();
        for (int k = 1; k < 20; k++)
        {
            tree.Remove(k);
        }
        tree.Remove(0);
        tree.Remove(Other);
        tree.CheckIntegrity();
        Assert.Equal(1, tree.NodeCount);
    }
}
