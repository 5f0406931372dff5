using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The step backend of one rank of a tensor-parallel model: the reference path's forward on the rank's heads and MLP
/// columns (its layers all-reduce after o and down, its head's logits are gathered), with acceptance computed once. The
/// coordinator (rank 0) runs the whole reference step: forward, greedy, forced or sampled acceptance (its random streams
/// are the only ones that draw), and the commit in its cache; then it broadcasts what it accepted. Every other rank runs
/// the same forward (the same collectives), takes the coordinator's decision and moves the same rows in its own cache, so
/// the ranks' caches never disagree, whatever the rule or the randomness.
/// </summary>
internal sealed class TensorParallelBackend(ModelParts parts, ReferenceBackend reference) : IStepBackend
{
    private TensorParallelRank Rank => parts.Parallel!;

    /// <inheritdoc />
    public string Name => $"tensor parallel, rank {Rank.Rank} of {Rank.WorldSize} ({Rank.Communicator.Name}), libtorch eager layers";

    /// <inheritdoc />
    public string? Refuses(VerifyStep step) => null;

    /// <inheritdoc />
    public VerifiedStep[] Verify(VerifyStep step) => Rank.Guard(() => Rank.IsCoordinator ? Decide(step) : Follow(step.Inputs));

    /// <summary>The coordinator: the reference step, then its decision to every rank.</summary>
    private VerifiedStep[] Decide(VerifyStep step)
    {
        VerifiedStep[] steps = reference.Verify(step);
        if (Rank.WorldSize > 1)
        {
            Rank.Communicator.Broadcast(EncodeDecision(steps), 0);
        }
        return steps;
    }

    /// <summary>Another rank: the same forward, the coordinator's decision, the same commit.</summary>
    private VerifiedStep[] Follow(IReadOnlyList<TreeInput> inputs)
    {
        KvCache cache = parts.Cache;
        StepPlan plan = StepPlan.ForTrees(inputs, cache.Lengths, cache.Capacity);
        VerifiedStep[] steps;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            StepTensors step = reference.Forward(plan);
            steps = DecodeDecision(Rank.Communicator.Broadcast(null, 0), inputs);
            int window = plan.MaxDepth + 1;
            var entryAtDepth = new long[plan.Batch * window];
            for (int b = 0; b < plan.Batch; b++)
            {
                for (int d = 0; d < window; d++)
                {
                    entryAtDepth[b * window + d] = d; // identity past the path and for idle slots
                }
            }
            foreach (VerifiedStep s in steps)
            {
                for (int d = 0; d < s.AcceptedNodes.Length; d++)
                {
                    entryAtDepth[s.Slot * window + d + 1] = s.AcceptedNodes[d] + 1;
                }
            }
            cache.MoveAccepted(step.Slots, tensor(entryAtDepth, [plan.Batch, window]).to(parts.Device), step.Lengths, window);
        }
        for (int i = 0; i < inputs.Count; i++)
        {
            GreedyAcceptance.Commit(cache, inputs[i].Root, steps[i]);
        }
        return steps;
    }

    /// <summary>Per step: accepted node count n, the n nodes, the n + 1 tokens.</summary>
    internal static long[] EncodeDecision(IReadOnlyList<VerifiedStep> steps)
    {
        var values = new List<long>();
        foreach (VerifiedStep s in steps)
        {
            values.Add(s.AcceptedNodes.Length);
            values.AddRange(s.AcceptedNodes.Select(n => (long)n));
            values.AddRange(s.Tokens.Select(t => (long)t));
        }
        return [.. values];
    }

    /// <summary>The steps of <see cref="EncodeDecision"/>, one per input, checked against the inputs' trees.</summary>
    /// <exception cref="TensorParallelException">The decision does not fit the inputs (the ranks are out of step).</exception>
    internal static VerifiedStep[] DecodeDecision(long[] values, IReadOnlyList<TreeInput> inputs)
    {
        var steps = new VerifiedStep[inputs.Count];
        int at = 0;
        for (int i = 0; i < inputs.Count; i++)
        {
            int n = at < values.Length ? checked((int)values[at++]) : -1;
            if (n < 0 || n > inputs[i].Draft.Count || at + 2 * n + 1 > values.Length)
            {
                throw new TensorParallelException($"the coordinator's decision does not fit input {i} (slot {inputs[i].Slot}, {inputs[i].Draft.Count} draft nodes): the ranks are out of step.");
            }
            int[] nodes = values.AsSpan(at, n).ToArray().Select(v => checked((int)v)).ToArray();
            int[] tokens = values.AsSpan(at + n, n + 1).ToArray().Select(v => checked((int)v)).ToArray();
            at += 2 * n + 1;
            steps[i] = new VerifiedStep(inputs[i].Slot, nodes, tokens);
        }
        if (at != values.Length)
        {
            throw new TensorParallelException($"the coordinator's decision has {values.Length - at} numbers more than {inputs.Count} inputs need: the ranks are out of step.");
        }
        return steps;
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
