using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>Which rows of a forward go through the output projection.</summary>
internal enum LogitRows
{
    /// <summary>None (prefill of all but the last prompt token).</summary>
    None,

    /// <summary>Every row [B, T, vocab] (verification).</summary>
    All,
}

/// <summary>A step's device tensors (all [B, T] unless noted).</summary>
internal sealed record StepTensors(Tensor Tokens, Tensor Parents, Tensor Depths, Tensor Valid, Tensor Lengths, Tensor Ancestors, Tensor? Logits);

public sealed partial class TargetModel
{
    /// <summary>
    /// One forward over a <see cref="StepPlan"/>: uploads the plan in one copy, builds positions, the ancestor matrix and
    /// the attention mask on the device, writes every row's keys and values into the cache (padding rows into scratch),
    /// and returns the step's tensors. Must run inside a dispose scope and no_grad.
    /// </summary>
    private StepTensors Forward(StepPlan plan, LogitRows rows)
    {
        ModelConfig c = Config;
        long b = plan.Batch, t = plan.Width, s = plan.KeyCount;
        int groups = c.HeadCount / c.KeyValueHeadCount;
        Tensor packed = tensor(plan.Packed).to(Device);
        Tensor tokens = packed.narrow(0, 0, b * t).view(b, t);
        Tensor parents = packed.narrow(0, b * t, b * t).view(b, t);
        Tensor depths = packed.narrow(0, 2 * b * t, b * t).view(b, t);
        Tensor valid = packed.narrow(0, 3 * b * t, b * t).view(b, t).to(ScalarType.Bool);
        Tensor lengths = packed.narrow(0, 4 * b * t, b);

        Tensor ancestors = Ancestors(parents, plan.MaxDepth);
        Tensor entries = arange(t, int64, Device).view(1, t);
        Tensor writeAt = where(valid, lengths.view(b, 1) + entries, full_like(parents, _cache.Scratch));
        Tensor mask = AttentionMask(ancestors, lengths, valid, s, groups);
        Tensor positions = (lengths.view(b, 1) + depths).view(-1);
        Tensor cos = _cos.index_select(0, positions).view(b, t, 1, c.HeadDim).to(DType);
        Tensor sin = _sin.index_select(0, positions).view(b, t, 1, c.HeadDim).to(DType);

        Tensor x = _weights.EmbedTokens.index_select(0, tokens.view(-1)).view(b, t, c.HiddenSize);
        x = _scripted is not null
            ? _scripted.Forward(x, _cache.Data, writeAt, mask, cos, sin, s)
            : EagerLayers(x, writeAt, mask, cos, sin, s, groups);
        Tensor? logits = rows == LogitRows.All ? nn.functional.linear(x, _weights.Head) : null;
        return new StepTensors(tokens, parents, depths, valid, lengths, ancestors, logits);
    }

    /// <summary>The decoder layers and the final norm, one TorchSharp call per tensor operation (the reference for the
    /// scripted path, and the path for models the script does not cover).</summary>
    private Tensor EagerLayers(Tensor x, Tensor writeAt, Tensor mask, Tensor cos, Tensor sin, long s, int groups)
    {
        ModelConfig c = Config;
        long b = x.shape[0], t = x.shape[1];
        for (int layer = 0; layer < c.LayerCount; layer++)
        {
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
            _cache.Write(layer, writeAt, k.transpose(1, 2), v.transpose(1, 2));
            (Tensor keys, Tensor values) = _cache.Read(layer, b, s);
            // Grouped-query attention without copying keys: the query heads of one key/value head become rows.
            Tensor grouped = q.view(b, t, c.KeyValueHeadCount, groups, c.HeadDim).permute(0, 2, 3, 1, 4)
                .reshape(b, c.KeyValueHeadCount, groups * t, c.HeadDim);
            Tensor attended = nn.functional.scaled_dot_product_attention(grouped, keys, values, mask)
                .view(b, c.KeyValueHeadCount, groups, t, c.HeadDim).permute(0, 3, 1, 2, 4)
                .reshape(b, t, c.HeadCount * c.HeadDim);
            x = x + a.OProj.Forward(attended);
            x = x + w.Mlp.Forward(w.PostAttentionNorm.Forward(x));
        }
        return _weights.Norm.Forward(x);
    }

    /// <summary>
    /// ancestors[b, i, j]: entry j is entry i or one of its ancestors, by pointer jumping on the device: after round k
    /// each row holds the ancestors within distance 2^k, so ceil(log2(depth + 1)) rounds suffice.
    /// </summary>
    private Tensor Ancestors(Tensor parents, int maxDepth)
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
    private Tensor AttentionMask(Tensor visible, Tensor lengths, Tensor valid, long keys, int groups)
    {
        long b = visible.shape[0], t = visible.shape[1], w = visible.shape[2];
        Tensor key = arange(keys, int64, Device).view(1, keys);
        Tensor relative = key - lengths.view(b, 1);
        Tensor prefix = relative.lt(0);
        Tensor window = relative.ge(0).logical_and(relative.lt(w));
        Tensor inWindow = visible.gather(2, relative.clamp(0, w - 1).view(b, 1, keys).expand(b, t, keys));
        Tensor allowed = prefix.view(b, 1, keys).logical_or(window.view(b, 1, keys).logical_and(inWindow));
        allowed = where(valid.view(b, t, 1), allowed, key.eq(0).view(1, 1, keys));
        Tensor additive = zeros([b, t, keys], DType, Device).masked_fill(allowed.logical_not(), double.NegativeInfinity);
        return groups == 1
            ? additive.view(b, 1, t, keys)
            : additive.view(b, 1, t, keys).expand(b, groups, t, keys).reshape(b, 1, groups * t, keys);
    }

    /// <summary>cos and sin [positions, head size] in float32, as transformers computes them before casting.</summary>
    private static (Tensor Cos, Tensor Sin) RotaryTables(ModelConfig config, int positions, Device device)
    {
        using var scope = NewDisposeScope();
        Tensor inverse = tensor(RotaryFrequencies.Inverse(config).Select(f => (float)f).ToArray());
        Tensor frequencies = arange(positions, float32).view(positions, 1) * inverse.view(1, -1);
        Tensor angles = cat([frequencies, frequencies], -1);
        return (angles.cos().to(device).MoveToOuterDisposeScope(), angles.sin().to(device).MoveToOuterDisposeScope());
    }
}
