using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

public sealed partial class TargetModel
{
    // One verifier (and so one random stream) per options object: a seeded SamplingOptions gives the same tokens for the
    // same sequence of calls.
    private readonly ConditionalWeakTable<SamplingOptions, SamplingTreeVerifier> _samplers = new();

    /// <summary>
    /// Verifies every sequence's draft tree in one forward and accepts by multi-step speculative sampling (SpecInfer,
    /// Algorithm 2), which keeps the target's distribution after temperature, top-k and top-p exactly: child x of a node
    /// is accepted with probability min(1, p(x)/q(x)); after a rejection p becomes normalise(max(0, p − q)) and the next
    /// child is tried; when all fail, a token is sampled from what is left. Each slot's cache grows by the root plus the
    /// accepted tokens.
    /// </summary>
    /// <param name="inputs">Each sequence's slot, root and draft tree.</param>
    /// <param name="options">Temperature (0 = greedy), top-k, top-p, seed. The random stream of a seeded options object
    /// advances with each call.</param>
    /// <param name="draftProbabilities">For drafts whose children were sampled from a draft model: [B, T, vocab] on this
    /// model's device, row t of slot b = the (temperature-processed) distribution node t − 1's children were drawn from
    /// (row 0: the root's children), B = highest slot + 1, T = largest tree + 1. Null for model-free drafts (each child a
    /// deterministic guess: a rejection removes just that token).</param>
    /// <exception cref="ArgumentException">A slot is out of range or repeated, a token is outside the vocabulary, or the
    /// draft probabilities' shape does not match.</exception>
    /// <exception cref="InvalidOperationException">A sequence would exceed the cache's capacity.</exception>
    public VerifiedStep[] VerifySampled(IReadOnlyList<TreeInput> inputs, SamplingOptions options, Tensor? draftProbabilities = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(options);
        CheckTrees(inputs);
        StepPlan plan = StepPlan.ForTrees(inputs, _cache.Lengths, Capacity);
        if (draftProbabilities is not null &&
            (draftProbabilities.dim() != 3 || draftProbabilities.shape[0] != plan.Batch || draftProbabilities.shape[1] != plan.Width || draftProbabilities.shape[2] != Config.VocabSize))
        {
            throw new ArgumentException(
                $"draftProbabilities must be [{plan.Batch}, {plan.Width}, {Config.VocabSize}] (highest slot + 1, largest tree + 1, vocab), not [{string.Join(", ", draftProbabilities.shape)}].",
                nameof(draftProbabilities));
        }
        SamplingTreeVerifier sampler = _samplers.GetValue(options, o => new SamplingTreeVerifier(o));
        var parents = new int[plan.Batch][];
        var tokens = new int[plan.Batch][];
        for (int b = 0; b < plan.Batch; b++)
        {
            parents[b] = [-1];
            tokens[b] = [0];
        }
        foreach (TreeInput input in inputs)
        {
            DraftTree tree = input.Draft;
            parents[input.Slot] = [-1, .. tree.Parents.ToArray().Select(p => p + 1)];
            tokens[input.Slot] = [input.Root, .. tree.Tokens.ToArray()];
        }
        var steps = new VerifiedStep[inputs.Count];
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            StepTensors step = Forward(plan, LogitRows.All);
            TreeSample[] samples = sampler.Verify(step.Logits!, parents, tokens, draftProbabilities); // the one synchronisation
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
            _cache.MoveAccepted(tensor(entryAtDepth, [plan.Batch, window]).to(Device), step.Lengths, window);
            for (int i = 0; i < inputs.Count; i++)
            {
                int slot = inputs[i].Slot;
                TreeSample sample = samples[slot];
                int[] nodes = sample.AcceptedNodes[1..].Select(e => e - 1).ToArray();
                _cache.SetLength(slot, _cache.Length(slot) + sample.AcceptedNodes.Length);
                steps[i] = new VerifiedStep(slot, nodes, sample.Tokens);
            }
        }
        return steps;
    }
}
