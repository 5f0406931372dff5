namespace SpecDecode.Suffix.Tests;

/// <summary>Drafts for small hand-made sequences whose answers can be worked out on paper.</summary>
public sealed class SuffixTreeDraftTests
{
    // Sequences 1 2 3 4 / 1 2 3 5 / 1 2 3 4: after "1 2 3" comes 4 twice and 5 once.
    private static SuffixTree Sample(int maxDepth = 64)
    {
        var tree = new SuffixTree(maxDepth);
        tree.Extend(0, [1, 2, 3, 4]);
        tree.Extend(1, [1, 2, 3, 5]);
        tree.Extend(2, [1, 2, 3, 4]);
        tree.CheckIntegrity();
        return tree;
    }

    public sealed record DraftCase(string Name, int[] Context, int Budget, float Factor, float Offset, float MinProb, bool UseTree,
        int[] Tokens, int[] Parents, float[] Probabilities, int MatchLength)
    {
        public override string ToString() => Name;
    }

    private static readonly DraftCase[] AllCases =
    [
        // name, context, budget, factor, offset, minProb, tree, tokens, parents, probabilities, match length
        new("match 2 allows 2 tokens", [9, 1, 2], 10, 1f, 0f, 0.1f, false, [3, 4], [-1, 0], [1f, 2f / 3f], 2),
        new("offset lifts the match-length cap", [9, 1, 2], 10, 1f, 2f, 0.1f, false, [3, 4], [-1, 0], [1f, 2f / 3f], 2),
        new("min prob cuts the branch; longer match wins the tie", [9, 1, 2], 10, 1f, 0f, 0.7f, false, [3], [-1], [1f], 2),
        new("budget caps the draft", [9, 1, 2], 1, 4f, 0f, 0.1f, false, [3], [-1], [1f], 2),
        new("tree mode takes both continuations", [9, 1, 2], 3, 2f, 0f, 0.1f, true, [3, 4, 5], [-1, 0, 0], [1f, 2f / 3f, 1f / 3f], 2),
        new("tree mode with a cut drops the rare branch", [9, 1, 2], 3, 2f, 0f, 0.5f, true, [3, 4], [-1, 0], [1f, 2f / 3f], 2),
        new("full-length match drafts to the end", [1, 2, 3], 8, 1f, 0f, 0.1f, false, [4], [-1], [2f / 3f], 3),
        new("no match gives nothing", [7, 8], 8, 1f, 0f, 0.1f, false, [], [], [], 0),
        new("zero budget gives nothing", [1, 2], 0, 1f, 0f, 0.1f, false, [], [], [], 0),
    ];

    public static TheoryData<string> Cases => new(AllCases.Select(c => c.Name));

    [Theory]
    [MemberData(nameof(Cases))]
    public void DraftsAsWorkedOut(string name)
    {
        (_, int[] context, int budget, float factor, float offset, float minProb, bool useTree, int[] tokens, int[] parents,
            float[] probabilities, int matchLength) = AllCases.Single(c => c.Name == name);
        var settings = new SpeculationSettings(budget, new MatchLengthRule(budget, factor, offset), minProb, useTree);
        DraftTree draft = Sample().Speculate(context, settings);
        Assert.Equal(tokens, draft.Tokens.ToArray());
        Assert.Equal(parents, draft.Parents.ToArray());
        Assert.Equal(probabilities.Length, draft.Count);
        for (int i = 0; i < probabilities.Length; i++)
        {
            Assert.Equal(probabilities[i], draft.Probabilities[i], 5);
        }
        if (tokens.Length > 0)
        {
            Assert.Equal(matchLength, draft.MatchLength);
        }
    }

    [Fact]
    public void MoreFrequentChildComesFirstAfterCountsChange()
    {
        var tree = new SuffixTree(8);
        tree.Extend(0, [1, 5, 1, 6, 1, 6]);
        DraftTree draft = tree.Speculate([1], SpeculationSettings.Default(1));
        Assert.Equal([6], draft.Tokens.ToArray());
        tree.Extend(1, [1, 5, 1, 5, 1, 5]);   // now 5 follows 1 four times, 6 twice
        draft = tree.Speculate([1], SpeculationSettings.Default(1));
        Assert.Equal([5], draft.Tokens.ToArray());
        tree.Remove(1);
        draft = tree.Speculate([1], SpeculationSettings.Default(1));
        Assert.Equal([6], draft.Tokens.ToArray());
        tree.CheckIntegrity();
    }

    [Fact]
    public void DepthBoundsTheMatchAndTheDraft()
    {
        var tree = new SuffixTree(4);
        tree.Extend(0, [1, 2, 3, 4, 5, 6, 7]);
        // Only 4-token paths exist: after matching "2 3" two more tokens fit, after matching "3" three, which scores higher.
        var settings = new SpeculationSettings(10, new MatchLengthRule(10, 10f, 0f), 0f, false);
        Assert.Equal([4, 5], tree.DraftForMatch([2, 3], 2, settings).Tokens.ToArray());
        DraftTree draft = tree.Speculate([2, 3], settings);
        Assert.Equal([4, 5, 6], draft.Tokens.ToArray());
        Assert.Equal(1, draft.MatchLength);
        Assert.Equal(0, tree.CountOf([1, 2, 3, 4, 5]));
        Assert.Equal(1, tree.CountOf([4, 5, 6, 7]));
    }

    [Fact]
    public void RemovingEverySequenceLeavesAnEmptyTree()
    {
        SuffixTree tree = Sample(3);
        Assert.True(tree.Remove(1));
        Assert.False(tree.Remove(1));
        tree.CheckIntegrity();
        Assert.Equal(2, tree.CountOf([1, 2, 3]));
        Assert.Equal(0, tree.CountOf([3, 5]));
        Assert.True(tree.Remove(0));
        Assert.True(tree.Remove(2));
        tree.CheckIntegrity();
        Assert.Equal(1, tree.NodeCount);
        Assert.Equal(0, tree.SequenceCount);
    }

    [Fact]
    public void BadInputLeavesTheTreeUnchanged()
    {
        SuffixTree tree = Sample();
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.Extend(0, [1, -2, 3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.Append(-1, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.Append(0, -3));
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.Speculate([1], SpeculationSettings.Default(-1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => tree.Speculate([1], new SpeculationSettings(4, new MatchLengthRule(4), 1.5f, false)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SuffixTree(0));
        Assert.Throws<KeyNotFoundException>(() => tree.SequenceLength(42));
        Assert.Equal(4, tree.SequenceLength(0));
        Assert.Equal(12, tree.TokenCount);
        Assert.True(tree.Speculate([], SpeculationSettings.Default(4)).IsEmpty);
        tree.CheckIntegrity();
    }
}
