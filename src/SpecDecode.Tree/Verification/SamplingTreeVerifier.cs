using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>What sampling verification kept of one sequence's tree.</summary>
/// <param name="AcceptedNodes">The accepted node indices, root first: <c>[0, n1, n2, ...]</c> with each node a child of
/// the one before it.</param>
/// <param name="Tokens">The emitted tokens: the tokens of the accepted draft nodes (<c>n1, n2, ...</c>) followed by one
/// token sampled from the target at the last accepted node. Always exactly as long as <paramref name="AcceptedNodes"/>.</param>
internal readonly record struct TreeSample(int[] AcceptedNodes, int[] Tokens);

/// <summary>
/// Sampling verification of a batch of draft token trees that keeps the target model's distribution exactly: multi-step
/// speculative sampling over a tree (SpecInfer, Miao et al. 2023, "SpecInfer: Accelerating Generative LLM Serving with
/// Tree-based Speculative Inference", Algorithm 2), with everything that does not depend on the walk computed on the
/// device and one host synchronisation per call.
/// </summary>
/// <remarks>
/// <para><b>Tree layout.</b> Per sequence, node 0 is the root (the last accepted token) and nodes 1..n-1 are draft
/// tokens; <c>parents[0] = -1</c> and <c>parents[t] &lt; t</c>. The children of a node are tried in ascending node
/// index. Row <c>t</c> of the logits is the target's prediction after node <c>t</c>.</para>
/// <para><b>Algorithm.</b> At a visited node <c>u</c> with target distribution <c>p</c> (from row <c>u</c>, after
/// <see cref="SamplingOptions"/>), child <c>i</c> with token <c>x_i</c> and draft distribution <c>q_i</c> is accepted with
/// probability <c>min(1, p(x_i) / q_i(x_i))</c>; on acceptance the walk moves to the child. On rejection
/// <c>p ← normalise(max(0, p − q_i))</c> and the next child is tried. When every child is rejected (or <c>u</c> is a
/// leaf) one token is sampled from the current <c>p</c> and the walk stops. <c>q_i</c> is row <c>u</c> of the draft
/// probabilities when the children of <c>u</c> were sampled i.i.d. from it (siblings may then repeat a token), or the
/// point mass on <c>x_i</c> for model-free drafters, where a rejection just removes <c>x_i</c> from <c>p</c>. A token
/// with <c>p(x) = 0</c> is never accepted; a child with <c>q_i(x_i) = 0</c> (not a sample of <c>q_i</c>) is accepted
/// exactly when <c>p(x_i) &gt; 0</c>.</para>
/// <para><b>One synchronisation.</b> The residual after rejecting children 1..i-1 of <c>u</c> depends only on
/// <c>u</c>'s own children, not on the walk, so for every row <c>u</c> and child rank <c>i</c> the device computes the
/// acceptance probability, draws a uniform and compares them, and draws the final token from the residual after all of
/// <c>u</c>'s children are rejected (an exponential race, <c>argmax p / E</c> with <c>E ~ Exp(1)</c>). Only the
/// accept flags <c>[B, T, K]</c> and final tokens <c>[B, T]</c> (K = most children of any node) are copied to the host,
/// in one transfer, where each tree is walked. Each node is visited at most once per walk, so its uniforms are used at
/// most once.</para>
/// <para><b>Numerics.</b> Probabilities are float32 on the logits' device. When a residual has (numerically) no mass,
/// i.e. <c>sum max(0, p − q_i) ≤ 1e-6</c>, which in exact arithmetic means <c>p = q_i</c> and rejection is impossible,
/// the residual is replaced by <c>p</c> itself (the distribution before that rejection). This never accepts a token
/// the target gives probability 0; it can only change the output when the rejection happens, which has probability
/// <c>sum max(0, p − q_i) ≤ 1e-6</c>, so the output distribution moves by at most that much in total variation.</para>
/// <para><b>Greedy.</b> With temperature 0 the target distribution is the point mass on the argmax of the logits (lowest
/// token id on ties), acceptance is 0 or 1 and the final token is the argmax, so the output equals
/// <see cref="GreedyTreeVerifier"/>'s and no random numbers are drawn.</para>
/// <para><b>Randomness.</b> With <see cref="SamplingOptions.Seed"/> set the verifier owns a <see cref="Generator"/>
/// created on the device of the first logits it sees and advanced by every call, so two verifiers with the same seed
/// give the same outputs for the same sequence of calls on the same device (successive calls get fresh random numbers);
/// without a seed TorchSharp's global generator is used. On CUDA, TorchSharp 0.107 cannot make a device generator, so a
/// seeded verifier seeds the device's default generator at its first call and draws from it: its outputs are then
/// reproducible only when nothing else draws from that generator in between. An instance is not safe for concurrent calls.</para>
/// </remarks>
internal sealed class SamplingTreeVerifier : IDisposable
{
    /// <summary>Below this residual mass a rejection is treated as impossible (see the remarks on numerics).</summary>
    internal const float ResidualMassFloor = 1e-6f;

    private readonly float _temperature;
    private readonly int _topK;
    private readonly float _topP;
    private readonly long? _seed;
    private Generator? _generator;
    private Device? _generatorDevice;
    private bool _disposed;

    /// <summary>Creates a verifier with a snapshot of <paramref name="options"/> (later changes to it have no effect).</summary>
    /// <param name="options">Temperature, top-k, top-p and seed; validated by its setters.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    internal SamplingTreeVerifier(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _temperature = options.Temperature;
        _topK = options.TopK;
        _topP = options.TopP;
        _seed = options.Seed;
    }

    /// <summary>Verifies a batch of trees by speculative sampling, with one device-to-host copy.</summary>
    /// <param name="logits">Target logits [B, T, V], any floating dtype, any device: row t of sequence b follows node t of
    /// that sequence's tree; rows at or after the tree's node count are padding and never read on the host. Not disposed.</param>
    /// <param name="parents">Per sequence (B entries), the parent of each node: length n_b in [1, T], <c>parents[0] = -1</c>,
    /// <c>0 &lt;= parents[t] &lt; t</c> for t &gt;= 1.</param>
    /// <param name="tokens">Per sequence, the token of each node, same length as its parents; <c>tokens[0]</c> (the root)
    /// is ignored, the others must lie in [0, V).</param>
    /// <param name="draftProbs">The draft's (already temperature-processed) distributions [B, T, V] on the logits' device,
    /// row t being the distribution node t's children were sampled i.i.d. from; or <c>null</c> when the children are
    /// deterministic guesses (point-mass drafts). Not disposed.</param>
    /// <returns>One <see cref="TreeSample"/> per sequence.</returns>
    /// <exception cref="ArgumentNullException">A required argument or a per-sequence array is null.</exception>
    /// <exception cref="ArgumentException">Shapes, devices or tree arrays are inconsistent (the message says which).</exception>
    /// <exception cref="ObjectDisposedException">The verifier was disposed.</exception>
    /// <exception cref="InvalidOperationException">A seeded verifier is called with logits on a different device than its
    /// first call.</exception>
    public TreeSample[] Verify(Tensor logits, IReadOnlyList<int[]> parents, IReadOnlyList<int[]> tokens, Tensor? draftProbs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(parents);
        ArgumentNullException.ThrowIfNull(tokens);
        if (logits.dim() != 3 || !logits.is_floating_point())
        {
            throw new ArgumentException($"Expected floating-point logits [B, T, V], got {logits.dtype} [{string.Join(", ", logits.shape)}].", nameof(logits));
        }
        int batch = checked((int)logits.shape[0]);
        int rows = checked((int)logits.shape[1]);
        long vocab = logits.shape[2];
        if (parents.Count != batch || tokens.Count != batch)
        {
            throw new ArgumentException($"logits hold {batch} sequences but parents has {parents.Count} and tokens {tokens.Count}: give one tree per sequence.", nameof(parents));
        }
        if (draftProbs is not null)
        {
            if (!draftProbs.shape.SequenceEqual(logits.shape) || !draftProbs.is_floating_point())
            {
                throw new ArgumentException($"draftProbs must be floating point with the logits' shape [{string.Join(", ", logits.shape)}], got {draftProbs.dtype} [{string.Join(", ", draftProbs.shape)}].", nameof(draftProbs));
            }
            if (draftProbs.device_type != logits.device_type || draftProbs.device_index != logits.device_index)
            {
                throw new ArgumentException($"draftProbs is on {draftProbs.device} but logits on {logits.device}: put them on one device.", nameof(draftProbs));
            }
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
        }
        int maxChildren = childCount.Length == 0 ? 0 : childCount.Max();
        var childNode = new int[batch * rows * maxChildren];
        var childToken = new long[batch * rows * maxChildren];
        var fill = new int[batch * rows];
        for (int b = 0; b < batch; b++)
        {
            int[] par = parents[b];
            for (int t = 1; t < par.Length; t++)
            {
                int slot = b * rows + par[t];
                int at = slot * maxChildren + fill[slot]++;
                childNode[at] = t;
                childToken[at] = tokens[b][t];
            }
        }

        long[] host = ComputeDecisions(logits, draftProbs, batch, rows, maxChildren, childToken, childCount);

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
    /// The target distribution of every row: softmax(logits / temperature) after Hugging Face's top-k and top-p
    /// filtering, or the point mass on the argmax when the temperature is 0.
    /// </summary>
    /// <param name="logits">Logits [..., V], any floating dtype; not disposed.</param>
    /// <param name="temperature">&gt;= 0; 0 gives the argmax point mass (ties to the lowest id).</param>
    /// <param name="topK">0 for off; otherwise keeps logits &gt;= the k-th largest (ties kept, as transformers does).</param>
    /// <param name="topP">In (0, 1]; 1 for off. Sorting ascending, removes tokens whose cumulative probability is
    /// &lt;= 1 - topP, always keeping the most probable one (transformers' <c>TopPLogitsWarper</c>).</param>
    /// <returns>A new float32 tensor [..., V] on the logits' device whose rows sum to 1.</returns>
    internal static Tensor TargetProbabilities(Tensor logits, float temperature, int topK, float topP)
    {
        using var scope = NewDisposeScope();
        long vocab = logits.shape[^1];
        if (temperature == 0f)
        {
            Tensor best = logits.argmax(-1, keepdim: true);
            return zeros(logits.shape, ScalarType.Float32, logits.device)
                .scatter(-1, best, ones(best.shape, ScalarType.Float32, logits.device))
                .MoveToOuterDisposeScope();
        }
        Tensor z = logits.to(ScalarType.Float32) / temperature;
        if (topK > 0 && topK < vocab)
        {
            Tensor kth = z.topk(topK, -1, largest: true, sorted: true).Item1.narrow(-1, topK - 1, 1);
            z = z.masked_fill(z < kth, float.NegativeInfinity);
        }
        if (topP < 1f)
        {
            (Tensor sorted, Tensor order) = z.sort(-1, descending: false, stable: false);
            Tensor remove = sorted.softmax(-1).cumsum(-1) <= (1.0 - topP);
            remove.narrow(-1, vocab - 1, 1).fill_(false);
            z = z.masked_fill(remove.scatter(-1, order, remove), float.NegativeInfinity);
        }
        return z.softmax(-1).MoveToOuterDisposeScope();
    }

    /// <summary>Disposes the seeded generator, if one was created.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _generator?.Dispose();
        _generator = null;
    }

    /// <summary>
    /// The device part: accept flags for every (row, child rank) and the final token of every row, packed into one
    /// int64 tensor [B, T, K + 1] and copied to the host once.
    /// </summary>
    private long[] ComputeDecisions(Tensor logits, Tensor? draftProbs, int batch, int rows, int maxChildren,
        long[] childToken, int[] childCount)
    {
        using var scope = NewDisposeScope();
        Device device = logits.device;
        bool greedy = _temperature == 0f;
        Generator? generator = greedy ? null : GeneratorFor(device);
        long vocab = logits.shape[2];

        Tensor p = TargetProbabilities(logits, _temperature, _topK, _topP);
        Tensor? q = draftProbs?.to(ScalarType.Float32);
        Tensor counts = tensor(childCount.Select(c => (long)c).ToArray(), [batch, rows, 1]).to(device);
        Tensor children = tensor(childToken, [batch, rows, maxChildren]).to(device);
        Tensor? uniforms = greedy || maxChildren == 0
            ? null
            : rand([batch, rows, maxChildren], ScalarType.Float32, device, generator: generator);
        var parts = new Tensor[maxChildren + 1];
        for (int i = 0; i < maxChildren; i++)
        {
            // Each rank's temporaries are [B, T, V]: free them before the next rank.
            using var rank = NewDisposeScope();
            Tensor token = children.narrow(2, i, 1);
            Tensor px = p.gather(2, token);
            Tensor accept, residual;
            if (q is null)
            {
                accept = px.clamp_max(1f);
                residual = p.scatter(2, token, zeros(token.shape, ScalarType.Float32, device));
            }
            else
            {
                Tensor qx = q.gather(2, token);
                accept = where(qx > 0f, (px / qx).clamp_max(1f), (px > 0f).to(ScalarType.Float32));
                residual = (p - q).clamp_min(0f);
            }
            Tensor mass = residual.sum(2, keepdim: true);
            // Zero mass means p = q_i: rejection is impossible in exact arithmetic, keep p (see the remarks).
            Tensor next = where((counts > i).logical_and(mass > ResidualMassFloor), residual / mass.clamp_min(ResidualMassFloor), p);
            parts[i] = (uniforms is null ? accept >= 1f : uniforms.narrow(2, i, 1) < accept)
                .to(ScalarType.Int64).MoveToOuterDisposeScope();
            Tensor previous = p;
            p = next.MoveToOuterDisposeScope();
            previous.Dispose();
        }
        if (greedy)
        {
            parts[maxChildren] = p.argmax(2, keepdim: true);
        }
        else
        {
            // Exponential race: argmax_j p_j / E_j with E_j = -log U_j ~ Exp(1) picks j with probability p_j / sum p.
            // U in [0, 1) gives E in (0, inf], so zero-probability tokens score 0 and are never picked over others.
            Tensor exponential = rand([batch, rows, vocab], ScalarType.Float32, device, generator: generator).log_().neg_();
            parts[maxChildren] = (p / exponential).argmax(2, keepdim: true);
        }
        // The one host synchronisation.
        using Tensor packed = cat(parts, 2).cpu();
        return packed.data<long>().ToArray();
    }

    private Generator? GeneratorFor(Device device)
    {
        if (_seed is not long seed)
        {
            return null;
        }
        if (_generatorDevice is null)
        {
            _generatorDevice = device;
            if (device.type == DeviceType.CUDA)
            {
                // TorchSharp 0.107's Generator(seed, device) always makes a CPU generator, which CUDA kernels refuse;
                // a seeded CUDA verifier seeds the device's default generator once and draws from it.
                torch.cuda.manual_seed(seed);
            }
            else
            {
                _generator = new Generator(unchecked((ulong)seed), device);
            }
        }
        else if (_generatorDevice.type != device.type || _generatorDevice.index != device.index)
        {
            throw new InvalidOperationException(
                $"This seeded verifier draws on {_generatorDevice}; logits on {device} need a verifier of their own.");
        }
        return _generator;
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
