namespace SpecDecode.Suffix.Tests;

/// <summary>Calibrated drafting: thresholds, budgets, learning from outcomes, and merged candidate trees.</summary>
public sealed class CalibratedDraftingTests
{
    private static readonly RequestId R1 = new(1), R2 = new(2);

    [Theory]
    [InlineData(0.1f, false, false)]
    [InlineData(0.3f, false, false)]
    [InlineData(0.1f, true, false)]
    [InlineData(0.1f, false, true)]
    [InlineData(0.05f, true, true)]
    public void DraftsRespectThresholdAndBudgetAndLearnFromEveryJudgedToken(float threshold, bool tree, bool merge)
    {
        var rng = new Random(5);
        int[] corpus = Enumerable.Range(0, 4000).Select(_ => rng.Next(12)).ToArray();
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { CalibratedThreshold = threshold, UseTree = tree, MergeCandidates = merge });
        drafter.StartRequest(R1, corpus.AsSpan(0, 2000), null);
        long judged = 0;
        for (int pos = 2000; pos < 3500;)
        {
            int budget = rng.Next(0, 12);
            DraftTree draft = drafter.Propose(R1, budget);
            Assert.True(draft.Count <= budget);
            foreach (float p in draft.Probabilities)
            {
                Assert.True(p >= threshold, $"a draft token has estimate {p} below the threshold {threshold}");
            }
            int accepted = draft.AcceptGreedy(corpus.AsSpan(pos), out _);
            int[] emitted = corpus.AsSpan(pos, accepted + 1).ToArray();
            judged += CountJudged(draft, emitted);
            drafter.Observe(R1, emitted);
            Assert.Equal(judged, drafter.Cache.CalibrationObservations);
            pos += emitted.Length;
        }
        Assert.True(judged > 50, $"only {judged} outcomes learned");
        drafter.EndRequest(R1);
        drafter.Cache.CheckIntegrity();
    }

    // A node is judged when its parent was accepted (or it is a first token) and the emitted tokens reach its depth.
    private static long CountJudged(DraftTree draft, int[] emitted)
    {
        long judged = 0;
        var accepted = new bool[draft.Count];
        for (int i = 0; i < draft.Count; i++)
        {
            int parent = draft.Parents[i];
            if ((parent >= 0 && !accepted[parent]) || draft.Depths[i] > emitted.Length)
            {
                continue;
            }
            judged++;
            accepted[i] = draft.Tokens[i] == emitted[draft.Depths[i] - 1];
        }
        return judged;
    }

    [Fact]
    public void LearnsThatAnUnreliableContinuationIsUnreliable()
    {
        // The prompt says 7 is followed by 8, but from now on the target always follows 7 with a token never seen
        // before: the count-based drafter keeps proposing 8, the calibrated one learns to stop.
        int[] prompt = [.. Enumerable.Repeat(new[] { 7, 8, 1, 2, 3 }, 40).SelectMany(x => x), 7];
        using var calibrated = new SuffixDrafter(new SuffixDrafterOptions { CalibratedThreshold = 0.3f });
        using var counting = new SuffixDrafter();
        calibrated.StartRequest(R1, prompt, null);
        counting.StartRequest(R2, prompt, null);
        int calibratedProposals = 0, countingProposals = 0;
        for (int step = 0; step < 200; step++)
        {
            int[] next = [1000 + step, 7];
            calibratedProposals += calibrated.Propose(R1, 4) is { IsEmpty: false } a && a.Tokens[0] == 8 ? 1 : 0;
            countingProposals += counting.Propose(R2, 4) is { IsEmpty: false } b && b.Tokens[0] == 8 ? 1 : 0;
            calibrated.Observe(R1, next);
            counting.Observe(R2, next);
        }
        Assert.True(countingProposals > 150, $"count-based drafter proposed 8 only {countingProposals} times");
        Assert.True(calibratedProposals < 30, $"calibrated drafter kept proposing the wrong token {calibratedProposals} times");
    }

    [Fact]
    public void AcceptanceEstimatesMoveFromThePriorTowardsTheOutcomes()
    {
        var model = new AcceptanceModel();
        int cell = AcceptanceModel.Cell(source: 0, match: 10, depth: 0, count: 1, parentCount: 1);
        float prior = model.Conditional(cell);
        Assert.Equal(10f / 11f, prior, 5);
        for (int i = 0; i < 100; i++)
        {
            model.Record(cell, accepted: false);
        }
        Assert.True(model.Conditional(cell) < 0.1f);
        int other = AcceptanceModel.Cell(source: 1, match: 10, depth: 0, count: 1, parentCount: 1);
        Assert.NotEqual(cell, other);
        Assert.Equal(prior, model.Conditional(other));
        for (int i = 0; i < 1000; i++)
        {
            model.Record(other, accepted: true);
        }
        Assert.True(model.Conditional(other) > 0.99f);
        Assert.Equal(1100, model.Observations);
    }

    [Fact]
    public void MergedTreeHoldsTheCandidatesOfBothTrees()
    {
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { CalibratedThreshold = 0.01f, MergeCandidates = true });
        drafter.StartRequest(R1, [1], null);
        drafter.Observe(R1, [4, 5, 6, 7, 8]);
        drafter.EndRequest(R1);
        // Own context: 4 5 -> 9; global: 4 5 -> 6. The merged draft offers both continuations.
        drafter.StartRequest(R2, [4, 5, 9, 3, 4, 5], null);
        DraftTree draft = drafter.Propose(R2, 16);
        int[] firsts = draft.Children(-1).ToArray().Select(i => draft.Tokens[i]).Order().ToArray();
        Assert.Equal([6, 9], firsts);
    }

    [Fact]
    public void ThresholdOutOfRangeIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SuffixDrafter(new SuffixDrafterOptions { CalibratedThreshold = 1f }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SuffixDrafter(new SuffixDrafterOptions { CalibratedThreshold = -0.1f }));
        Assert.Throws<ArgumentException>(() => new SuffixDrafter(new SuffixDrafterOptions { MergeCandidates = true }));
    }
}
