using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

public sealed partial class TargetModel
{
    /// <summary>
    /// Verifies every sequence's draft tree in one forward and accepts by multi-step speculative sampling (SpecInfer,
    /// Algorithm 2) with one <see cref="SamplingOptions"/> for the whole batch. Equivalent to
    /// <see cref="VerifySampled(IReadOnlyList{TreeInput}, IReadOnlyList{SamplingOptions}, IReadOnlyList{Tensor?})"/> with
    /// <paramref name="options"/> repeated for every input (so the inputs draw from its one random stream in slot order)
    /// and each input's rows of <paramref name="draftProbabilities"/> as its draft distributions.
    /// </summary>
    /// <param name="inputs">Each sequence's slot, root and draft tree.</param>
    /// <param name="options">Temperature (0 = greedy), top-k, top-p, seed, for every sequence.</param>
    /// <param name="draftProbabilities">For drafts whose children were all sampled from a draft model: float [B, T, vocab]
    /// on this model's device, row t of slot b = the (temperature-processed) distribution node t − 1's children were drawn
    /// from (row 0: the root's children), B = highest slot + 1, T = largest tree + 1. Null for model-free drafts (each
    /// child a deterministic guess: a rejection removes just that token). Not disposed.</param>
    /// <returns>One <see cref="VerifiedStep"/> per input, in input order.</returns>
    /// <exception cref="ArgumentException">A slot is out of range or repeated, a token is outside the vocabulary, or the
    /// draft probabilities' shape, dtype or device does not match.</exception>
    /// <exception cref="InvalidOperationException">A sequence would exceed the cache's capacity.</exception>
    public VerifiedStep[] VerifySampled(IReadOnlyList<TreeInput> inputs, SamplingOptions options, Tensor? draftProbabilities = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(options);
        using var scope = NewDisposeScope(); // the per-slot views of draftProbabilities
        return VerifySampled(inputs, Enumerable.Repeat(options, inputs.Count).ToArray(), DraftRowsBySlot(inputs, draftProbabilities));
    }

    /// <summary>
    /// Verifies every sequence's draft tree in one forward and accepts by multi-step speculative sampling (SpecInfer,
    /// Miao et al. 2023, Algorithm 2), each sequence with its own temperature, top-k, top-p and random stream, and each
    /// with its own kind of draft: child x of a node is accepted with probability min(1, p(x)/q(x)); after a rejection p
    /// becomes normalise(max(0, p − q)) and the next child is tried; when all fail, a token is sampled from what is left.
    /// This keeps each sequence's target distribution (after its temperature, top-k and top-p) exactly. Each slot's cache
    /// grows by the root plus the accepted tokens. One host-to-device copy of the sampling data and one synchronisation.
    /// </summary>
    /// <param name="inputs">Each sequence's slot, root and draft tree.</param>
    /// <param name="options">One per input, <c>options[i]</c> for <c>inputs[i]</c>; an object may repeat. Its settings are
    /// read at this call. Temperature 0 makes that sequence's acceptance exactly greedy (the argmax, lowest id on ties),
    /// as <see cref="VerifyGreedy"/>, whatever the other sequences do, and draws no random numbers (top-k 1 gives the same
    /// path unless the largest logits tie: top-k keeps ties, as transformers does). Otherwise each options
    /// object owns a random stream (per model) that advances with every call: seeded from <see cref="SamplingOptions.Seed"/>
    /// when set (and restarted from the new value when the seed is set to another number), so a sequence with its own seeded options gets the same tokens for the
    /// same inputs whatever other sequences share the batch and on any device (up to that device's float32 rounding of
    /// the probabilities); else seeded from the operating system's randomness. Sequences that share an options object
    /// draw from its one stream in slot order.</param>
    /// <param name="draftDistributions">Null when every draft is model-free; otherwise one entry per input. Entry i is null
    /// for a model-free draft (each child a deterministic guess: a rejection removes just that token), or a floating
    /// tensor [r, vocab] (converted to float32) on this model's device for a draft whose children were sampled i.i.d.:
    /// row 0 = the (temperature-processed) distribution the root's children were drawn from, row j + 1 = the distribution
    /// draft node j's children were drawn from. r may stop after the last node with children (r &lt;= Count + 1), but every
    /// node with children needs its row. Not disposed.</param>
    /// <returns>One <see cref="VerifiedStep"/> per input, in input order.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="inputs"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A slot is out of range or repeated, a token is outside the vocabulary, the
    /// options or draft distributions are not one per input, an options entry is null, or a draft distribution has the
    /// wrong rank, vocabulary, dtype, device or too few or too many rows (the message says what to pass). Nothing is
    /// cached then.</exception>
    /// <exception cref="InvalidOperationException">A sequence would exceed the cache's capacity.</exception>
    public VerifiedStep[] VerifySampled(IReadOnlyList<TreeInput> inputs, IReadOnlyList<SamplingOptions> options,
        IReadOnlyList<Tensor?>? draftDistributions = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(options);
        CheckTrees(inputs);
        CheckSampling(inputs, options, draftDistributions);
        return Run(new VerifyStep(inputs, AcceptanceRule.Sampled, Sampling: options, Drafts: draftDistributions));
    }

    /// <summary>Checks the per-input options and draft distributions against the inputs, with messages in the terms of
    /// <see cref="VerifySampled(IReadOnlyList{TreeInput}, IReadOnlyList{SamplingOptions}, IReadOnlyList{Tensor?})"/>.</summary>
    private void CheckSampling(IReadOnlyList<TreeInput> inputs, IReadOnlyList<SamplingOptions> options, IReadOnlyList<Tensor?>? drafts)
    {
        if (options.Count != inputs.Count)
        {
            throw new ArgumentException(
                $"options has {options.Count} entries for {inputs.Count} inputs: give one SamplingOptions per input (the same object may repeat).", nameof(options));
        }
        for (int i = 0; i < options.Count; i++)
        {
            if (options[i] is null)
            {
                throw new ArgumentException($"options[{i}] is null: give every input a SamplingOptions (Temperature = 0 for greedy).", nameof(options));
            }
        }
        if (drafts is null)
        {
            return;
        }
        if (drafts.Count != inputs.Count)
        {
            throw new ArgumentException(
                $"draftDistributions has {drafts.Count} entries for {inputs.Count} inputs: give one per input (null for a model-free draft), or pass null for all.", nameof(drafts));
        }
        int vocab = Config.VocabSize;
        for (int i = 0; i < drafts.Count; i++)
        {
            if (drafts[i] is not Tensor q)
            {
                continue;
            }
            DraftTree tree = inputs[i].Draft;
            int lastParent = -1; // the last draft node with children; -1: only the root has children
            for (int j = 0; j < tree.Count; j++)
            {
                lastParent = Math.Max(lastParent, tree.Parents[j]);
            }
            int needed = tree.Count == 0 ? 0 : lastParent + 2, most = tree.Count + 1;
            string what = $"pass [{needed}..{most}, {vocab}] float rows on {Device}: row 0 for the root's children, row j + 1 for draft node j's children (or null for a model-free draft)";
            if (q.dim() != 2 || q.shape[1] != vocab)
            {
                throw new ArgumentException($"draftDistributions[{i}] is [{string.Join(", ", q.shape)}]; {what}.", nameof(drafts));
            }
            if (!q.is_floating_point())
            {
                throw new ArgumentException($"draftDistributions[{i}] holds {q.dtype}; probabilities must be floating point ({what}).", nameof(drafts));
            }
            if (q.device_type != _cos.device_type || q.device_index != _cos.device_index)
            {
                throw new ArgumentException($"draftDistributions[{i}] is on {q.device}, the model on {Device}; {what}.", nameof(drafts));
            }
            if (q.shape[0] < needed)
            {
                throw new ArgumentException(
                    $"draftDistributions[{i}] has {q.shape[0]} rows but draft node {lastParent} has children, so its row {lastParent + 1} is missing; {what}.", nameof(drafts));
            }
            if (q.shape[0] > most)
            {
                throw new ArgumentException(
                    $"draftDistributions[{i}] has {q.shape[0]} rows for a tree of {tree.Count} nodes; {what}.", nameof(drafts));
            }
        }
    }

    /// <summary>The single-options overload's [B, T, vocab] draft probabilities as per-input views (in the caller's dispose
    /// scope): slot s's first Count + 1 rows.</summary>
    private IReadOnlyList<Tensor?>? DraftRowsBySlot(IReadOnlyList<TreeInput> inputs, Tensor? draftProbabilities)
    {
        if (draftProbabilities is null)
        {
            return null;
        }
        CheckTrees(inputs);
        int batch = inputs.Max(i => i.Slot) + 1, width = inputs.Max(i => i.Draft.Count) + 1;
        if (draftProbabilities.dim() != 3 || draftProbabilities.shape[0] != batch || draftProbabilities.shape[1] != width || draftProbabilities.shape[2] != Config.VocabSize)
        {
            throw new ArgumentException(
                $"draftProbabilities must be [{batch}, {width}, {Config.VocabSize}] (highest slot + 1, largest tree + 1, vocab), not [{string.Join(", ", draftProbabilities.shape)}].",
                nameof(draftProbabilities));
        }
        return inputs.Select(i => (Tensor?)draftProbabilities[i.Slot].narrow(0, 0, i.Draft.Count + 1)).ToArray();
    }
}
