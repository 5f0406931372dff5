namespace SpecDecode.Tree;

/// <summary>
/// Chooses, for one step of the whole batch, which draft nodes to verify so that the expected tokens per second are
/// highest: each node's calibrated acceptance probability is its expected contribution (the expected accepted length of
/// a tree is the sum of its nodes' path probabilities), and the verification cost model prices the tokens.
/// </summary>
/// <remarks>
/// <para>Nodes of all trees are taken best-first (highest probability among the nodes whose parent is already taken, so
/// every selection is ancestor-closed), and after each node the ratio (batch + expected accepted) / predicted step time
/// is evaluated; the prefix with the best ratio wins, including the empty one (plain decoding) when no draft pays for
/// itself. When verification becomes compute-bound, at large batches or long trees, the predicted time grows with the
/// tokens and the selection shrinks by itself.</para>
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

    /// <summary>The current calibration factor (accepted / expected of recent selections).</summary>
    public double Calibration => _calibration;

    /// <summary>The cost model (refined by <see cref="ObserveStep"/>).</summary>
    public VerificationCostModel Cost => _cost;

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
        int tokens = batch;
        foreach ((int budget, double recent) in requests)
        {
            expected += Math.Min(budget, recent);
            tokens += budget;
        }
        double plain = batch / _cost.Predict(batch, batch);
        double draft = _draftTimed ? _draftSeconds : 0;
        double speculative = (batch + expected) / (_cost.Predict(batch, tokens) + draft);
        return speculative > plain;
    }

    /// <summary>Prunes every tree to the batch-wide best selection; returns the trees to verify (the same objects where
    /// nothing was cut) and the expected accepted tokens of the selection.</summary>
    public DraftTree[] Select(IReadOnlyList<DraftTree> trees, out double expectedAccepted)
    {
        int batch = trees.Count;
        var queue = new PriorityQueue<(int Tree, int Node), float>();
        for (int i = 0; i < batch; i++)
        {
            foreach (int child in trees[i].Children(-1))
            {
                queue.Enqueue((i, child), -trees[i].Probabilities[child]);
            }
        }
        var order = new List<(int Tree, int Node)>();
        double gain = batch, bestRatio = batch / _cost.Predict(batch, batch), expected = 0, bestExpected = 0;
        int bestCount = 0;
        while (queue.TryDequeue(out (int Tree, int Node) item, out float negative))
        {
            order.Add(item);
            double p = Math.Min(1.0, -negative * _calibration);
            gain += p;
            expected += p;
            double ratio = gain / _cost.Predict(batch, batch + order.Count);
            if (ratio > bestRatio)
            {
                bestRatio = ratio;
                bestCount = order.Count;
                bestExpected = expected;
            }
            DraftTree tree = trees[item.Tree];
            foreach (int child in tree.Children(item.Node))
            {
                queue.Enqueue((item.Tree, child), -tree.Probabilities[child]);
            }
        }
        expectedAccepted = bestExpected;
        var keep = new List<int>[batch];
        for (int k = 0; k < bestCount; k++)
        {
            (keep[order[k].Tree] ??= []).Add(order[k].Node);
        }
        var result = new DraftTree[batch];
        for (int i = 0; i < batch; i++)
        {
            result[i] = keep[i] is null ? DraftTree.Empty
                : keep[i].Count == trees[i].Count ? trees[i]
                : Subtree(trees[i], keep[i]);
        }
        return result;
    }

    /// <summary>Refines the calibration and the cost model with what a step measured.</summary>
    public void ObserveStep(int batch, int totalTokens, double verifySeconds, double draftSeconds, double expectedAccepted, int accepted)
    {
        _cost.Observe(batch, totalTokens, verifySeconds);
        _draftSeconds = _draftTimed ? 0.9 * _draftSeconds + 0.1 * draftSeconds : draftSeconds;
        _draftTimed = true;
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
