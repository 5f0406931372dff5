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

    /// <summary>
    /// <see cref="VerifySampled(IReadOnlyList{TreeInput}, IReadOnlyList{SamplingOptions}, IReadOnlyList{Tensor?})"/> with
    /// the recorded tokens deciding the path, as <see cref="VerifyForced"/> does for greedy steps: the forward and the
    /// speculative sampling run (and cost) as usual, then each input accepts the path its reference takes. For benchmarks
    /// of sampled requests at the recorded text's acceptance.
    /// </summary>
    internal VerifiedStep[] VerifySampledForced(IReadOnlyList<TreeInput> inputs, IReadOnlyList<SamplingOptions> options,
        IReadOnlyList<Tensor?>? draftDistributions, IReadOnlyList<int[]> references)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(references);
        if (references.Count != inputs.Count)
        {
            throw new ArgumentException($"{inputs.Count} inputs but {references.Count} references: give one per input.", nameof(references));
        }
        CheckTrees(inputs);
        CheckSampling(inputs, options, draftDistributions);
        return Run(new VerifyStep(inputs, AcceptanceRule.Sampled, Forced: references, Sampling: options, Drafts: draftDistributions));
    }

    /// <summary>Sampled steps accepted so far on this model (the libtorch path and the tree kernels); for tests.</summary>
    internal long SampledSteps => _reference.SampledSteps;

    /// <summary>Sets a slot's cached length without computing anything (the cache keeps whatever values it holds): for
    /// benchmarks on random weights, where a prompt's cached values do not change what later steps cost.</summary>
    internal void SetLengthForBenchmark(int slot, int length)
    {
        CheckSlot(slot);
        if (length < 0 || length > Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"0 .. {Capacity}");
        }
        _parallel?.Announce(RankCommand.SetLength(slot, length)); // tensor parallelism: every rank sets it
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
