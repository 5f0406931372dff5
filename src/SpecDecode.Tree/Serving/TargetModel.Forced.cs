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
        return Run(new VerifyStep(inputs, AcceptanceRule.Forced, Forced: references));
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
