using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

internal sealed partial class ReferenceBackend
{
    /// <summary>Multi-step speculative sampling (SpecInfer, Algorithm 2) per sequence, greedy rows exact; see
    /// <see cref="TargetModel.VerifySampled(IReadOnlyList{TreeInput}, IReadOnlyList{SamplingOptions}, IReadOnlyList{Tensor?})"/>.</summary>
    private VerifiedStep[] Sampled(IReadOnlyList<TreeInput> inputs, IReadOnlyList<SamplingOptions> options, IReadOnlyList<Tensor?>? draftDistributions)
    {
        StepPlan plan = StepPlan.ForTrees(inputs, _cache.Lengths, Capacity);
        var parents = new int[plan.Batch][];
        var tokens = new int[plan.Batch][];
        var sequences = new SequenceSampling[plan.Batch];
        for (int b = 0; b < plan.Batch; b++)
        {
            parents[b] = [-1];
            tokens[b] = [0];
            sequences[b] = new SequenceSampling(IdleSlot, null, null);
        }
        for (int i = 0; i < inputs.Count; i++)
        {
            TreeInput input = inputs[i];
            DraftTree tree = input.Draft;
            parents[input.Slot] = [-1, .. tree.Parents.ToArray().Select(p => p + 1)];
            tokens[input.Slot] = [input.Root, .. tree.Tokens.ToArray()];
            SamplingOptions o = options[i];
            sequences[input.Slot] = new SequenceSampling(o, o.IsGreedy ? null : StreamFor(o), draftDistributions?[i]);
        }
        var steps = new VerifiedStep[inputs.Count];
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            StepTensors step = Forward(plan);
            TreeSample[] samples = SamplingTreeVerifier.Verify(step.Logits, parents, tokens, sequences); // the one synchronisation
            // Commit the sampled paths: entry at depth d for every slot, identity past the path (and for idle slots).
            int window = plan.MaxDepth + 1;
            var entryAtDepth = new long[plan.Batch * window];
            for (int b = 0; b < plan.Batch; b++)
            {
                for (int d = 0; d < window; d++)
                {
                    entryAtDepth[b * window + d] = d < samples[b].AcceptedNodes.Length ? samples[b].AcceptedNodes[d] : d;
                }
            }
            _cache.MoveAccepted(step.Slots, tensor(entryAtDepth, [plan.Batch, window]).to(Device), step.Lengths, window);
            for (int i = 0; i < inputs.Count; i++)
            {
                int slot = inputs[i].Slot;
                TreeSample sample = samples[slot];
                int[] nodes = sample.AcceptedNodes[1..].Select(e => e - 1).ToArray();
                steps[i] = new VerifiedStep(slot, nodes, sample.Tokens);
                GreedyAcceptance.Commit(_cache, inputs[i].Root, steps[i]);
            }
        }
        return steps;
    }

    /// <summary>The random stream of <paramref name="options"/>, made at its first use and restarted when its seed is set to
    /// another number (a seed cleared to null keeps the stream going).</summary>
    private SamplingStream StreamFor(SamplingOptions options)
    {
        SamplingStream stream = _samplingStreams.GetValue(options, o => SamplingStream.Create(o.Seed));
        if (options.Seed is long seed && stream.Seed != seed)
        {
            stream = SamplingStream.Create(seed);
            _samplingStreams.AddOrUpdate(options, stream);
        }
        return stream;
    }

}
