using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Greedy tree acceptance on the device for a whole batch: a node is correct when its token is the target's argmax at its
/// parent, accepted when it and all its ancestors are correct; the deepest accepted node ends the path and its argmax is
/// the bonus token. The accepted path's cache entries are moved next to the prefix before anything returns to the host.
/// </summary>
internal static class GreedyAcceptance
{
    /// <summary>
    /// Decides every sequence's path and commits it in the cache; returns [B, 2T + 2] int64 on the device: tokens by
    /// depth (T), entry at depth (T), bonus, accepted count.
    /// </summary>
    /// <param name="step">The forward's tensors, logits included.</param>
    /// <param name="cache">The cache the accepted paths are committed in.</param>
    /// <param name="window">The longest path + 1.</param>
    /// <param name="forcedNext">For benchmarks that replay recorded text on a model that would not produce it: [B, T]
    /// int64, the token that counts as the target's choice after each entry where it is &gt;= 0 (the argmax is still
    /// computed, so the step costs the same); null for plain greedy acceptance.</param>
    public static Tensor Decide(StepTensors step, KvCache cache, int window, Tensor? forcedNext = null)
    {
        long b = step.Tokens.shape[0], t = step.Tokens.shape[1];
        // every number held for the calls (TorchScalars)
        using Scalar width = t, widthPlusOne = t + 1, lastEntry = t - 1;
        Tensor entries = arange(width, int64, step.Tokens.device).view(1, t).expand(b, t);
        Tensor argmax = step.Logits.argmax(-1);
        if (forcedNext is not null)
        {
            argmax = where(forcedNext.ge(TorchScalars.Zero), forcedNext, argmax);
        }
        Tensor correct = step.Tokens.eq(argmax.gather(1, step.Parents)).logical_and(step.Valid).logical_or(entries.eq(TorchScalars.Zero));
        Tensor accepted = step.Ancestors.logical_and(correct.logical_not().unsqueeze(1)).any(-1).logical_not();
        // deepest first, then the lowest entry: depth × (t + 1) + (t − 1 − entry)
        Tensor score = where(accepted, step.Depths.mul(widthPlusOne).Plus(entries.neg().add(lastEntry, TorchScalars.One)), full_like(step.Depths, TorchScalars.MinusOne));
        Tensor best = score.argmax(-1).view(b, 1);
        Tensor bonus = argmax.gather(1, best);
        Tensor count = step.Depths.gather(1, best);
        Tensor onPath = step.Ancestors.gather(1, best.view(b, 1, 1).expand(b, 1, t)).squeeze(1);
        Tensor entryAtDepth = arange(widthPlusOne, int64, step.Tokens.device).view(1, t + 1).expand(b, t + 1).contiguous();
        entryAtDepth.scatter_(1, where(onPath, step.Depths, full_like(step.Depths, width)), entries.contiguous());
        entryAtDepth = entryAtDepth.narrow(1, 0, t);
        cache.MoveAccepted(step.Slots, entryAtDepth, step.Lengths, window);
        return cat([step.Tokens.gather(1, entryAtDepth), entryAtDepth, bonus, count], 1);
    }

    /// <summary>Reads <see cref="Decide"/>'s result on the host and advances the caches by each root and accepted path.</summary>
    public static VerifiedStep[] Read(long[] result, IReadOnlyList<TreeInput> inputs, StepPlan plan, KvCache cache)
    {
        int t = plan.Width, stride = 2 * t + 2;
        var steps = new VerifiedStep[inputs.Count];
        for (int i = 0; i < inputs.Count; i++)
        {
            int slot = inputs[i].Slot, row = slot * stride;
            int count = (int)result[row + 2 * t + 1];
            steps[i] = Path(slot, result.AsSpan(row + 1, count), result.AsSpan(row + t + 1, count), result[row + 2 * t]);
            Commit(cache, inputs[i].Root, steps[i]);
        }
        return steps;
    }

    /// <summary>Advances the sequence's cache by what a step cached: its root, then the accepted draft tokens (the bonus
    /// token is the next root, not cached yet).</summary>
    public static void Commit(KvCache cache, int root, VerifiedStep step)
    {
        Span<int> cached = step.Tokens.Length <= 128 ? stackalloc int[step.Tokens.Length] : new int[step.Tokens.Length];
        cached[0] = root;
        step.Tokens.AsSpan(0, step.Tokens.Length - 1).CopyTo(cached[1..]);
        cache.Append(step.Slot, cached);
    }

    /// <summary>The step an accepted path makes: its tokens and entries by depth from 1 (entry e is draft node e − 1),
    /// then the bonus token.</summary>
    public static VerifiedStep Path(int slot, ReadOnlySpan<long> tokensByDepth, ReadOnlySpan<long> entriesByDepth, long bonus)
    {
        int count = tokensByDepth.Length;
        var nodes = new int[count];
        var tokens = new int[count + 1];
        for (int d = 0; d < count; d++)
        {
            tokens[d] = (int)tokensByDepth[d];
            nodes[d] = (int)entriesByDepth[d] - 1;
        }
        tokens[count] = (int)bonus;
        return new VerifiedStep(slot, nodes, tokens);
    }
}
