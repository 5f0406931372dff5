using static TorchSharp.torch;

namespace SpecDecode.Tree;

public sealed partial class TargetModel
{
    /// <summary>
    /// <see cref="VerifyGreedy"/> with the target's choices replaced by recorded text: after the root and after each draft
    /// node at depth d, the token that counts as the target's choice is <c>references[i][d]</c> (where the reference is
    /// long enough; beyond it, the argmax). The forward, the argmax and the cache commit run exactly as in
    /// <see cref="VerifyGreedy"/>, so the step costs the same; only which path is accepted changes. For benchmarks that
    /// replay recorded responses through a model with random weights (the model-free replay's acceptance, the real
    /// forward's cost).
    /// </summary>
    /// <param name="inputs">As for <see cref="VerifyGreedy"/>.</param>
    /// <param name="references">Per input, the recorded tokens that follow its root.</param>
    internal VerifiedStep[] VerifyForced(IReadOnlyList<TreeInput> inputs, IReadOnlyList<int[]> references)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(references);
        if (references.Count != inputs.Count)
        {
            throw new ArgumentException($"{inputs.Count} inputs but {references.Count} references: give one per input.", nameof(references));
        }
        CheckTrees(inputs);
        ReserveRows(inputs);
        if (IsGraphedStep(inputs))
        {
            // A plain step through the graph costs what it costs; only the token that counts as the target's changes.
            VerifiedStep graphed = GraphedStep(inputs[0])[0];
            return references[0].Length > 0 ? [graphed with { Tokens = [references[0][0]] }] : [graphed];
        }
        if (IsKernelTree(inputs))
        {
            return KernelTree(inputs[0], ForcedChoices(inputs[0].Draft, references[0]));
        }
        StepPlan plan = StepPlan.ForTrees(inputs, _cache.Lengths, Capacity);
        var forced = new long[plan.Batch * plan.Width];
        Array.Fill(forced, -1L);
        for (int i = 0; i < inputs.Count; i++)
        {
            ForcedChoices(inputs[i].Draft, references[i]).CopyTo(forced, inputs[i].Slot * plan.Width);
        }
        long[] result;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            StepTensors step = Forward(plan);
            Tensor forcedNext = tensor(forced, [plan.Batch, plan.Width]).to(Device);
            Tensor decided = GreedyAcceptance.Decide(step, _cache, plan.MaxDepth + 1, forcedNext);
            result = decided.cpu().data<long>().ToArray(); // the step's one synchronisation
        }
        return GreedyAcceptance.Read(result, inputs, plan, _cache);
    }

    /// <summary>Per entry of a step (0 the root, i + 1 draft node i), the recorded token that counts as the target's choice
    /// after it, or -1 past the end of <paramref name="reference"/>.</summary>
    private static long[] ForcedChoices(DraftTree draft, int[] reference)
    {
        var forced = new long[draft.Count + 1];
        forced[0] = reference.Length > 0 ? reference[0] : -1;
        for (int node = 0; node < draft.Count; node++)
        {
            int depth = draft.Depths[node];
            forced[node + 1] = depth < reference.Length ? reference[depth] : -1;
        }
        return forced;
    }

    /// <summary>Sets a slot's cached length without computing anything (the cache keeps whatever values it holds): for
    /// benchmarks on random weights, where a prompt's cached values do not change what later steps cost.</summary>
    internal void SetLengthForBenchmark(int slot, int length)
    {
        CheckSlot(slot);
        if (length < 0 || length > Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"0 .. {Capacity}");
        }
        int current = _cache.Length(slot);
        if (length < current)
        {
            _cache.Truncate(slot, length);
            if (length > 0)
            {
                _cache.AppendUnknown(slot, 0);
            }
            return;
        }
        _cache.Reserve(slot, length);
        _cache.AppendUnknown(slot, length - current);
    }
}
