using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Multi-step speculative sampling (SpecInfer, Algorithm 2) for a step whose logits a backend computed (the libtorch
/// path or the tree kernels), and the commit of the sampled paths: the one owner of the sampling random streams, so a
/// request's stream goes on whichever backend runs its next step.
/// </summary>
internal sealed class SampledAcceptance
{
    // One random stream per options object (xoshiro256** on the host, see SamplingStream): a seeded SamplingOptions gives
    // the same tokens for the same sequence of calls, whatever else shares the batch. The table holds the options weakly.
    private readonly ConditionalWeakTable<SamplingOptions, SamplingStream> _streams = new();

    /// <summary>
    /// Samples every input's path from <paramref name="logits"/> [inputs, T, vocab] on the device (row t of input i
    /// follows entry t of its tree, 0 the root; rows past the tree are padding), moves each accepted path's keys and
    /// values next to its prefix and advances the cached lengths. Greedy inputs (temperature 0) take the argmax path,
    /// exactly. One synchronisation (the sampling's copy to the host).
    /// </summary>
    /// <remarks>With <paramref name="forced"/> (benchmarks: recorded responses on random weights) the sampling runs as
    /// always, then each input's recorded tokens decide its path in place of the sample, as <see cref="TargetModel.VerifyForced"/>
    /// does for greedy steps: the step costs what a sampled step costs, at the recorded text's acceptance.</remarks>
    public VerifiedStep[] Accept(KvCache cache, Tensor logits, IReadOnlyList<TreeInput> inputs, IReadOnlyList<SamplingOptions> options,
        IReadOnlyList<Tensor?>? drafts, IReadOnlyList<int[]>? forced = null)
    {
        int n = inputs.Count;
        var parents = new int[n][];
        var tokens = new int[n][];
        var sequences = new SequenceSampling[n];
        var lengths = new long[n];
        var slots = new long[n];
        int window = 1;
        for (int i = 0; i < n; i++)
        {
            TreeInput input = inputs[i];
            DraftTree tree = input.Draft;
            parents[i] = [-1, .. tree.Parents.ToArray().Select(p => p + 1)];
            tokens[i] = [input.Root, .. tree.Tokens.ToArray()];
            SamplingOptions o = options[i];
            sequences[i] = new SequenceSampling(o, o.IsGreedy ? null : StreamFor(o), drafts?[i]);
            lengths[i] = cache.Length(input.Slot);
            slots[i] = input.Slot;
            window = Math.Max(window, tree.MaxDepth + 1);
        }
        TreeSample[] samples = SamplingTreeVerifier.Verify(logits, parents, tokens, sequences); // the one synchronisation
        Steps++;
        if (forced is not null)
        {
            for (int i = 0; i < n; i++)
            {
                samples[i] = ForcedPath(inputs[i].Draft, forced[i]);
            }
        }
        // Commit the sampled paths: entry at depth d for every input, identity past the path.
        var entryAtDepth = new long[n * window];
        for (int i = 0; i < n; i++)
        {
            for (int d = 0; d < window; d++)
            {
                entryAtDepth[i * window + d] = d < samples[i].AcceptedNodes.Length ? samples[i].AcceptedNodes[d] : d;
            }
        }
        Device device = logits.device;
        using (var scope = NewDisposeScope())
        {
            cache.MoveAccepted(tensor(slots).to(device), tensor(entryAtDepth, [n, window]).to(device), tensor(lengths).to(device), window);
        }
        var steps = new VerifiedStep[n];
        for (int i = 0; i < n; i++)
        {
            TreeSample sample = samples[i];
            steps[i] = new VerifiedStep(inputs[i].Slot, sample.AcceptedNodes[1..].Select(e => e - 1).ToArray(), sample.Tokens);
            GreedyAcceptance.Commit(cache, inputs[i].Root, steps[i]);
        }
        return steps;
    }

    /// <summary>
    /// The token after each of several sequences from its logits [n, vocab] (a prefill's last rows: no draft, nothing to
    /// commit): the argmax for a greedy sequence (lowest id on ties), a draw from its options' random stream otherwise, as
    /// a step with an empty draft would choose; with <paramref name="forced"/> (benchmarks) the recorded token instead,
    /// after the same work. One synchronisation. Counts no sampled step.
    /// </summary>
    public int[] Next(Tensor logits, IReadOnlyList<int> roots, IReadOnlyList<SamplingOptions> options, IReadOnlyList<int[]?>? forced = null)
    {
        int n = roots.Count;
        var sequences = new SequenceSampling[n];
        for (int i = 0; i < n; i++)
        {
            SamplingOptions o = options[i];
            sequences[i] = new SequenceSampling(o, o.IsGreedy ? null : StreamFor(o), null);
        }
        using var scope = NewDisposeScope();
        TreeSample[] samples = SamplingTreeVerifier.Verify(logits.view(n, 1, -1), [.. roots.Select(_ => new[] { -1 })],
            [.. roots.Select(r => new[] { r })], sequences); // the one synchronisation
        return [.. Enumerable.Range(0, n).Select(i => forced?[i] is { } reference ? ForcedPath(DraftTree.Empty, reference).Tokens[0] : samples[i].Tokens[0])];
    }

    /// <summary>Sampled steps accepted so far (every <see cref="Accept"/> call); for tests and benchmarks.</summary>
    public long Steps { get; private set; }

    /// <summary>The path the recorded tokens <paramref name="reference"/> take through <paramref name="draft"/>
    /// (<see cref="DraftTree.AcceptGreedy"/>) as the verifier reports it: entries (0 the root, node n as n + 1) and the
    /// emitted tokens, the recorded token after the last accepted entry being the bonus. Past the reference (which the
    /// engine never emits: a forced request ends with it) the bonus is token 0.</summary>
    internal static TreeSample ForcedPath(DraftTree draft, int[] reference)
    {
        int accepted = draft.AcceptGreedy(reference, out int deepest);
        int[] entries = [0, .. (deepest < 0 ? [] : draft.PathTo(deepest)).Select(n => n + 1)];
        int[] tokens = [.. reference.AsSpan(0, accepted), accepted < reference.Length ? reference[accepted] : 0];
        return new TreeSample(entries, tokens);
    }

    /// <summary>The random stream of <paramref name="options"/>, made at its first use and restarted when its seed is set to
    /// another number (a seed cleared to null keeps the stream going).</summary>
    private SamplingStream StreamFor(SamplingOptions options)
    {
        SamplingStream stream = _streams.GetValue(options, o => SamplingStream.Create(o.Seed));
        if (options.Seed is long seed && stream.Seed != seed)
        {
            stream = SamplingStream.Create(seed);
            _streams.AddOrUpdate(options, stream);
        }
        return stream;
    }
}
