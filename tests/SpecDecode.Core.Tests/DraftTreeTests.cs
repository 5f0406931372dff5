namespace SpecDecode.Core.Tests;

public sealed class DraftTreeTests
{
    // Tree used by the helper tests:
    //   root-level: 0 (10), 1 (20)
    //   0 -> 2 (30), 3 (40);  2 -> 4 (50)
    private static readonly int[] TreeTokens = [10, 20, 30, 40, 50];
    private static readonly int[] TreeParents = [-1, -1, 0, 0, 2];
    private static readonly float[] TreeProbabilities = [0.5f, 0.25f, 0.25f, 0.125f, 0.0625f];

    private static DraftTree SampleTree() => DraftTree.Create(TreeTokens, TreeParents, TreeProbabilities, matchLength: 3);

    // ---------------------------------------------------------------- validation

    public static TheoryData<string, int[], int[], float[], int> InvalidTrees()
    {
        int[] manyRoots = Enumerable.Range(0, 20).ToArray();
        manyRoots[19] = 7; // 20 siblings (the dictionary path of the duplicate check), one token twice
        int[] manyChildren = [100, .. Enumerable.Range(0, 20)];
        manyChildren[20] = 3;
        return new TheoryData<string, int[], int[], float[], int>
        {
            { "empty", [], [], [], int.MaxValue },
            { "parents shorter", [1, 2], [-1], [], int.MaxValue },
            { "parents longer", [1], [-1, 0], [], int.MaxValue },
            { "probabilities shorter", [1, 2], [-1, 0], [1f], int.MaxValue },
            { "probabilities longer", [1], [-1], [1f, 1f], int.MaxValue },
            { "parent below -1", [1], [-2], [], int.MaxValue },
            { "parent past the end", [1, 2], [-1, 5], [], int.MaxValue },
            { "parent is itself", [1], [0], [], int.MaxValue },
            { "parent after child", [1, 2], [1, -1], [], int.MaxValue },
            { "parent after child, deeper", [1, 2, 3], [-1, 2, 0], [], int.MaxValue },
            { "negative token", [-1], [-1], [], int.MaxValue },
            { "negative token later", [1, 2, int.MinValue], [-1, 0, 1], [], int.MaxValue },
            { "duplicate root-level tokens", [3, 3], [-1, -1], [], int.MaxValue },
            { "duplicate children", [1, 2, 2], [-1, 0, 0], [], int.MaxValue },
            { "duplicate children, not adjacent", [1, 2, 5, 3, 2], [-1, 0, -1, 0, 0], [], int.MaxValue },
            { "duplicate among 20 root-level siblings", manyRoots, Enumerable.Repeat(-1, 20).ToArray(), [], int.MaxValue },
            { "duplicate among 20 children", manyChildren, [-1, .. Enumerable.Repeat(0, 20)], [], int.MaxValue },
            { "probability above 1", [1], [-1], [1.5f], int.MaxValue },
            { "probability just above 1", [1], [-1], [1.0000001f], int.MaxValue },
            { "probability negative", [1, 2], [-1, 0], [0.5f, -0.1f], int.MaxValue },
            { "probability NaN", [1], [-1], [float.NaN], int.MaxValue },
            { "probability +infinity", [1], [-1], [float.PositiveInfinity], int.MaxValue },
            { "probability -infinity", [1], [-1], [float.NegativeInfinity], int.MaxValue },
            { "over budget", [1, 2, 3], [-1, 0, 1], [], 2 },
            { "over a budget of 0", [1], [-1], [], 0 },
        };
    }

    [Theory]
    [MemberData(nameof(InvalidTrees))]
    public void Create_RejectsInvalidTrees(string why, int[] tokens, int[] parents, float[] probabilities, int maxTokens)
    {
        var ex = Assert.Throws<InvalidDraftTreeException>(() => DraftTree.Create(tokens, parents, probabilities, maxTokens));
        Assert.False(string.IsNullOrWhiteSpace(ex.Message), why);
    }

    [Theory]
    [InlineData(-1, 0)]
    [InlineData(5, -1)]
    public void Create_RejectsNegativeBudgetOrMatchLength(int maxTokens, int matchLength)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DraftTree.Create([1], [-1], [], maxTokens, matchLength));
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    [InlineData(float.Epsilon)]
    public void Create_AcceptsProbabilityBounds(float probability)
    {
        DraftTree tree = DraftTree.Create([1], [-1], [probability]);
        Assert.Equal(probability, tree.Probabilities[0]);
    }

    [Fact]
    public void Create_AcceptsTreeExactlyAtBudget_AndSameTokenUnderDifferentParents()
    {
        DraftTree tree = DraftTree.Create([1, 2, 1, 1], [-1, -1, 0, 1], [], maxTokens: 4);
        Assert.Equal(4, tree.Count);
    }

    [Fact]
    public void Create_CopiesItsInputs()
    {
        int[] tokens = [1, 2];
        int[] parents = [-1, 0];
        float[] probabilities = [0.5f, 0.25f];
        DraftTree tree = DraftTree.Create(tokens, parents, probabilities);

        tokens[0] = 99;
        parents[1] = -1;
        probabilities[0] = 0f;

        Assert.Equal([1, 2], tree.Tokens.ToArray());
        Assert.Equal([-1, 0], tree.Parents.ToArray());
        Assert.Equal([0.5f, 0.25f], tree.Probabilities.ToArray());
    }

    [Fact]
    public void Create_WithoutProbabilities_GivesOnes()
    {
        DraftTree tree = DraftTree.Create([4, 5, 6], [-1, 0, 0], []);

        Assert.Equal([1f, 1f, 1f], tree.Probabilities.ToArray());
        Assert.Equal(3f, tree.Score);
    }

    [Fact]
    public void Chain_BuildsLinearDraft()
    {
        DraftTree chain = DraftTree.Chain([7, 8, 9], [0.9f, 0.5f, 0.25f]);

        Assert.Equal([-1, 0, 1], chain.Parents.ToArray());
        Assert.Equal([1, 2, 3], chain.Depths.ToArray());
        Assert.True(chain.IsChain);
        Assert.Equal(3, chain.MaxDepth);
        Assert.Equal(0, chain.MatchLength);
        Assert.Equal(1.65f, chain.Score, 5);
        Assert.Equal([1f, 1f], DraftTree.Chain([7, 7]).Probabilities.ToArray());
    }

    [Fact]
    public void Chain_OfNothing_IsEmpty()
    {
        Assert.Same(DraftTree.Empty, DraftTree.Chain([]));
        Assert.Same(DraftTree.Empty, DraftTree.Chain(ReadOnlySpan<int>.Empty, ReadOnlySpan<float>.Empty));
    }

    [Theory]
    [InlineData(new[] { 1, -3 }, new float[0])]
    [InlineData(new[] { 1, 2 }, new[] { 1f })]
    [InlineData(new[] { 1, 2 }, new[] { 1f, 2f })]
    [InlineData(new[] { 1 }, new[] { float.NaN })]
    public void Chain_RejectsBadInput(int[] tokens, float[] probabilities)
    {
        Assert.Throws<InvalidDraftTreeException>(() => DraftTree.Chain(tokens, probabilities));
    }

    // ---------------------------------------------------------------- helpers

    [Fact]
    public void Empty_HasNoNodes()
    {
        DraftTree empty = DraftTree.Empty;

        Assert.Equal(0, empty.Count);
        Assert.True(empty.IsEmpty);
        Assert.True(empty.IsChain);
        Assert.Equal(0, empty.MaxDepth);
        Assert.Equal(0, empty.MatchLength);
        Assert.Equal(0f, empty.Score);
        Assert.True(empty.Children(-1).IsEmpty);
        Assert.Throws<ArgumentOutOfRangeException>(() => empty.Depth(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => empty.Children(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => empty.PathTo(0));
    }

    [Fact]
    public void Properties_DescribeTheTree()
    {
        DraftTree tree = SampleTree();

        Assert.Equal(5, tree.Count);
        Assert.False(tree.IsEmpty);
        Assert.False(tree.IsChain);
        Assert.Equal(3, tree.MaxDepth);
        Assert.Equal(3, tree.MatchLength);
        Assert.Equal(1.1875f, tree.Score); // exact in binary
        Assert.Equal(TreeTokens, tree.Tokens.ToArray());
        Assert.Equal(TreeParents, tree.Parents.ToArray());
        Assert.Equal([1, 1, 2, 2, 3], tree.Depths.ToArray());
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 2)]
    [InlineData(4, 3)]
    public void Depth_OfEachNode(int node, int depth)
    {
        Assert.Equal(depth, SampleTree().Depth(node));
    }

    [Theory]
    [InlineData(-1, new[] { 0, 1 })]
    [InlineData(0, new[] { 2, 3 })]
    [InlineData(1, new int[0])]
    [InlineData(2, new[] { 4 })]
    [InlineData(3, new int[0])]
    [InlineData(4, new int[0])]
    public void Children_InIndexOrder(int node, int[] children)
    {
        Assert.Equal(children, SampleTree().Children(node).ToArray());
    }

    [Fact]
    public void Children_AreInIndexOrder_WhenSiblingsAreInterleaved()
    {
        DraftTree tree = DraftTree.Create([1, 2, 3, 4, 5, 6], [-1, 0, -1, 0, 2, 0], []);

        Assert.Equal([0, 2], tree.Children(-1).ToArray());
        Assert.Equal([1, 3, 5], tree.Children(0).ToArray());
        Assert.Equal([4], tree.Children(2).ToArray());
    }

    [Theory]
    [InlineData(0, new[] { 0 }, new[] { 10 })]
    [InlineData(1, new[] { 1 }, new[] { 20 })]
    [InlineData(3, new[] { 0, 3 }, new[] { 10, 40 })]
    [InlineData(4, new[] { 0, 2, 4 }, new[] { 10, 30, 50 })]
    public void PathTo_AndTokensTo(int node, int[] path, int[] tokens)
    {
        DraftTree tree = SampleTree();

        Assert.Equal(path, tree.PathTo(node));
        Assert.Equal(tokens, tree.TokensTo(node));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(5)]
    [InlineData(int.MinValue)]
    public void NodeHelpers_RejectNonNodes(int node)
    {
        DraftTree tree = SampleTree();

        Assert.Throws<ArgumentOutOfRangeException>(() => tree.Depth(node));
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.PathTo(node));
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.TokensTo(node));
        if (node != -1)
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => tree.Children(node));
        }
    }

    [Theory]
    [InlineData(new[] { -1 }, true)]
    [InlineData(new[] { -1, 0, 1, 2 }, true)]
    [InlineData(new[] { -1, -1 }, false)]       // two root-level nodes
    [InlineData(new[] { -1, 0, 0 }, false)]     // a node with two children
    [InlineData(new[] { -1, 0, 1, 1 }, false)]  // branching below the top
    public void IsChain_OnlyForLinearDrafts(int[] parents, bool isChain)
    {
        int[] tokens = Enumerable.Range(1, parents.Length).ToArray();
        Assert.Equal(isChain, DraftTree.Create(tokens, parents, []).IsChain);
    }

    [Theory]
    [InlineData(new[] { -1 }, 1)]
    [InlineData(new[] { -1, -1, -1 }, 1)]
    [InlineData(new[] { -1, 0, 1, 0 }, 3)]
    [InlineData(new[] { -1, -1, 1, 2, 3 }, 4)]
    public void MaxDepth_IsDeepestNode(int[] parents, int maxDepth)
    {
        int[] tokens = Enumerable.Range(1, parents.Length).ToArray();
        Assert.Equal(maxDepth, DraftTree.Create(tokens, parents, []).MaxDepth);
    }

    // ---------------------------------------------------------------- greedy verification

    public static TheoryData<string, int[], int[], int[], int, int> GreedyCases() => new()
    {
        // name, tokens, parents, expected next tokens, accepted, deepest node
        { "perfect chain draft, bonus position left", [1, 2, 3, 4], [-1, 0, 1, 2], [1, 2, 3, 4, 5], 4, 3 },
        { "perfect chain draft, expected exactly as long", [1, 2, 3, 4], [-1, 0, 1, 2], [1, 2, 3, 4], 4, 3 },
        { "early mismatch", [1, 2, 3, 4], [-1, 0, 1, 2], [1, 2, 9, 4], 2, 1 },
        { "first token wrong", [1, 2, 3, 4], [-1, 0, 1, 2], [9, 1, 2], 0, -1 },
        { "empty draft", [], [], [1, 2, 3], 0, -1 },
        { "nothing expected", [1, 2], [-1, 0], [], 0, -1 },
        { "expected shorter than the draft", [1, 2, 3, 4], [-1, 0, 1, 2], [1, 2], 2, 1 },
        // Tree: 0 (1) -> 2 (3); 1 (2) -> 3 (4), 4 (5)
        { "tree: second root, second child", [1, 2, 3, 4, 5], [-1, -1, 0, 1, 1], [2, 5, 7], 2, 4 },
        { "tree: second root, first child", [1, 2, 3, 4, 5], [-1, -1, 0, 1, 1], [2, 4], 2, 3 },
        { "tree: first root branch", [1, 2, 3, 4, 5], [-1, -1, 0, 1, 1], [1, 3, 3], 2, 2 },
        { "tree: token of another branch does not count", [1, 2, 3, 4, 5], [-1, -1, 0, 1, 1], [1, 4], 1, 0 },
        { "tree: deeper token without its parent", [1, 2, 3, 4, 5], [-1, -1, 0, 1, 1], [3], 0, -1 },
        { "tree: the same token under two parents", [7, 8, 9, 9], [-1, -1, 0, 1], [8, 9], 2, 3 },
    };

    [Theory]
    [MemberData(nameof(GreedyCases))]
    public void AcceptGreedy_FollowsTheExpectedTokens(string why, int[] tokens, int[] parents, int[] expected, int accepted,
        int deepest)
    {
        DraftTree tree = tokens.Length == 0 ? DraftTree.Empty : DraftTree.Create(tokens, parents, []);

        int got = tree.AcceptGreedy(expected, out int deepestNode);

        Assert.True(accepted == got, $"{why}: accepted {got}, expected {accepted}");
        Assert.True(deepest == deepestNode, $"{why}: deepest node {deepestNode}, expected {deepest}");
        if (deepestNode >= 0)
        {
            Assert.Equal(expected.AsSpan(0, got).ToArray(), tree.TokensTo(deepestNode));
        }
    }
}
