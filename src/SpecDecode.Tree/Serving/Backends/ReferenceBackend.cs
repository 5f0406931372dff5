using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>A step's device tensors (all [B, T] unless noted; Logits [B, T, vocab]).</summary>
internal sealed record StepTensors(Tensor Tokens, Tensor Parents, Tensor Depths, Tensor Valid, Tensor Lengths, Tensor Slots, Tensor Ancestors, Tensor Logits);

/// <summary>
/// The reference path: every step through libtorch, the decoder layers as one TorchScript function
/// (<see cref="ScriptedDecoder"/>) or eagerly, one forward for the whole batch of ragged trees (each row padded to the
/// widest), acceptance on the device (greedy, or forced for benchmarks) or by multi-step speculative sampling on the
/// host's random streams, the accepted paths moved next to their prefixes on the device. It runs every step the faster
/// backends refuse, and prefill and draft-model forwards.
/// </summary>
internal sealed partial class ReferenceBackend(ModelParts parts) : IStepBackend
{
    private ModelConfig Config => parts.Config;
    private CausalLMWeights _weights => parts.Weights;
    private KvCache _cache => parts.Cache;
    private Tensor _cos => parts.Cos;
    private Tensor _sin => parts.Sin;
    private ScriptedDecoder? _scripted => parts.Scripted;
    private Device Device => parts.Device;
    private ScalarType DType => parts.DType;
    private int Capacity => parts.Capacity;

    /// <inheritdoc />
    public string Name => _scripted is null ? "libtorch, eager layers" : "libtorch, scripted layers";

    /// <inheritdoc />
    public string? Refuses(VerifyStep step) => null;

    /// <inheritdoc />
    public VerifiedStep[] Verify(VerifyStep step) => step.Rule switch
    {
        AcceptanceRule.Greedy => Greedy(step.Inputs, null),
        AcceptanceRule.Forced => Greedy(step.Inputs, step.Forced),
        _ => Sampled(step.Inputs, step.Sampling!, step.Drafts, step.Forced),
    };

    /// <summary>Greedy acceptance on the device, or with <paramref name="references"/> the recorded tokens deciding in place
    /// of the target's argmax (the forward and the commit cost the same).</summary>
    private VerifiedStep[] Greedy(IReadOnlyList<TreeInput> inputs, IReadOnlyList<int[]>? references)
    {
        StepPlan plan = StepPlan.ForTrees(inputs, _cache.Lengths, Capacity);
        long[]? forced = null;
        if (references is not null)
        {
            forced = new long[plan.Batch * plan.Width];
            Array.Fill(forced, -1L);
            for (int i = 0; i < inputs.Count; i++)
            {
                ForcedChoices(inputs[i].Draft, references[i]).CopyTo(forced, inputs[i].Slot * plan.Width);
            }
        }
        long[] result;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            StepTensors step = Forward(plan);
            Tensor? forcedNext = forced is null ? null : tensor(forced, [plan.Batch, plan.Width]).to(Device);
            Tensor decided = GreedyAcceptance.Decide(step, _cache, plan.MaxDepth + 1, forcedNext);
            result = decided.cpu().data<long>().ToArray(); // the step's one synchronisation
        }
        return GreedyAcceptance.Read(result, inputs, plan, _cache);
    }

    /// <summary>Per entry of a step (0 the root, i + 1 draft node i), the recorded token that counts as the target's choice
    /// after it, or -1 past the end of <paramref name="reference"/>.</summary>
    internal static long[] ForcedChoices(DraftTree draft, int[] reference)
    {
        var forced = new long[draft.Count + 1];
        forced[0] = reference.Length > 0 ? reference[0] : -1;
        for (int node = 0; node < draft.Count; node++)
        {
            int depth = draft.Depths[node];
            forced[node + 1] = depth < reference.Length ? reference[depth] : -1;
        }
        return forced;
    }

    /// <summary>Logits [B, T, vocab] (float32, on the CPU) of one verification forward, accepting nothing.</summary>
    public Tensor TreeLogits(IReadOnlyList<TreeInput> inputs)
    {
        StepPlan plan = StepPlan.ForTrees(inputs, _cache.Lengths, Capacity);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return Forward(plan).Logits.to(float32).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>One prefill forward over each slot's chunk (causal: every slot empty, see
    /// <see cref="StepPlan.ForCausalChunks"/>); the slots' lengths grow by their chunks. Returns the logits [k, vocab]
    /// (on the device, in the chunks' order) after the last token of each chunk <paramref name="logitsAfter"/> marks, or
    /// null when it marks none (<see cref="LastRowLogits"/>).</summary>
    public Tensor? PrefillChunks(List<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, bool causal, IReadOnlyList<bool>? logitsAfter = null)
    {
        StepPlan plan = causal
            ? StepPlan.ForCausalChunks(chunks, _cache.Lengths, Capacity)
            : StepPlan.ForChunks(chunks, _cache.Lengths, Capacity);
        int[] marked = Marked(chunks, logitsAfter);
        // the flattened [B × T] entry of each marked chunk's last token: row r of a causal plan, the slot's row otherwise
        long[] lastRows = [.. marked.Select(i => (long)(causal ? i : chunks[i].Slot) * plan.Width + chunks[i].Tokens.Length - 1)];
        Tensor? lastInputs = null;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            Tensor hidden = PrefillForward(plan);
            if (marked.Length > 0)
            {
                lastInputs = hidden.reshape(-1, Config.HiddenSize).index_select(0, tensor(lastRows).to(Device)).MoveToOuterDisposeScope();
            }
        }
        return AppendAndContinue(chunks, marked, lastInputs);
    }

    /// <summary>One packed prefill forward (<see cref="PackedPrefillPlan"/>) over each slot's next chunk, with the scripted
    /// layers: libtorch's flash attention when <paramref name="flash"/>, else the script's reference attention. The
    /// slots' lengths grow by their chunks. Returns the logits [k, vocab] after the last token of each chunk
    /// <paramref name="logitsAfter"/> marks (on the device, in the chunks' order), or null when it marks none.</summary>
    public Tensor? PrefillPacked(List<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, bool flash, IReadOnlyList<bool>? logitsAfter = null)
    {
        ScriptedDecoder scripted = _scripted ?? throw new InvalidOperationException("Packed prefill needs the scripted layers.");
        PackedPrefillPlan plan = PackedPrefillPlan.For(chunks, _cache);
        int[] marked = Marked(chunks, logitsAfter);
        Tensor? lastInputs = null;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            ModelConfig c = Config;
            long n = plan.Rows, k = plan.Keys, s = plan.Sequences;
            Tensor all = tensor(plan.Packed).to(Device); // the forward's one upload
            Tensor tokens = all.narrow(0, 0, n), positions = all.narrow(0, n, n), writeRows = all.narrow(0, 2 * n, n), readRows = all.narrow(0, 3 * n, k);
            Tensor cuRows = all.narrow(0, plan.StartsOffset, s + 1).to(ScalarType.Int32);
            Tensor cuKeys = all.narrow(0, plan.StartsOffset + s + 1, s + 1).to(ScalarType.Int32);
            Tensor starts = tensor(plan.Packed.AsSpan(plan.StartsOffset).ToArray()); // the same starts on the CPU (the reference attention's loop)
            Tensor cos = _cos.index_select(0, positions).view(1, n, 1, c.HeadDim).to(DType);
            Tensor sin = _sin.index_select(0, positions).view(1, n, 1, c.HeadDim).to(DType);
            Tensor x = _weights.EmbedTokens.index_select(0, tokens).view(1, n, c.HiddenSize);
            Tensor hidden = scripted.ForwardPacked(x, _cache.Data, writeRows, readRows, cos, sin, cuRows, cuKeys, plan.MaxRows, plan.MaxKeys,
                starts.narrow(0, 0, s + 1), starts.narrow(0, s + 1, s + 1), flash);
            if (marked.Length > 0)
            {
                // chunk i's last token is the row before chunk i + 1's first (the plan's row starts)
                long[] ends = [.. marked.Select(i => plan.Packed[plan.StartsOffset + i + 1] - 1)];
                lastInputs = hidden.reshape(-1, c.HiddenSize).index_select(0, tensor(ends).to(Device)).MoveToOuterDisposeScope();
            }
        }
        return AppendAndContinue(chunks, marked, lastInputs);
    }

    /// <summary>The end of a prefill forward: the chunks' tokens join their slots' lengths, then the marked chunks' last
    /// rows (their last-layer inputs <paramref name="lastInputs"/>, disposed here) continue to their logits.</summary>
    private Tensor? AppendAndContinue(List<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, int[] marked, Tensor? lastInputs)
    {
        foreach ((int slot, ReadOnlyMemory<int> tokens) in chunks)
        {
            _cache.Append(slot, tokens.Span);
        }
        using (lastInputs)
        {
            return lastInputs is null ? null : LastRowLogits(lastInputs, [.. marked.Select(i => chunks[i].Slot)]);
        }
    }

    /// <summary>The chunks <paramref name="logitsAfter"/> marks, in order.</summary>
    private static int[] Marked(List<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, IReadOnlyList<bool>? logitsAfter) =>
        logitsAfter is null ? [] : [.. Enumerable.Range(0, chunks.Count).Where(i => logitsAfter[i])];

    /// <summary>
    /// The logits [k, vocab] after the last cached token of each of <paramref name="slots"/>, from that token's last-layer
    /// input <paramref name="inputs"/> [k, hidden] (what a prefill forward leaves: every layer's keys and values are
    /// cached, the last layer stopped after writing its own). Only those rows run the last layer's attention and MLP, the
    /// final norm and the output head: one row a sequence at its last position, attending its cache up to and including
    /// that position, the verification forward's mask and layout, writing nothing (their keys and values are in the cache
    /// already). So a prefill that gives the next token costs its forward plus a one-layer step of k rows, not a whole last
    /// layer over every row.
    /// </summary>
    private Tensor LastRowLogits(Tensor inputs, int[] slots)
    {
        ModelConfig c = Config;
        int[] lengths = (int[])_cache.Lengths.Clone();
        var roots = new TreeInput[slots.Length];
        for (int i = 0; i < slots.Length; i++)
        {
            lengths[slots[i]]--; // the plan's root is the last cached token, at its position
            roots[i] = new TreeInput(slots[i], 0, DraftTree.Empty);
        }
        StepPlan plan = StepPlan.ForTrees(roots, lengths, Capacity);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        (Tensor _, Tensor parents, Tensor depths, Tensor valid, Tensor rowLengths, Tensor rowSlots) = Upload(plan);
        Tensor mask = AttentionMask(Ancestors(parents, plan.MaxDepth), rowLengths, valid, plan.KeyCount, c.HeadCount / c.KeyValueHeadCount);
        long b = plan.Batch;
        Tensor at = tensor(slots.Select(s => (long)s).ToArray()).to(Device);
        Tensor x = zeros([b, c.HiddenSize], inputs.dtype, Device).index_copy(0, at, inputs).view(b, 1, c.HiddenSize);
        Tensor writeRows = full([b], _cache.ScratchRowScalar, int64, Device); // the keys and values are cached: nothing to write
        Tensor readRows = _cache.ReadRows(rowSlots, plan.KeyCount);
        Tensor positions = rowLengths.Plus(depths.view(-1));
        Tensor cos = _cos.index_select(0, positions).view(b, 1, 1, c.HeadDim).to(DType);
        Tensor sin = _sin.index_select(0, positions).view(b, 1, 1, c.HeadDim).to(DType);
        int last = c.LayerCount - 1;
        Tensor hidden = _scripted is not null
            ? _scripted.Forward(x, _cache.Data, writeRows, readRows, mask, cos, sin, firstLayer: last)
            : EagerLayers(x, writeRows, readRows, mask, cos, sin, firstLayer: last);
        Tensor h = hidden.view(b, c.HiddenSize).index_select(0, at).unsqueeze(1); // [k, 1, hidden]: the head's [B, T, hidden]
        return (parts.Parallel?.Logits(h) ?? nn.functional.linear(h, _weights.Head)).squeeze(1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
    }

    /// <summary>
    /// One verification forward over a <see cref="StepPlan"/>: uploads the plan in one copy, builds positions, the
    /// ancestor matrix and the attention mask on the device, writes every row's keys and values into the cache (padding
    /// rows into scratch), and returns the step's tensors with every row's logits. Must run inside a dispose scope and
    /// no_grad.
    /// </summary>
    internal StepTensors Forward(StepPlan plan)
    {
        (Tensor tokens, Tensor parents, Tensor depths, Tensor valid, Tensor lengths, Tensor slots) = Upload(plan);
        Tensor ancestors = Ancestors(parents, plan.MaxDepth);
        Tensor mask = AttentionMask(ancestors, lengths, valid, plan.KeyCount, Config.HeadCount / Config.KeyValueHeadCount);
        Tensor x = DecoderStack(tokens, depths, valid, lengths, slots, mask, plan.KeyCount);
        // tensor parallelism: each rank computes its vocabulary's logits and the ranks gather them
        Tensor logits = parts.Parallel?.Logits(x) ?? nn.functional.linear(x, _weights.Head);
        return new StepTensors(tokens, parents, depths, valid, lengths, slots, ancestors, logits);
    }

    /// <summary>
    /// One prefill forward: writes every chunk's keys and values into the cache; the last layer stops once its keys and
    /// values are written, and the result is that layer's input [B, T, hidden]. A <see cref="StepPlan.Causal"/> plan runs
    /// plain causal attention over its own keys, with no ancestor matrix and no mask; any other plan takes the verification
    /// forward's mask. Must run inside a dispose scope and no_grad.
    /// </summary>
    private Tensor PrefillForward(StepPlan plan)
    {
        (Tensor tokens, Tensor parents, Tensor depths, Tensor valid, Tensor lengths, Tensor slots) = Upload(plan);
        Tensor? mask = plan.Causal
            ? null
            : AttentionMask(Ancestors(parents, plan.MaxDepth), lengths, valid, plan.KeyCount, Config.HeadCount / Config.KeyValueHeadCount);
        return DecoderStack(tokens, depths, valid, lengths, slots, mask, plan.KeyCount, cacheOnly: true);
    }

    /// <summary>The plan on the device in one host-to-device copy: tokens, parents, depths, validity [B, T], the rows'
    /// cached lengths [B] and slots [B].</summary>
    private (Tensor Tokens, Tensor Parents, Tensor Depths, Tensor Valid, Tensor Lengths, Tensor Slots) Upload(StepPlan plan)
    {
        long b = plan.Batch, t = plan.Width;
        Tensor packed = tensor(plan.Packed).to(Device);
        return (packed.narrow(0, 0, b * t).view(b, t),
            packed.narrow(0, b * t, b * t).view(b, t),
            packed.narrow(0, 2 * b * t, b * t).view(b, t),
            packed.narrow(0, 3 * b * t, b * t).view(b, t).to(ScalarType.Bool),
            packed.narrow(0, 4 * b * t, b),
            packed.narrow(0, 4 * b * t + b, b));
    }

    /// <summary>
    /// Embedding, rotary tables at positions length + depth, the decoder layers (scripted or eager) and the final norm
    /// [B, T, hidden]; writes each valid entry's keys and values at position length + entry of its row's sequence (row b
    /// is slot <paramref name="slots"/>[b]), padding entries' in the scratch block. <paramref name="mask"/> [B, 1,
    /// groups × T, keys] (<see cref="AttentionMask"/>) over each row's positions 0 .. keys-1, or null for plain causal
    /// attention among the forward's own rows (every sequence starting at an empty cache).
    /// With <paramref name="cacheOnly"/> (prefill) the last layer stops once its keys and values are written, and the
    /// result is that layer's input (<see cref="LastRowLogits"/> continues the rows whose next token is wanted).
    /// </summary>
    internal Tensor DecoderStack(Tensor tokens, Tensor depths, Tensor valid, Tensor lengths, Tensor slots, Tensor? mask, long keys,
        bool cacheOnly = false)
    {
        ModelConfig c = Config;
        long b = tokens.shape[0], t = tokens.shape[1];
        using Scalar width = t; // held for the call (TorchScalars)
        Tensor entries = arange(width, int64, Device).view(1, t);
        Tensor writeRows = where(valid, _cache.Rows(slots, lengths.view(b, 1).Plus(entries)), full_like(tokens, _cache.ScratchRowScalar)).view(-1);
        Tensor? readRows = mask is null ? null : _cache.ReadRows(slots, keys);
        Tensor positions = lengths.view(b, 1).Plus(depths).view(-1);
        Tensor cos = _cos.index_select(0, positions).view(b, t, 1, c.HeadDim).to(DType);
        Tensor sin = _sin.index_select(0, positions).view(b, t, 1, c.HeadDim).to(DType);
        Tensor x = _weights.EmbedTokens.index_select(0, tokens.view(-1)).view(b, t, c.HiddenSize);
        return _scripted is not null
            ? _scripted.Forward(x, _cache.Data, writeRows, readRows, mask, cos, sin, cacheOnly: cacheOnly)
            : EagerLayers(x, writeRows, readRows, mask, cos, sin, cacheOnly);
    }

    /// <summary>The decoder layers and the final norm, one TorchSharp call per tensor operation (the reference for the
    /// scripted path, and the path for models the script does not cover). Each layer's temporaries are freed when the
    /// layer ends, so memory does not grow with the layer count. <paramref name="writeRows"/> [B × T]: the cache rows the
    /// entries' keys and values go to; <paramref name="readRows"/> [B, keys]: the rows attention reads (null with a null
    /// <paramref name="mask"/>: causal attention among the forward's own entries).</summary>
    internal Tensor EagerLayers(Tensor x, Tensor writeRows, Tensor? readRows, Tensor? mask, Tensor cos, Tensor sin, bool cacheOnly = false,
        int firstLayer = 0)
    {
        ModelConfig c = Config;
        int groups = c.HeadCount / c.KeyValueHeadCount;
        long b = x.shape[0], t = x.shape[1];
        Tensor input = x;
        for (int layer = firstLayer; layer < c.LayerCount; layer++)
        {
            using var layerScope = NewDisposeScope();
            DecoderLayerWeights w = _weights.Layers[layer];
            Tensor h = w.InputNorm.Forward(x);
            AttentionWeights a = w.Attention;
            Tensor q = a.QProj.Forward(h).view(b, t, c.HeadCount, c.HeadDim);
            Tensor k = a.KProj.Forward(h).view(b, t, c.KeyValueHeadCount, c.HeadDim);
            Tensor v = a.VProj.Forward(h).view(b, t, c.KeyValueHeadCount, c.HeadDim);
            if (a.QNorm is { } qNorm && a.KNorm is { } kNorm)
            {
                q = qNorm.Forward(q);
                k = kNorm.Forward(k);
            }
            q = RotaryFrequencies.Apply(q, cos, sin);
            k = RotaryFrequencies.Apply(k, cos, sin);
            _cache.Write(layer, writeRows, k.reshape(b * t, c.KeyValueHeadCount, c.HeadDim), v.reshape(b * t, c.KeyValueHeadCount, c.HeadDim));
            if (cacheOnly && layer == c.LayerCount - 1)
            {
                // prefill: the last layer's attention and MLP feed only the rows whose next token is wanted, which
                // LastRowLogits runs alone (every rank of a tensor-parallel model stops here)
                return x;
            }
            Tensor attended;
            if (mask is null)
            {
                // Causal within this forward: the fresh keys and values, repeated for the query heads of each group.
                Tensor keys = RepeatGroups(k, groups), values = RepeatGroups(v, groups);
                attended = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), keys, values, null, 0, true)
                    .transpose(1, 2).reshape(b, t, c.HeadCount * c.HeadDim);
            }
            else
            {
                (Tensor keys, Tensor values) = _cache.Read(layer, readRows!);
                // Grouped-query attention without copying keys: the query heads of one key/value head become rows.
                Tensor grouped = q.view(b, t, c.KeyValueHeadCount, groups, c.HeadDim).permute(0, 2, 3, 1, 4)
                    .reshape(b, c.KeyValueHeadCount, groups * t, c.HeadDim);
                attended = nn.functional.scaled_dot_product_attention(grouped, keys, values, mask)
                    .view(b, c.KeyValueHeadCount, groups, t, c.HeadDim).permute(0, 3, 1, 2, 4)
                    .reshape(b, t, c.HeadCount * c.HeadDim);
            }
            Tensor attention = a.OProj.Forward(attended);
            parts.Parallel?.AllReduce(attention); // tensor parallelism: o_proj is row-parallel, each rank holds a partial sum
            Tensor residual = x.Plus(attention);
            Tensor mlp = w.Mlp.Forward(w.PostAttentionNorm.Forward(residual));
            parts.Parallel?.AllReduce(mlp); // tensor parallelism: down_proj is row-parallel
            Tensor output = residual.Plus(mlp).MoveToOuterDisposeScope();
            if (!ReferenceEquals(x, input))
            {
                x.Dispose(); // the previous layer's output, made here
            }
            x = output;
        }
        return _weights.Norm.Forward(x);
    }

    /// <summary>[B, T, kv heads, D] → [B, heads, T, D], each key/value head repeated for its group of query heads
    /// (head h reads key/value head h / groups, as transformers' repeat_kv).</summary>
    private static Tensor RepeatGroups(Tensor x, int groups)
    {
        long b = x.shape[0], t = x.shape[1], kv = x.shape[2], d = x.shape[3];
        return x.transpose(1, 2).unsqueeze(2).expand(b, kv, groups, t, d).reshape(b, kv * groups, t, d);
    }

    /// <summary>
    /// ancestors[b, i, j]: entry j is entry i or one of its ancestors, by pointer jumping on the device: after round k
    /// each row holds the ancestors within distance 2^k, so ceil(log2(depth + 1)) rounds suffice.
    /// </summary>
    internal Tensor Ancestors(Tensor parents, int maxDepth)
    {
        long b = parents.shape[0], t = parents.shape[1];
        Tensor result = eye(t, dtype: ScalarType.Bool, device: Device).view(1, t, t).expand(b, t, t).contiguous();
        Tensor jump = parents;
        for (int reach = 1; reach <= maxDepth; reach *= 2)
        {
            result = result.logical_or(result.gather(1, jump.view(b, t, 1).expand(b, t, t)));
            jump = jump.gather(1, jump);
        }
        return result;
    }

    /// <summary>
    /// The additive attention mask [B, 1, groups × T, S] in the model's dtype: a valid row sees its sequence's cached
    /// prefix (key &lt; length) and the entries of this forward that <paramref name="visible"/> [B, T, W] marks for it (key
    /// = length + entry): in a verification step its own ancestors in the tree (W = T), in a draft forward its ancestors
    /// in the slot's draft region. A padding row sees key 0 only. Rows are laid out as the grouped queries are
    /// (group-major), so one mask serves every key/value head.
    /// </summary>
    internal Tensor AttentionMask(Tensor visible, Tensor lengths, Tensor valid, long keys, int groups)
    {
        long b = visible.shape[0], t = visible.shape[1], w = visible.shape[2];
        using Scalar keyCount = keys, windowSize = w, lastInWindow = w - 1; // held for the calls (TorchScalars)
        Tensor key = arange(keyCount, int64, Device).view(1, keys);
        Tensor relative = key - lengths.view(b, 1); // tensor − tensor passes no alpha (TorchScalars)
        Tensor prefix = relative.lt(TorchScalars.Zero);
        Tensor window = relative.ge(TorchScalars.Zero).logical_and(relative.lt(windowSize));
        Tensor inWindow = visible.gather(2, relative.clamp(TorchScalars.Zero, lastInWindow).view(b, 1, keys).expand(b, t, keys));
        Tensor allowed = prefix.view(b, 1, keys).logical_or(window.view(b, 1, keys).logical_and(inWindow));
        allowed = where(valid.view(b, t, 1), allowed, key.eq(TorchScalars.Zero).view(1, 1, keys));
        Tensor additive = zeros([b, t, keys], DType, Device).masked_fill(allowed.logical_not(), TorchScalars.NegativeInfinity);
        return groups == 1
            ? additive.view(b, 1, t, keys)
            : additive.view(b, 1, t, keys).expand(b, groups, t, keys).reshape(b, 1, groups * t, keys);
    }

    /// <summary>cos and sin [positions, head size] in float32, as transformers computes them before casting.</summary>
    internal static (Tensor Cos, Tensor Sin) RotaryTables(ModelConfig config, int positions, Device device)
    {
        using var scope = NewDisposeScope();
        Tensor inverse = tensor(RotaryFrequencies.Inverse(config).Select(f => (float)f).ToArray());
        using Scalar count = positions;
        Tensor frequencies = arange(count, float32).view(positions, 1) * inverse.view(1, -1);
        Tensor angles = cat([frequencies, frequencies], -1);
        return (angles.cos().to(device).MoveToOuterDisposeScope(), angles.sin().to(device).MoveToOuterDisposeScope());
    }
}
