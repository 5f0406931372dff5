namespace SpecDecode.Tree.Tests;

/// <summary>The batch-wide pruning rule against a brute-force search over caps, and its two extremes.</summary>
public sealed class AdaptiveSpeculationTests
{
    /// <summary>A cost table for batches 1 .. <paramref name="maxBatch"/> and widths 1, 2, 4, .., 64: seconds(batch, width).</summary>
    private static VerificationCostModel Table(int maxBatch, Func<int, int, double> seconds)
    {
        int[] batches = Enumerable.Range(1, maxBatch).ToArray();
        int[] widths = [1, 2, 4, 8, 16, 32, 64];
        var table = new double[batches.Length, widths.Length];
        for (int i = 0; i < batches.Length; i++)
        {
            for (int j = 0; j < widths.Length; j++)
            {
                table[i, j] = seconds(batches[i], widths[j]);
            }
        }
        return new VerificationCostModel(batches, widths, table);
    }

    private static VerificationCostModel LinearInWidth(int maxBatch, double perWidth) =>
        Table(maxBatch, (batch, width) => 0.01 * (1 + perWidth * batch * (width - 1)));

    /// <summary>Costs of a ragged kernel path: flat up to 64 rows, then steep (the libtorch path).</summary>
    private static VerificationCostModel FlatTo64(int maxBatch) =>
        Table(maxBatch, (batch, width) => batch * width <= 64 ? 0.010 + 0.00001 * batch * width : 0.03 * batch * width / 64.0);

    /// <summary>Every kept tree is an ancestor-closed subset of its original: each kept path is a path of the original with
    /// the same tokens.</summary>
    private static void AssertAncestorClosedSubsets(DraftTree[] kept, DraftTree[] trees)
    {
        for (int i = 0; i < trees.Length; i++)
        {
            for (int node = 0; node < kept[i].Count; node++)
            {
                int[] path = kept[i].TokensTo(node);
                Assert.Contains(Enumerable.Range(0, trees[i].Count), n => trees[i].TokensTo(n).SequenceEqual(path));
            }
        }
    }

    private static DraftTree RandomTree(Random rng, int count)
    {
        var tokens = new List<int>();
        var parents = new List<int>();
        var probabilities = new List<float>();
        for (int n = 0; n < count; n++)
        {
            int parent = n == 0 ? -1 : rng.Next(-1, n);
            float parentP = parent < 0 ? 1f : probabilities[parent];
            tokens.Add(1000 + n); // distinct tokens: siblings never clash
            parents.Add(parent);
            probabilities.Add(parentP * (float)(0.2 + 0.8 * rng.NextDouble()));
        }
        return DraftTree.Create(tokens.ToArray(), parents.ToArray(), probabilities.ToArray());
    }

    [Theory]
    [InlineData(1, 0.01)]
    [InlineData(4, 0.02)]
    [InlineData(8, 0.005)]
    public void ChosenCap_IsTheBestOfAllCaps_AndEveryTreeIsAnAncestorClosedSubset(int batch, double perWidth)
    {
        var rng = new Random(batch);
        VerificationCostModel cost = LinearInWidth(8, perWidth);
        DraftTree[] trees = Enumerable.Range(0, batch).Select(_ => RandomTree(rng, rng.Next(0, 20))).ToArray();
        var rule = new AdaptiveSpeculation(cost);

        DraftTree[] kept = rule.Select(trees, out double expected);

        int cap = kept.Max(t => t.Count);
        double Ratio(int c, out double gain)
        {
            // Independent reference: for cap c, the c most probable nodes of each tree (they are ancestor-closed because
            // probabilities never rise along a path), by sorting instead of best-first search.
            gain = trees.Sum(t => t.Probabilities.ToArray().OrderDescending().Take(c).Sum(p => (double)p));
            return (batch + gain) / cost.Predict(batch, batch * (c + 1));
        }
        double chosen = Ratio(cap, out double chosenGain);
        for (int c = 0; c <= 20; c++)
        {
            Assert.True(Ratio(c, out _) <= chosen + 1e-9, $"cap {c} beats the chosen cap {cap}");
        }
        Assert.Equal(chosenGain, expected, 5);
        for (int i = 0; i < batch; i++)
        {
            Assert.True(kept[i].Count <= Math.Min(cap, trees[i].Count));
        }
        AssertAncestorClosedSubsets(kept, trees);
    }

    [Fact]
    public void FlatCost_KeepsEveryTree_AndSteepCost_KeepsNone()
    {
        var rng = new Random(3);
        DraftTree[] trees = Enumerable.Range(0, 4).Select(_ => RandomTree(rng, 12)).ToArray();
        DraftTree[] all = new AdaptiveSpeculation(LinearInWidth(4, 0)).Select(trees, out _);
        Assert.Equal(trees, all); // the same objects: nothing cut
        DraftTree[] none = new AdaptiveSpeculation(LinearInWidth(4, 10)).Select(trees, out double expected);
        Assert.All(none, t => Assert.True(t.IsEmpty));
        Assert.Equal(0, expected);
    }

    [Theory]
    [InlineData(2, 1)]
    [InlineData(6, 2)]
    [InlineData(8, 3)]
    public void RaggedSteps_TakeTheBestNodesOfAllTrees_AndBeatEveryCapAndEveryNodeCount(int batch, int seed)
    {
        var rng = new Random(seed);
        VerificationCostModel cost = FlatTo64(8);
        DraftTree[] trees = Enumerable.Range(0, batch).Select(i => i == 0 ? DraftTree.Empty : RandomTree(rng, rng.Next(5, 30))).ToArray();
        var rule = new AdaptiveSpeculation(cost) { RaggedRows = 64 };

        DraftTree[] kept = rule.Select(trees, out double expected);

        double[] all = trees.SelectMany(t => t.Probabilities.ToArray().Select(p => Math.Min(1.0, p))).OrderDescending().ToArray();
        int nodes = kept.Sum(t => t.Count);
        int rows = rule.StepRows(kept);
        double chosen = (batch + expected) / cost.Predict(batch, rows);
        // brute force: every cap, priced padded as the libtorch path computes it ...
        for (int cap = 0; cap <= 30; cap++)
        {
            double gain = trees.Sum(t => t.Probabilities.ToArray().OrderDescending().Take(cap).Sum(p => Math.Min(1.0, p)));
            Assert.True((batch + gain) / cost.Predict(batch, batch * (cap + 1)) <= chosen + 1e-9, $"cap {cap} beats the choice");
        }
        // ... and every count of the most valuable nodes of all trees, priced by its rows
        for (int k = 0; k <= Math.Min(all.Length, 64 - batch); k++)
        {
            Assert.True((batch + all.Take(k).Sum()) / cost.Predict(batch, batch + k) <= chosen + 1e-6, $"the best {k} nodes beat the choice");
        }
        if (batch >= 6)
        {
            // more nodes than 64 rows hold: no cap fills the rows as well as the best nodes of all trees
            Assert.Equal(batch + nodes, rows);
        }
        if (rows == batch + nodes)
        {
            // ragged: within the kernels' rows, and the kept nodes are the most valuable of all trees
            Assert.True(rows <= 64);
            Assert.Equal(all.Take(nodes).Sum(), expected, 4);
        }
        AssertAncestorClosedSubsets(kept, trees);
    }

    /// <summary>Wide ragged steps (the kernels with cuBLAS's products, up to 512 rows) still keep at most 64 entries per
    /// sequence: the kernels' ancestor word. A cost without any growth in rows would otherwise keep every node.</summary>
    [Fact]
    public void RaggedSteps_KeepAtMostRaggedWidthEntriesPerSequence()
    {
        var rng = new Random(5);
        VerificationCostModel flat = Table(4, (_, _) => 0.01);
        DraftTree[] trees = Enumerable.Range(0, 4).Select(_ => RandomTree(rng, 100)).ToArray();
        DraftTree[] unbounded = new AdaptiveSpeculation(flat) { RaggedRows = 512 }.Select(trees, out _);
        Assert.Contains(unbounded, t => t.Count + 1 > 64);
        DraftTree[] kept = new AdaptiveSpeculation(flat) { RaggedRows = 512, RaggedWidth = 64 }.Select(trees, out _);
        Assert.All(kept, t => Assert.InRange(t.Count + 1, 2, 64));
        AssertAncestorClosedSubsets(kept, trees);
    }

    /// <summary>The tree kernels pad a step to 8, 16, 32, .. rows, so 17 rows cost what 32 do. Priced by its real rows
    /// (a table interpolated between the padded sizes it measured), a ragged step stops inside a padded size, paying for
    /// rows it leaves empty; with <see cref="AdaptiveSpeculation.PadRows"/> it fills the padded size it pays for.</summary>
    [Fact]
    public void RaggedSteps_ArePricedAtTheirPaddedRows()
    {
        // cost linear in rows at the measured points; chains whose k-th node has probability 0.8^k
        VerificationCostModel linear = Table(4, (batch, width) => 0.01 + 0.0005 * batch * width);
        DraftTree Chain(int n) => DraftTree.Create(Enumerable.Range(1, n).ToArray(), Enumerable.Range(-1, n).ToArray(),
            Enumerable.Range(1, n).Select(k => (float)Math.Pow(0.8, k)).ToArray());
        DraftTree[] trees = Enumerable.Range(0, 4).Select(_ => Chain(10)).ToArray();

        var unpadded = new AdaptiveSpeculation(linear) { RaggedRows = 64 };
        Assert.Equal(20, unpadded.StepRows(unpadded.Select(trees, out _)));   // a 32-row step with 12 rows empty
        var padded = new AdaptiveSpeculation(linear) { RaggedRows = 64, PadRows = KernelTreeStep.PaddedRows };
        DraftTree[] kept = padded.Select(trees, out _);
        Assert.Equal(16, kept.Sum(t => t.Count + 1));   // 16 real rows: the 16-row step full
        Assert.Equal(16, padded.StepRows(kept));
        // plain steps are not padded (the table measured them as they are); ragged steps with drafts are
        Assert.Equal(5, padded.StepRows(Enumerable.Repeat(DraftTree.Empty, 5).ToArray()));
        Assert.Equal(32, padded.StepRows([Chain(4), Chain(10), DraftTree.Empty]));   // 17 rows
    }

    /// <summary>Whether to draft at all is judged on the largest step the budgets allow, priced as the step would run: one
    /// request with a budget of 40 among seven of 1 makes a ragged step of 8 + 40 + 7 = 55 rows (64 padded) on the kernels,
    /// not 8 × 41 padded rows on the libtorch path.</summary>
    [Fact]
    public void WorthDrafting_PricesTheBudgetsRaggedWhereTheKernelsTakeThem()
    {
        // kernels up to 64 rows: cheap; past them (the libtorch path) steep
        VerificationCostModel cost = FlatTo64(8);
        (int, double)[] requests = [(40, 3.0), .. Enumerable.Repeat((1, 0.2), 7)];
        Assert.False(new AdaptiveSpeculation(cost).WorthDrafting(requests));
        Assert.True(new AdaptiveSpeculation(cost) { RaggedRows = 64, PadRows = KernelTreeStep.PaddedRows }.WorthDrafting(requests));
        // nothing expected from drafting: never worth it
        Assert.False(new AdaptiveSpeculation(cost) { RaggedRows = 64 }.WorthDrafting(Enumerable.Repeat((4, 0.0), 8).ToArray()));
    }

    [Fact]
    public void StepRows_CountsRaggedRowsOnlyWithinTheKernelsLimit()
    {
        var rng = new Random(9);
        DraftTree[] trees = [RandomTree(rng, 3), RandomTree(rng, 10), DraftTree.Empty];
        Assert.Equal(4 + 11 + 1, new AdaptiveSpeculation(FlatTo64(4)) { RaggedRows = 64 }.StepRows(trees));
        Assert.Equal(3 * 11, new AdaptiveSpeculation(FlatTo64(4)) { RaggedRows = 0 }.StepRows(trees));
        Assert.Equal(3 * 11, new AdaptiveSpeculation(FlatTo64(4)) { RaggedRows = 15 }.StepRows(trees));
    }
}
