using static TorchSharp.torch;

namespace SpecDecode.Tree;

internal sealed partial class ReferenceBackend
{
    /// <summary>Sampled steps accepted so far by any backend of this model (they share one <see cref="SampledAcceptance"/>).</summary>
    public long SampledSteps => parts.Sampling.Steps;

    /// <summary>The sampled acceptance and its random streams, which the prefill's first tokens draw from too.</summary>
    public SampledAcceptance Sampling => parts.Sampling;

    /// <summary>Multi-step speculative sampling (SpecInfer, Algorithm 2) per sequence, greedy rows exact (<see cref="SampledAcceptance"/>);
    /// see <see cref="TargetModel.VerifySampled(IReadOnlyList{TreeInput}, IReadOnlyList{SamplingOptions}, IReadOnlyList{Tensor?})"/>.</summary>
    private VerifiedStep[] Sampled(IReadOnlyList<TreeInput> inputs, IReadOnlyList<SamplingOptions> options, IReadOnlyList<Tensor?>? draftDistributions,
        IReadOnlyList<int[]>? forced = null)
    {
        StepPlan plan = StepPlan.ForTrees(inputs, _cache.Lengths, Capacity);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor logits = Forward(plan).Logits; // [slots, T, vocab]: the inputs' rows are their slots'
        Tensor rows = logits.index_select(0, tensor(inputs.Select(i => (long)i.Slot).ToArray()).to(Device));
        return parts.Sampling.Accept(_cache, rows, inputs, options, draftDistributions, forced);
    }
}
