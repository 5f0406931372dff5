using System.Numerics;
using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>What sampling verification kept of one sequence's tree.</summary>
/// <param name="AcceptedNodes">The accepted node indices, root first: <c>[0, n1, n2, ...]</c> with each node a child of
/// the one before it.</param>
/// <param name="Tokens">The emitted tokens: the tokens of the accepted draft nodes (<c>n1, n2, ...</c>) followed by one
/// token sampled from the target at the last accepted node. Always exactly as long as <paramref name="AcceptedNodes"/>.</param>
internal readonly record struct TreeSample(int[] AcceptedNodes, int[] Tokens);

/// <summary>How one sequence of a <see cref="SamplingTreeVerifier.Verify(Tensor, IReadOnlyList{int[]}, IReadOnlyList{int[]}, IReadOnlyList{SequenceSampling})"/> call is sampled.</summary>
/// <param name="Options">Temperature, top-k and top-p of this sequence, read at the call (0 temperature = greedy).</param>
/// <param name="Stream">Where this sequence's uniforms come from; may be null for a greedy sequence, which draws none.
/// Several sequences may share one stream: they draw from it in sequence order.</param>
/// <param name="Draft">The draft distributions [r, V] (any floating dtype, on the logits' device), row u being the
/// distribution node u's children were drawn from i.i.d. (node 0 = the root); r may stop after the last node with
/// children. Null for a model-free draft whose children are deterministic guesses (point masses).</param>
internal readonly record struct SequenceSampling(SamplingOptions Options, SamplingStream? Stream, Tensor? Draft);

/// <summary>
/// A small random stream drawn on the host: xoshiro256** (Blackman and Vigna 2018, "Scrambled linear pseudorandom
/// number generators"), its state filled by SplitMix64 (Steele, Lea and Flood 2014) from a 64-bit seed, as the authors
/// recommend.
/// </summary>
/// <remarks>
/// Written out here rather than taken from <see cref="Random"/>: the BCL documents no algorithm for
/// <see cref="Random"/> and has changed it between versions (the unseeded one became xoshiro in .NET 6; only the
/// seeded legacy one is kept for compatibility, and it takes a 32-bit seed), while this one gives the same numbers on
/// every runtime, operating system and device, which is what makes a <see cref="SamplingOptions.Seed"/> reproducible.
/// Tests pin it to the published reference outputs. Not thread-safe.
/// </remarks>
internal sealed class SamplingStream
{
    private ulong _s0, _s1, _s2, _s3;

    private SamplingStream(long? seed, ulong s0, ulong s1, ulong s2, ulong s3)
    {
        Seed = seed;
        (_s0, _s1, _s2, _s3) = (s0, s1, s2, s3);
    }

    /// <summary>The seed this stream started from; null when it was seeded from the operating system's randomness.</summary>
    public long? Seed { get; }

    /// <summary>A stream seeded from <paramref name="seed"/>, or from 64 random bits of the operating system when null.</summary>
    public static SamplingStream Create(long? seed)
    {
        ulong x = seed is long s ? unchecked((ulong)s) : BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
        // SplitMix64 never yields four zero words, the one state xoshiro256** must avoid.
        return new SamplingStream(seed, SplitMix64(ref x), SplitMix64(ref x), SplitMix64(ref x), SplitMix64(ref x));
    }

    /// <summary>A stream with the given raw state (not all zero): for the reference-vector test.</summary>
    internal static SamplingStream FromState(ulong s0, ulong s1, ulong s2, ulong s3) => new(null, s0, s1, s2, s3);

    /// <summary>One SplitMix64 step: advances <paramref name="state"/> by the golden gamma and returns the mixed value.</summary>
    internal static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits (xoshiro256**).</summary>
    public ulong NextUInt64()
    {
        ulong result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform float in [0, 1) with 24 random bits: every value is exact in float32, so the device compares
    /// exactly the number drawn here.</summary>
    public float NextSingle() => (NextUInt64() >> 40) * (1f / (1 << 24));
}

/// <summary>
/// Sampling verification of a batch of draft token trees that keeps the target model's distribution exactly: multi-step
/// speculative sampling over a tree (SpecInfer, Miao et al. 2023, "SpecInfer: Accelerating Generative LLM Serving with
/// Tree-based Speculative Inference", Algorithm 2), with everything that does not depend on the walk computed on the
/// device, each sequence sampled with its own settings and random stream, one host-to-device copy of the per-sequence
/// data and one host synchronisation per call.
/// </summary>
/// <remarks>
/// <para><b>Tree layout.</b> Per sequence, node 0 is the root (the last accepted token) and nodes 1..n-1 are draft
/// tokens; <c>parents[0] = -1</c> and <c>parents[t] &lt; t</c>. The children of a node are tried in ascending node
/// index. Row <c>t</c> of the logits is the target's prediction after node <c>t</c>.</para>
/// <para><b>Algorithm.</b> At a visited node <c>u</c> with target distribution <c>p</c> (from row <c>u</c>, after the
/// sequence's <see cref="SamplingOptions"/>), child <c>i</c> with token <c>x_i</c> and draft distribution <c>q_i</c> is
/// accepted with probability <c>min(1, p(x_i) / q_i(x_i))</c>; on acceptance the walk moves to the child. On rejection
/// <c>p ← normalise(max(0, p − q_i))</c> and the next child is tried. When every child is rejected (or <c>u</c> is a
/// leaf) one token is sampled from the current <c>p</c> and the walk stops. <c>q_i</c> is row <c>u</c> of the sequence's
/// draft distributions when the children of <c>u</c> were sampled i.i.d. from it (siblings may then repeat a token), or
/// the point mass on <c>x_i</c> for model-free drafts, where a rejection just removes <c>x_i</c> from <c>p</c> (the same
/// formula with <c>q_i = δ(x_i)</c>: acceptance <c>p(x_i)</c>, residual <c>p</c> without <c>x_i</c>). Both kinds mix
/// in one batch: point-mass sequences get <c>δ(x_i)</c> added to an all-zero draft row. A token with <c>p(x) = 0</c>
/// is never accepted; a child with <c>q_i(x_i) = 0</c> (not a sample of <c>q_i</c>) is accepted exactly when
/// <c>p(x_i) &gt; 0</c>.</para>
/// <para><b>Per-sequence target distributions.</b> Temperature is a [B, 1, 1] divisor; top-k and top-p are applied per
/// sequence after one descending sort of the row (transformers' warpers: top-k keeps every logit tied with the k-th;
/// top-p drops a token when the tokens more probable than it already hold <c>top_p</c> of the mass, which is
/// transformers' ascending-cumsum rule and always keeps the most probable token). When no sequence uses top-p, top-k
/// takes each row's k-th largest value from one <c>topk</c> of the batch's largest k instead of a full sort. A greedy sequence (temperature 0)
/// gets the point mass on the argmax of its logits (lowest id on ties), so acceptance is 0 or 1 and the final token is
/// the argmax: its output equals <see cref="GreedyTreeVerifier"/>'s whatever else the batch holds.</para>
/// <para><b>One synchronisation.</b> The residual after rejecting children 1..i-1 of <c>u</c> depends only on
/// <c>u</c>'s own children, not on the walk, so for every row <c>u</c> and child rank <c>i</c> the device computes the
/// acceptance probability and compares it with a uniform, and draws the final token from the residual after all of
/// <c>u</c>'s children are rejected by inverse CDF (the first token whose cumulative residual mass exceeds
/// <c>U · total</c>, a <c>searchsorted</c> per row). Only the accept flags <c>[B, T, K]</c> and final tokens
/// <c>[B, T]</c> (K = most children of any node) are copied to the host, in one transfer, where each tree is walked.
/// Each node is visited at most once per walk, so its uniforms are used at most once.</para>
/// <para><b>Randomness on the host.</b> Each sequence's uniforms come from its <see cref="SamplingStream"/>, drawn on the
/// host in a fixed order that depends only on that sequence's tree: for each node <c>u</c> in index order, one uniform
/// per child of <c>u</c> (the accept tests) and then one for <c>u</c>'s final token; 2n − 1 per sequence of n nodes.
/// Greedy sequences draw nothing. So a sequence whose stream it does not share gets the same uniforms alone or in any
/// batch, on any device, and no [B, T, V] random tensor exists. The uniforms travel to the device in the call's one
/// host-to-device copy (float64, so the integers in it are exact) with the child tokens, child counts, the draft-row
/// map and the per-sequence temperature, top-k, top-p, greedy and point-mass flags. The same uniforms on two devices give
/// the same tokens unless a device's float32 rounding moves a probability across a uniform.</para>
/// <para><b>Numerics.</b> Probabilities are float32 on the logits' device. When a residual has (numerically) no mass,
/// i.e. <c>sum max(0, p − q_i) ≤ 1e-6</c>, which in exact arithmetic means <c>p = q_i</c> and rejection is impossible,
/// the residual is replaced by <c>p</c> itself (the distribution before that rejection). This never accepts a token
/// the target gives probability 0; it can only change the output when the rejection happens, which has probability
/// <c>sum max(0, p − q_i) ≤ 1e-6</c>, so the output distribution moves by at most that much in total variation. The
/// inverse CDF never picks a zero-probability token: the cumulative sum is non-decreasing and only a token with mass
/// makes it exceed <c>U · total</c>, and <c>U &lt; 1</c>.</para>
/// <para><b>Batches without draft distributions</b> (model-free drafts only, the common case) take the same algorithm
/// in closed form over the children's probabilities (<c>PointMassRanks</c>): a few [B, T, V] passes in all instead of
/// several per child rank. It agrees with the general loop up to float32 rounding (a renormalised residual's sum
/// against a running total), so a point-mass sequence alone and beside sequences with draft distributions can differ
/// only where that rounding moves a probability across a uniform.</para>
/// <para><b>Memory.</b> [B, T, V] float32 temporaries: the target distribution and the current residual, the draft rows
/// when a sequence has any, and per child rank a few more freed before the next rank (a dispose scope per rank); top-k
/// and top-p add a sort (values and int64 indices) while the distribution is formed.</para>
/// </remarks>
internal static class SamplingTreeVerifier
{
    /// <summary>Below this residual mass a rejection is treated as impossible (see the remarks on numerics).</summary>
    internal const float ResidualMassFloor = 1e-6f;

    // ResidualMassFloor and the 0.5 threshold of the packed point-mass flags, held as long as the process (TorchScalars)
    private static readonly Scalar MassFloor = ResidualMassFloor, Half = 0.5;

    /// <summary>Verifies a batch of trees by speculative sampling, each sequence with its own settings, random stream and
    /// draft kind, with one host-to-device and one device-to-host copy.</summary>
    /// <param name="logits">Target logits [B, T, V], any floating dtype, any device: row t of sequence b follows node t of
    /// that sequence's tree; rows at or after the tree's node count are padding and never read on the host. Not disposed.</param>
    /// <param name="parents">Per sequence (B entries), the parent of each node: length n_b in [1, T], <c>parents[0] = -1</c>,
    /// <c>0 &lt;= parents[t] &lt; t</c> for t &gt;= 1.</param>
    /// <param name="tokens">Per sequence, the token of each node, same length as its parents; <c>tokens[0]</c> (the root)
    /// is ignored, the others must lie in [0, V).</param>
    /// <param name="sequences">Per sequence, its options, random stream and draft distributions (see
    /// <see cref="SequenceSampling"/>). The draft tensors are not disposed.</param>
    /// <returns>One <see cref="TreeSample"/> per sequence.</returns>
    /// <exception cref="ArgumentNullException">A required argument or a per-sequence array is null.</exception>
    /// <exception cref="ArgumentException">Shapes, devices, dtypes or tree arrays are inconsistent, a sampled sequence has
    /// no stream, or a node with children has no draft row (the message says which).</exception>
    public static TreeSample[] Verify(Tensor logits, IReadOnlyList<int[]> parents, IReadOnlyList<int[]> tokens,
        IReadOnlyList<SequenceSampling> sequences) => Verify(logits, parents, tokens, sequences, closedForm: true);

    /// <summary><see cref="Verify(Tensor, IReadOnlyList{int[]}, IReadOnlyList{int[]}, IReadOnlyList{SequenceSampling})"/>;
    /// <paramref name="closedForm"/> false sends batches without draft distributions through the general loop too (for
    /// the test that holds the two equal and the benchmark that compares them).</summary>
    internal static TreeSample[] Verify(Tensor logits, IReadOnlyList<int[]> parents, IReadOnlyList<int[]> tokens,
        IReadOnlyList<SequenceSampling> sequences, bool closedForm)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(parents);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(sequences);
        if (logits.dim() != 3 || !logits.is_floating_point())
        {
            throw new ArgumentException($"Expected floating-point logits [B, T, V], got {logits.dtype} [{string.Join(", ", logits.shape)}].", nameof(logits));
        }
        int batch = checked((int)logits.shape[0]);
        int rows = checked((int)logits.shape[1]);
        long vocab = logits.shape[2];
        if (parents.Count != batch || tokens.Count != batch || sequences.Count != batch)
        {
            throw new ArgumentException(
                $"logits hold {batch} sequences but parents has {parents.Count}, tokens {tokens.Count} and sequences {sequences.Count}: give one tree and one SequenceSampling per sequence.",
                nameof(parents));
        }

        // Host tables: children of every node in ascending index, K = most children of any node.
        var childCount = new int[batch * rows];
        for (int b = 0; b < batch; b++)
        {
            ValidateTree(b, parents[b], tokens[b], rows, vocab);
            int[] par = parents[b];
            for (int t = 1; t < par.Length; t++)
            {
                childCount[b * rows + par[t]]++;
            }
            ValidateSampling(b, sequences[b], par, logits);
        }
        int maxChildren = childCount.Length == 0 ? 0 : childCount.Max();
        var childNode = new int[batch * rows * maxChildren];
        var fill = new int[batch * rows];
        for (int b = 0; b < batch; b++)
        {
            int[] par = parents[b];
            for (int t = 1; t < par.Length; t++)
            {
                int slot = b * rows + par[t];
                childNode[slot * maxChildren + fill[slot]++] = t;
            }
        }

        long[] host = ComputeDecisions(logits, tokens, sequences, batch, rows, maxChildren, childNode, childCount, closedForm);

        // The walk: host only. host[(b, u, i)] for i < K is the accept flag of u's i-th child, host[(b, u, K)] the final token.
        int stride = maxChildren + 1;
        var results = new TreeSample[batch];
        var nodes = new List<int>();
        var emitted = new List<int>();
        for (int b = 0; b < batch; b++)
        {
            nodes.Clear();
            emitted.Clear();
            int u = 0;
            nodes.Add(0);
            while (true)
            {
                int slot = b * rows + u;
                int next = -1;
                for (int i = 0; i < childCount[slot]; i++)
                {
                    if (host[slot * stride + i] != 0)
                    {
                        next = childNode[slot * maxChildren + i];
                        break;
                    }
                }
                if (next < 0)
                {
                    emitted.Add(checked((int)host[slot * stride + maxChildren]));
                    break;
                }
                nodes.Add(next);
                emitted.Add(tokens[b][next]);
                u = next;
            }
            results[b] = new TreeSample(nodes.ToArray(), emitted.ToArray());
        }
        return results;
    }

    /// <summary>
    /// The target distribution of every row, per sequence: softmax(logits / temperature) after Hugging Face's top-k and
    /// top-p filtering, or the point mass on the argmax when the temperature is 0. Uploads the settings itself: for
    /// tests and callers outside <see cref="Verify(Tensor, IReadOnlyList{int[]}, IReadOnlyList{int[]}, IReadOnlyList{SequenceSampling})"/>, which packs them into its one upload.
    /// </summary>
    /// <param name="logits">Logits [B, T, V], any floating dtype; not disposed.</param>
    /// <param name="options">B entries, one per sequence. Temperature 0 gives the argmax point mass (ties to the lowest id);
    /// top-k 0 is off, otherwise keeps logits &gt;= the k-th largest (ties kept, as transformers does); top-p 1 is off,
    /// otherwise removes the tokens that transformers' <c>TopPLogitsWarper</c> removes, always keeping the most probable.</param>
    /// <returns>A new float32 tensor [B, T, V] on the logits' device whose rows sum to 1.</returns>
    /// <exception cref="ArgumentException">The logits are not [B, T, V] floating point or the options are not B.</exception>
    internal static Tensor TargetProbabilities(Tensor logits, IReadOnlyList<SamplingOptions> options)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(options);
        if (logits.dim() != 3 || !logits.is_floating_point() || options.Count != logits.shape[0])
        {
            throw new ArgumentException($"Expected floating-point logits [B, T, V] and B options, got {logits.dtype} [{string.Join(", ", logits.shape)}] and {options.Count}.", nameof(logits));
        }
        using var scope = NewDisposeScope();
        int batch = options.Count;
        var settings = new double[SettingRows * batch];
        FillSettings(settings, 0, options.Select(o => new SequenceSampling(o, null, null)).ToArray(), logits.shape[2]);
        Tensor packed = tensor(settings).to(logits.device);
        return Probabilities(logits, Filters(packed, 0, options, batch, logits.shape[2])).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The target distribution of every row under one set of settings: softmax(logits / temperature) after Hugging
    /// Face's top-k and top-p filtering, or the point mass on the argmax when the temperature is 0 (see the per-sequence
    /// overload).
    /// </summary>
    /// <param name="logits">Logits [..., V] of any rank &gt;= 1, any floating dtype; not disposed.</param>
    /// <param name="temperature">&gt;= 0; 0 gives the argmax point mass (ties to the lowest id).</param>
    /// <param name="topK">0 for off; otherwise keeps logits &gt;= the k-th largest (ties kept).</param>
    /// <param name="topP">In (0, 1]; 1 for off.</param>
    /// <returns>A new float32 tensor of the logits' shape on their device whose rows sum to 1.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of the range <see cref="SamplingOptions"/> allows.</exception>
    internal static Tensor TargetProbabilities(Tensor logits, float temperature, int topK, float topP)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP };
        using var scope = NewDisposeScope();
        Tensor rows = logits.reshape(1, -1, logits.shape[^1]);
        return TargetProbabilities(rows, [options]).view(logits.shape).MoveToOuterDisposeScope();
    }

    // ---------- the device part ----------

    /// <summary>Per-sequence settings in the upload: divisor, greedy, top-k index, top-p bound, point mass.</summary>
    private const int SettingRows = 5;

    /// <summary>The per-sequence filters on the device ([B, 1, 1] each) and what the batch needs at all.</summary>
    private sealed record RowFilters(Tensor Divisor, Tensor Greedy, Tensor KthIndex, Tensor TopPBound,
        bool AnyGreedy, bool AllGreedy, int MaxTopK, bool AnyTopP);

    /// <summary>
    /// Writes the per-sequence settings as <see cref="SettingRows"/> rows of B values at <paramref name="offset"/>: the
    /// temperature divisor (1 for greedy rows), the greedy flag, the index of the k-th largest logit in a descending sort
    /// (V − 1 when top-k is off, which keeps everything), the top-p bound (2 when off: no exclusive cumulative mass
    /// reaches it) and the point-mass flag (no draft distributions).
    /// </summary>
    private static void FillSettings(double[] host, long offset, IReadOnlyList<SequenceSampling> sequences, long vocab)
    {
        int batch = sequences.Count;
        for (int b = 0; b < batch; b++)
        {
            SamplingOptions o = sequences[b].Options;
            bool greedy = o.IsGreedy;
            host[offset + b] = greedy ? 1.0 : o.Temperature;
            host[offset + batch + b] = greedy ? 1.0 : 0.0;
            host[offset + 2 * batch + b] = !greedy && o.TopK > 0 && o.TopK < vocab ? o.TopK - 1 : vocab - 1;
            host[offset + 3 * batch + b] = !greedy && o.TopP < 1f ? o.TopP : 2.0;
            host[offset + 4 * batch + b] = sequences[b].Draft is null ? 1.0 : 0.0;
        }
    }

    private static RowFilters Filters(Tensor packed, long offset, IReadOnlyList<SamplingOptions> options, int batch, long vocab)
    {
        Tensor Row(int r) => packed.narrow(0, offset + r * batch, batch).view(batch, 1, 1);
        return new RowFilters(
            Row(0).to(ScalarType.Float32),
            Row(1).gt(Half),
            Row(2).to(ScalarType.Int64),
            Row(3).to(ScalarType.Float32),
            options.Any(o => o.IsGreedy),
            options.All(o => o.IsGreedy),
            options.Where(o => !o.IsGreedy && o.TopK > 0 && o.TopK < vocab).Select(o => o.TopK).DefaultIfEmpty(0).Max(),
            options.Any(o => !o.IsGreedy && o.TopP < 1f));
    }

    /// <summary>The target distributions [B, T, V] float32 under per-sequence filters (see
    /// <see cref="TargetProbabilities(Tensor, IReadOnlyList{SamplingOptions})"/>).</summary>
    private static Tensor Probabilities(Tensor logits, RowFilters f)
    {
        using var scope = NewDisposeScope();
        Device device = logits.device;
        Tensor? pointMass = null;
        if (f.AnyGreedy)
        {
            Tensor best = logits.argmax(-1, keepdim: true); // ties: the lowest id
            pointMass = zeros(logits.shape, ScalarType.Float32, device).scatter_(-1, best, ones(best.shape, ScalarType.Float32, device));
            if (f.AllGreedy)
            {
                return pointMass.MoveToOuterDisposeScope();
            }
        }
        Tensor z = logits.to(ScalarType.Float32) / f.Divisor;
        Tensor p;
        if (f.AnyTopP)
        {
            // One descending sort serves both filters; the result goes back to vocabulary order with one scatter.
            (Tensor sorted, Tensor order) = z.sort(-1, descending: true, stable: false);
            z.Dispose();
            if (f.MaxTopK > 0)
            {
                // Keep everything >= the k-th largest value, ties included (transformers' TopKLogitsWarper).
                Tensor kth = sorted.gather(-1, f.KthIndex.expand(sorted.shape[0], sorted.shape[1], 1));
                sorted.masked_fill_(sorted < kth, TorchScalars.NegativeInfinity);
            }
            Tensor ps = sorted.softmax(-1);
            sorted.Dispose();
            // transformers removes a token when its ascending cumulative mass is <= 1 − top_p, i.e. when the tokens
            // sorted before it (more probable) hold >= top_p. The most probable token has 0 before it: always kept.
            Tensor before = ps.cumsum(-1).sub_(ps);
            ps.masked_fill_(before >= f.TopPBound, TorchScalars.Zero);
            before.Dispose();
            ps.div_(ps.sum(-1, keepdim: true));
            p = zeros_like(ps).scatter_(-1, order, ps);
        }
        else
        {
            if (f.MaxTopK > 0)
            {
                // Top-k alone needs no full sort: the k-th largest of each row from one topk of the batch's largest k
                // (a full sort of the vocabulary costs far more on the CPU); rows without top-k keep everything.
                Tensor largest = z.topk(f.MaxTopK, -1, largest: true, sorted: true).Item1;
                using Scalar maxTopK = f.MaxTopK, lastOfTopK = f.MaxTopK - 1; // held for the calls (TorchScalars)
                Tensor kth = largest.gather(-1, f.KthIndex.clamp_max(lastOfTopK).expand(z.shape[0], z.shape[1], 1));
                kth.masked_fill_(f.KthIndex.ge(maxTopK), TorchScalars.NegativeInfinity);
                z.masked_fill_(z < kth, TorchScalars.NegativeInfinity);
            }
            p = z.softmax(-1);
        }
        if (pointMass is not null)
        {
            p = where(f.Greedy, pointMass, p);
        }
        return p.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Draws the uniforms, packs them with the per-sequence data into one upload, and computes on the device the accept
    /// flag of every (row, child rank) and the final token of every row, packed into one int64 tensor [B, T, K + 1] and
    /// copied to the host once.
    /// </summary>
    private static long[] ComputeDecisions(Tensor logits, IReadOnlyList<int[]> tokens, IReadOnlyList<SequenceSampling> sequences,
        int batch, int rows, int maxChildren, int[] childNode, int[] childCount, bool closedForm)
    {
        long vocab = logits.shape[2];
        int cells = batch * rows;
        int stride = maxChildren + 1;
        bool anyDraft = sequences.Any(s => s.Draft is not null);
        // Point-mass sequences need δ(x) rows only when they share the step with draft distributions and have children.
        bool anyPointMass = anyDraft && Enumerable.Range(0, batch).Any(b => sequences[b].Draft is null && tokens[b].Length > 1);

        // The upload, float64: uniforms [B, T, K + 1], child tokens [B, T, K], child counts [B, T], then the draft row of
        // each (sequence, node) in the stacked draft rows [B * T] (only with drafts), then the settings [5, B].
        long childrenAt = (long)cells * stride;
        long countsAt = childrenAt + (long)cells * maxChildren;
        long draftRowAt = countsAt + cells;
        long settingsAt = draftRowAt + (anyDraft ? cells : 0);
        var host = new double[settingsAt + SettingRows * batch];
        var drafts = new List<Tensor>();
        long stackedRows = 0;
        for (int b = 0; b < batch; b++)
        {
            SequenceSampling s = sequences[b];
            int n = tokens[b].Length;
            for (int u = 0; u < n; u++)
            {
                int cell = b * rows + u;
                host[countsAt + cell] = childCount[cell];
                for (int i = 0; i < childCount[cell]; i++)
                {
                    host[childrenAt + (long)cell * maxChildren + i] = tokens[b][childNode[cell * maxChildren + i]];
                }
                if (!s.Options.IsGreedy)
                {
                    // The sequence's own draw order: u's children's accept tests, then u's final token.
                    for (int i = 0; i < childCount[cell]; i++)
                    {
                        host[(long)cell * stride + i] = s.Stream!.NextSingle();
                    }
                    host[(long)cell * stride + maxChildren] = s.Stream!.NextSingle();
                }
            }
            if (anyDraft)
            {
                long r = s.Draft?.shape[0] ?? 0;
                for (int u = 0; u < rows; u++)
                {
                    host[draftRowAt + b * rows + u] = u < r ? stackedRows + u : -1; // -1: the zero row, fixed below
                }
                if (s.Draft is not null)
                {
                    drafts.Add(s.Draft);
                    stackedRows += r;
                }
            }
        }
        if (anyDraft)
        {
            for (long c = 0; c < cells; c++)
            {
                if (host[draftRowAt + c] < 0)
                {
                    host[draftRowAt + c] = stackedRows;
                }
            }
        }
        FillSettings(host, settingsAt, sequences, vocab);

        using var scope = NewDisposeScope();
        Device device = logits.device;
        Tensor packed = tensor(host).to(device); // the one host-to-device copy
        RowFilters filters = Filters(packed, settingsAt, sequences.Select(s => s.Options).ToArray(), batch, vocab);
        Tensor uniforms = packed.narrow(0, 0, (long)cells * stride).view(batch, rows, stride).to(ScalarType.Float32);
        Tensor counts = packed.narrow(0, countsAt, cells).view(batch, rows, 1).to(ScalarType.Int64);

        Tensor p = Probabilities(logits, filters);
        Tensor? q = null;
        if (anyDraft)
        {
            // Every sequence's draft rows stacked, one zero row after them for point-mass sequences, nodes without
            // children and padding; then one gather into [B, T, V].
            drafts.Add(zeros([1, vocab], ScalarType.Float32, device));
            Tensor stacked = cat(drafts.Select(d => d.to(ScalarType.Float32)).ToArray(), 0);
            Tensor rowOf = packed.narrow(0, draftRowAt, cells).to(ScalarType.Int64);
            q = stacked.index_select(0, rowOf).view(batch, rows, vocab);
            stacked.Dispose();
        }
        var parts = new Tensor[maxChildren + 1];
        Tensor? children = maxChildren > 0
            ? packed.narrow(0, childrenAt, (long)cells * maxChildren).view(batch, rows, maxChildren).to(ScalarType.Int64)
            : null;
        if (children is not null && q is null && closedForm)
        {
            p = PointMassRanks(p, children, counts, uniforms, maxChildren, parts);
        }
        else if (children is not null)
        {
            Tensor? pointMassRow = anyPointMass
                ? packed.narrow(0, settingsAt + 4 * batch, batch).view(batch, 1, 1).to(ScalarType.Float32).expand(batch, rows, 1).contiguous()
                : null;
            for (int i = 0; i < maxChildren; i++)
            {
                // Each rank's temporaries are [B, T, V]: free them before the next rank.
                using var rank = NewDisposeScope();
                Tensor token = children.narrow(2, i, 1);
                Tensor px = p.gather(2, token);
                Tensor accept, residual;
                if (q is null)
                {
                    accept = px.clamp_max(TorchScalars.One);
                    residual = p.scatter(2, token, zeros(token.shape, ScalarType.Float32, device));
                }
                else
                {
                    // Point-mass sequences have zero draft rows: adding 1 at their child's token makes q_i = δ(x_i).
                    Tensor qi = pointMassRow is null ? q : q.scatter_add(2, token, pointMassRow);
                    Tensor qx = qi.gather(2, token);
                    accept = where(qx.gt(TorchScalars.Zero), (px / qx).clamp_max(TorchScalars.One), px.gt(TorchScalars.Zero).to(ScalarType.Float32));
                    residual = (p - qi).clamp_min_(TorchScalars.Zero);
                }
                Tensor mass = residual.sum(2, keepdim: true);
                // Zero mass means p = q_i: rejection is impossible in exact arithmetic, keep p (see the remarks).
                using Scalar rankIndex = i; // held for the call (TorchScalars)
                Tensor next = where(counts.gt(rankIndex).logical_and(mass.gt(MassFloor)), residual / mass.clamp_min(MassFloor), p);
                // Greedy rows have uniform 0 and accept in {0, 1}: accepted exactly when accept = 1.
                parts[i] = (uniforms.narrow(2, i, 1) < accept).to(ScalarType.Int64).MoveToOuterDisposeScope();
                Tensor previous = p;
                p = next.MoveToOuterDisposeScope();
                previous.Dispose();
            }
        }
        // Inverse CDF: the first token whose cumulative mass exceeds U · total (U = 0 for greedy rows, whose residual is
        // the argmax point mass, so the argmax). The clamp only guards rounding; U < 1 keeps U · total below the total.
        Tensor cdf = p.cumsum(2);
        Tensor target = uniforms.narrow(2, maxChildren, 1) * cdf.narrow(2, vocab - 1, 1);
        using Scalar lastToken = vocab - 1; // held for the call (TorchScalars)
        parts[maxChildren] = searchsorted(cdf, target, right: true).clamp_max(lastToken);
        // The one host synchronisation.
        using Tensor decided = cat(parts, 2).cpu();
        return decided.data<long>().ToArray();
    }

    /// <summary>
    /// The child ranks of a batch without draft distributions (every draft a point mass), in closed form over the
    /// children's own probabilities. Rejecting child <c>x_i</c> removes it from the residual and renormalises, so the
    /// residual before rank <c>i</c> is <c>P</c> without the children removed so far, over their remaining mass
    /// <c>Z_i</c>: child <c>i</c> is accepted with probability <c>min(1, P(x_i) / Z_i)</c>, and its rejection removes it
    /// when the mass left, <c>(Z_i − P(x_i)) / Z_i</c>, is above <see cref="ResidualMassFloor"/> (else the residual stays,
    /// as in the general loop). The scan runs on [B, T, 1] tensors; the only [B, T, V] work is one gather, one sum and
    /// the removal mask, where the general loop makes several [B, T, V] passes per rank (1.4-2.2 ms of a sampled tree
    /// step on the H100, fifth session of 2026-12-07). Writes each rank's accept flags into <paramref name="parts"/>
    /// and returns the final residual (unnormalised; the inverse CDF scales by its total).
    /// </summary>
    private static Tensor PointMassRanks(Tensor p, Tensor children, Tensor counts, Tensor uniforms, int maxChildren, Tensor[] parts)
    {
        using var scope = NewDisposeScope();
        Tensor childP = p.gather(2, children);               // P(x_i) [B, T, K]
        Tensor remaining = p.sum(2, keepdim: true);           // Z_0 [B, T, 1]
        var removed = new Tensor[maxChildren];
        for (int i = 0; i < maxChildren; i++)
        {
            Tensor px = childP.narrow(2, i, 1);
            // Z stays above 0: it starts at P's total and a removal leaves more than 1e-6 of it
            Tensor accept = (px / remaining).clamp_max(TorchScalars.One);
            // Greedy rows have uniform 0 and accept in {0, 1}: accepted exactly when accept = 1.
            parts[i] = (uniforms.narrow(2, i, 1) < accept).to(ScalarType.Int64).MoveToOuterDisposeScope();
            Tensor left = remaining - px;
            using Scalar rankIndex = i; // held for the call (TorchScalars)
            Tensor removal = counts.gt(rankIndex).logical_and(left.gt(remaining * MassFloor));
            remaining = where(removal, left, remaining);
            removed[i] = removal;
        }
        // the removed children's tokens zeroed (tokens of one node's children are distinct; padding ranks remove nothing)
        Tensor mask = zeros(p.shape, ScalarType.Float32, p.device).scatter_add_(2, children, cat(removed, 2).to(ScalarType.Float32));
        return p.masked_fill(mask.gt(TorchScalars.Zero), TorchScalars.Zero).MoveToOuterDisposeScope();
    }

    // ---------- validation ----------

    private static void ValidateSampling(int b, SequenceSampling s, int[] parents, Tensor logits)
    {
        if (s.Options is null)
        {
            throw new ArgumentException($"Sequence {b} has no SamplingOptions.", "sequences");
        }
        if (!s.Options.IsGreedy && s.Stream is null)
        {
            throw new ArgumentException($"Sequence {b} samples (temperature {s.Options.Temperature}) but has no random stream.", "sequences");
        }
        if (s.Draft is not Tensor q)
        {
            return;
        }
        long vocab = logits.shape[2];
        if (q.dim() != 2 || q.shape[1] != vocab || !q.is_floating_point())
        {
            throw new ArgumentException(
                $"Sequence {b}: draft distributions must be floating point [rows, {vocab}], got {q.dtype} [{string.Join(", ", q.shape)}].", "sequences");
        }
        if (q.device_type != logits.device_type || q.device_index != logits.device_index)
        {
            throw new ArgumentException($"Sequence {b}: draft distributions are on {q.device} but logits on {logits.device}: put them on one device.", "sequences");
        }
        int lastParent = parents.Length > 1 ? parents[1..].Max() : -1;
        if (q.shape[0] <= lastParent || q.shape[0] > parents.Length)
        {
            throw new ArgumentException(
                $"Sequence {b}: {q.shape[0]} draft rows for a tree of {parents.Length} nodes whose last node with children is {lastParent}: " +
                $"give {lastParent + 1} to {parents.Length} rows, row u for node u's children.", "sequences");
        }
    }

    private static void ValidateTree(int b, int[] parents, int[] tokens, int rows, long vocab)
    {
        if (parents is null || tokens is null)
        {
            throw new ArgumentNullException(parents is null ? nameof(parents) : nameof(tokens), $"Sequence {b} has no tree arrays.");
        }
        int n = parents.Length;
        if (n < 1 || n > rows)
        {
            throw new ArgumentException($"Sequence {b} has {n} nodes; a tree has 1..{rows} nodes (the logits' T), the root included.", nameof(parents));
        }
        if (tokens.Length != n)
        {
            throw new ArgumentException($"Sequence {b} has {n} parents but {tokens.Length} tokens: give one token per node.", nameof(tokens));
        }
        if (parents[0] != -1)
        {
            throw new ArgumentException($"Sequence {b}: node 0 is the root and must have parent -1, got {parents[0]}.", nameof(parents));
        }
        for (int t = 1; t < n; t++)
        {
            if (parents[t] < 0 || parents[t] >= t)
            {
                throw new ArgumentException($"Sequence {b}: node {t} has parent {parents[t]}; draft nodes need a parent in [0, {t}).", nameof(parents));
            }
            if (tokens[t] < 0 || tokens[t] >= vocab)
            {
                throw new ArgumentException($"Sequence {b}: node {t} has token {tokens[t]}, outside the vocabulary [0, {vocab}).", nameof(tokens));
            }
        }
    }
}
