namespace SpecDecode.Tree;

/// <summary>
/// Chooses, for one step of the whole batch, which draft nodes to verify so that the expected tokens per second are
/// highest: each node's calibrated acceptance probability is its expected contribution (the expected accepted length of
/// a tree is the sum of its nodes' path probabilities), and the verification cost model prices the tokens.
/// </summary>
/// <remarks>
/// <para>The verifier pads every sequence to the batch's widest tree, so a step costs what batch × widest tree costs.
/// For each cap on nodes per tree, every tree keeps its best nodes up to the cap (best-first: highest probability among
/// the nodes whose parent is kept, so every selection is ancestor-closed), and the ratio (batch + expected accepted) /
/// predicted step time is evaluated; the cap with the best ratio wins, including 0 (plain decoding) when no draft pays
/// for itself. When verification becomes compute-bound, at large batches or long trees, the predicted time grows with
/// the width and the cap shrinks by itself.</para>
/// <para>The drafters' probabilities are estimates; a calibration factor (moving average of accepted over expected
/// tokens of the selected nodes) corrects them online. The idea of pricing tokens by a measured cost curve follows
/// SpecInfer's and Sequoia's tree sizing and the goodput objective of SmartSpec (Liu et al., 2024); the rule here is
/// SpecDecode's own.</para>
/// </remarks>
internal sealed class AdaptiveSpeculation
{
    private readonly VerificationCostModel _cost;
    private double _calibration = 1.0;
    private double _draftSeconds;
    private bool _draftTimed;

    public AdaptiveSpeculation(VerificationCostModel cost) => _cost = cost;

    /// <summary>The selection for a model's step paths: ragged steps priced by their padded rows up to the tree kernels'
    /// step limit when <paramref name="treeKernels"/> (<see cref="TargetModel.UsesTreeKernels"/>), else every step
    /// padded to the widest tree. The engine's one rule; benchmarks take it from here too.</summary>
    public static AdaptiveSpeculation For(VerificationCostModel cost, bool treeKernels) => new(cost)
    {
        RaggedRows = treeKernels ? KernelTreeStep.StepRowLimit : 0,
        RaggedWidth = KernelTreeStep.MaxRows,
        PadRows = KernelTreeStep.PaddedRows,
    };

    /// <summary>The current calibration factor (accepted / expected of recent selections).</summary>
    public double Calibration => _calibration;

    /// <summary>The cost model (refined by <see cref="ObserveStep"/>).</summary>
    public VerificationCostModel Cost => _cost;

    /// <summary>Steps of at most this many rows in all (roots and draft nodes) run ragged, each sequence its own rows only
    /// (the batched tree kernels, <see cref="TargetModel.UsesTreeKernels"/>), and are priced by their rows; longer steps
    /// pad every sequence to the widest tree (the libtorch path). 0: every step pads.</summary>
    public int RaggedRows { get; init; }

    /// <summary>Entries (root and draft nodes) one sequence keeps at most in a ragged step (the tree kernels' ancestor word
    /// covers 64).</summary>
    public int RaggedWidth { get; init; } = int.MaxValue;

    /// <summary>The rows a ragged step of that many rows computes (the tree kernels pad to 8, 16, .., 512 rows and cost what
    /// the padded step costs); null: its rows. Applied to steps with draft rows only, so that plain steps are priced as the
    /// cost table measured them.</summary>
    public Func<int, int>? PadRows { get; init; }

    /// <summary>The rows a step of these trees computes: their roots and nodes where the step runs ragged
    /// (<see cref="RaggedRows"/>; padded by <see cref="PadRows"/> when it has draft rows), else batch × the widest tree.</summary>
    public int StepRows(IReadOnlyList<DraftTree> trees)
    {
        int ragged = 0, widest = 0;
        foreach (DraftTree tree in trees)
        {
            ragged += tree.Count + 1;
            widest = Math.Max(widest, tree.Count + 1);
        }
        return PricedRows(trees.Count, ragged, widest);
    }

    /// <summary>The rows a step of <paramref name="batch"/> sequences is priced at, from its <paramref name="ragged"/> rows
    /// (roots and draft nodes) and its widest sequence's <paramref name="width"/> entries: ragged (padded by
    /// <see cref="PadRows"/> when it has draft rows) where the kernels take it, else every sequence padded to the width.</summary>
    private int PricedRows(int batch, int ragged, int width) => ragged <= RaggedRows ? Padded(batch, ragged) : batch * width;

    /// <summary>The rows a ragged step of <paramref name="rows"/> rows over <paramref name="batch"/> sequences is priced at.</summary>
    private int Padded(int batch, int rows) => rows > batch && PadRows is { } pad ? pad(rows) : rows;

    /// <summary>
    /// Whether drafting is worth running this step, judged before drafting from each request's recent accepted tokens per
    /// draft and its budget: false when even those expected tokens do not pay for drafting plus the larger verification.
    /// </summary>
    public bool WorthDrafting(IReadOnlyList<(int Budget, double RecentAccepted)> requests)
    {
        int batch = requests.Count;
        if (batch == 0)
        {
            return false;
        }
        double expected = 0;
        int widest = 0, ragged = batch;
        foreach ((int budget, double recent) in requests)
        {
            expected += Math.Min(budget, recent);
            widest = Math.Max(widest, budget);
            ragged += Math.Min(budget, RaggedWidth - 1);
        }
        // the largest step the drafts could make, priced as Select prices it
        int tokens = PricedRows(batch, ragged, widest + 1);
        double plain = batch / _cost.Predict(batch, batch);
        double draft = _draftTimed ? _draftSeconds : 0;
        double speculative = (batch + expected) / (_cost.Predict(batch, tokens) + draft);
        return speculative > plain;
    }

    /// <summary>Prunes every tree to the batch-wide best selection; returns the trees to verify (the same objects where
    /// nothing was cut) and the expected accepted tokens of the selection.</summary>
    /// <remarks>A libtorch verification step pads every sequence to the widest tree of the batch, so its cost follows batch
    /// size × widest tree, not the number of draft tokens: for each cap w on nodes per tree, each tree keeps its w best
    /// nodes (best-first, so ancestor-closed), and the cap with the best expected tokens per second wins (0: no draft).
    /// Where steps of up to <see cref="RaggedRows"/> rows run ragged, the candidates also include, for every row count up
    /// to that, the most valuable nodes of all trees together (the trees' best-first orders merged by marginal gain, so
    /// each tree keeps an ancestor-closed prefix), priced by their rows; the best of all candidates wins.</remarks>
    public DraftTree[] Select(IReadOnlyList<DraftTree> trees, out double expectedAccepted)
    {
        int batch = trees.Count;
        var orders = new int[batch][];
        var gains = new double[batch][];
        int widest = 0;
        for (int i = 0; i < batch; i++)
        {
            orders[i] = BestFirst(trees[i]);
            gains[i] = new double[orders[i].Length + 1];
            for (int k = 0; k < orders[i].Length; k++)
            {
                gains[i][k + 1] = gains[i][k] + Math.Min(1.0, trees[i].Probabilities[orders[i][k]] * _calibration);
            }
            widest = Math.Max(widest, orders[i].Length);
        }
        double bestRatio = batch / _cost.Predict(batch, batch), bestExpected = 0;
        int bestCap = 0;
        // a tree wider than RaggedWidth leaves the kernels for a path the cost table (widths up to 64) does not price
        for (int cap = 1; cap <= Math.Min(widest, RaggedWidth - 1); cap++)
        {
            double expected = 0;
            int ragged = batch;
            for (int i = 0; i < batch; i++)
            {
                expected += gains[i][Math.Min(cap, orders[i].Length)];
                ragged += Math.Min(cap, orders[i].Length);
            }
            // priced as StepRows will count the step
            double ratio = (batch + expected) / _cost.Predict(batch, PricedRows(batch, ragged, cap + 1));
            if (ratio > bestRatio)
            {
                bestRatio = ratio;
                bestCap = cap;
                bestExpected = expected;
            }
        }
        int[]? bestCounts = null;
        if (RaggedRows > batch)
        {
            // the trees' best-first orders merged by marginal gain (non-increasing along each order: a node's probability
            // is at most its parent's), priced by the step's real rows
            var taken = new int[batch];
            var next = new PriorityQueue<int, (double Gain, int Tree)>();
            for (int i = 0; i < batch; i++)
            {
                if (orders[i].Length > 0)
                {
                    next.Enqueue(i, (-gains[i][1], i));
                }
            }
            double expected = 0;
            for (int rows = batch + 1; rows <= RaggedRows && next.TryDequeue(out int i, out _); rows++)
            {
                taken[i]++;
                expected += gains[i][taken[i]] - gains[i][taken[i] - 1];
                if (taken[i] < orders[i].Length && taken[i] + 1 < RaggedWidth)
                {
                    next.Enqueue(i, (-(gains[i][taken[i] + 1] - gains[i][taken[i]]), i));
                }
                double ratio = (batch + expected) / _cost.Predict(batch, Padded(batch, rows));
                if (ratio > bestRatio)
                {
                    bestRatio = ratio;
                    bestExpected = expected;
                    bestCounts = (int[])taken.Clone();
                }
            }
        }
        expectedAccepted = bestExpected;
        var result = new DraftTree[batch];
        for (int i = 0; i < batch; i++)
        {
            int keep = bestCounts?[i] ?? Math.Min(bestCap, orders[i].Length);
            result[i] = keep == 0 ? DraftTree.Empty
                : keep == trees[i].Count ? trees[i]
                : Subtree(trees[i], [.. orders[i].AsSpan(0, keep)]);
        }
        return result;
    }

    /// <summary>The nodes of <paramref name="tree"/> best-first: the most probable node among those whose parent is
    /// already listed, so every prefix is ancestor-closed.</summary>
    private static int[] BestFirst(DraftTree tree)
    {
        var order = new int[tree.Count];
        var queue = new PriorityQueue<int, float>();
        foreach (int child in tree.Children(-1))
        {
            queue.Enqueue(child, -tree.Probabilities[child]);
        }
        int n = 0;
        while (queue.TryDequeue(out int node, out _))
        {
            order[n++] = node;
            foreach (int child in tree.Children(node))
            {
                queue.Enqueue(child, -tree.Probabilities[child]);
            }
        }
        return order;
    }

    /// <summary>Refines the calibration and the cost model with what a step measured.</summary>
    public void ObserveStep(int batch, int totalTokens, double verifySeconds, bool drafted, double draftSeconds, double expectedAccepted, int accepted)
    {
        _cost.Observe(batch, totalTokens, verifySeconds);
        if (drafted)
        {
            // Only steps that drafted say what drafting costs (a step that skipped it must not make it look free).
            _draftSeconds = _draftTimed ? 0.9 * _draftSeconds + 0.1 * draftSeconds : draftSeconds;
            _draftTimed = true;
        }
        if (expectedAccepted >= 0.5)
        {
            double ratio = Math.Clamp(accepted / (expectedAccepted / _calibration), 0.02, 1.5);
            _calibration = Math.Clamp(0.95 * _calibration + 0.05 * ratio, 0.02, 1.5);
        }
    }

    /// <summary>The ancestor-closed subset <paramref name="nodes"/> of <paramref name="tree"/> as a tree of its own.</summary>
    internal static DraftTree Subtree(DraftTree tree, List<int> nodes)
    {
        nodes.Sort(); // parents precede children in a DraftTree, so index order keeps that
        var index = new Dictionary<int, int>(nodes.Count);
        var tokens = new int[nodes.Count];
        var parents = new int[nodes.Count];
        var probabilities = new float[nodes.Count];
        for (int k = 0; k < nodes.Count; k++)
        {
            int node = nodes[k];
            index[node] = k;
            tokens[k] = tree.Tokens[node];
            int parent = tree.Parents[node];
            parents[k] = parent < 0 ? -1 : index[parent];
            probabilities[k] = tree.Probabilities[node];
        }
        return DraftTree.Create(tokens, parents, probabilities, nodes.Count, tree.MatchLength);
    }
}
