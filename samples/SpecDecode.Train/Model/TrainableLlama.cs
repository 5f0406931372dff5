using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpecDecode.Train.Model;

/// <summary>
/// A Llama decoder for training, as transformers' <c>LlamaForCausalLM</c> computes it: token embeddings, per layer
/// RMSNorm → grouped-query attention with rotary positions → residual, RMSNorm → SwiGLU → residual, a final RMSNorm
/// and the tied embedding matrix as the output head. Parameters are registered under Hugging Face's names
/// (<c>model.layers.0.self_attn.q_proj.weight</c>, ...), so <see cref="nn.Module.named_parameters"/> is already the
/// checkpoint's key set.
/// </summary>
/// <remarks>
/// Master weights stay float32; the forward casts them to <c>computeType</c> (bfloat16 on a GPU: tensor-core matrix
/// products and flash attention) and keeps norms and the loss in float32: mixed precision by hand, because TorchSharp
/// has no autocast.
/// </remarks>
public sealed class TrainableLlama : nn.Module<Tensor, Tensor>
{
    private readonly ModelShape _shape;
    private readonly ScalarType _compute;
    private readonly Parameter _embed;
    private readonly Parameter _finalNorm;
    private readonly DecoderLayer[] _layers;
    private readonly Tensor _inverseFrequencies;

    /// <summary>Creates the model with GPT-2-style initialisation (normal 0.02; residual output projections scaled by
    /// 1/√(2·layers)), seeded by <paramref name="seed"/>, on <paramref name="device"/>.</summary>
    public TrainableLlama(ModelShape shape, ScalarType computeType, Device device, long seed) : base("LlamaForCausalLM")
    {
        shape.Validate();
        _shape = shape;
        _compute = computeType;
        using var generator = new Generator((ulong)seed, CPU);
        double residualStd = 0.02 / Math.Sqrt(2.0 * shape.LayerCount);
        // Every tensor is made on the device directly: Module.to would replace registered tensors and leave these
        // fields pointing at disposed ones (the names are Hugging Face's, not the fields').
        _embed = OnDevice(normal(0, 0.02, [shape.VocabSize, shape.HiddenSize], generator: generator), device);
        register_parameter("model.embed_tokens.weight", _embed);
        _layers = new DecoderLayer[shape.LayerCount];
        for (int i = 0; i < shape.LayerCount; i++)
        {
            _layers[i] = new DecoderLayer(shape, generator, residualStd, device);
            foreach ((string name, Parameter p) in _layers[i].Named())
            {
                register_parameter($"model.layers.{i}.{name}", p);
            }
        }
        _finalNorm = OnDevice(ones(shape.HiddenSize), device);
        register_parameter("model.norm.weight", _finalNorm);
        var inv = new float[shape.HeadDim / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            inv[i] = (float)(1.0 / Math.Pow(shape.RopeTheta, 2.0 * i / shape.HeadDim));
        }
        _inverseFrequencies = tensor(inv, device: device);
    }

    private static Parameter OnDevice(Tensor cpu, Device device)
    {
        using (cpu)
        {
            return new Parameter(cpu.to(device));
        }
    }

    /// <summary>The model's shape.</summary>
    public ModelShape Shape => _shape;

    /// <summary>Logits [batch, tokens, vocab] in float32 for token ids [batch, tokens] (causal attention, positions from 0).</summary>
    public override Tensor forward(Tensor ids)
    {
        long batch = ids.shape[0], tokens = ids.shape[1];
        Device device = ids.device;
        using var positions = arange(tokens, dtype: ScalarType.Float32, device: device);
        using var freqs = positions.unsqueeze(1) * _inverseFrequencies.unsqueeze(0);
        using var angles = cat([freqs, freqs], -1);
        using var cos = angles.cos().to(_compute);
        using var sin = angles.sin().to(_compute);
        using Tensor embed = _embed.to(_compute);
        Tensor x = embed.index_select(0, ids.flatten()).view(batch, tokens, _shape.HiddenSize);
        foreach (DecoderLayer layer in _layers)
        {
            Tensor next = layer.Forward(x, cos, sin, _compute);
            x.Dispose();
            x = next;
        }
        using Tensor normed = RmsNorm(x, _finalNorm, _shape.RmsNormEps, _compute);
        x.Dispose();
        using Tensor logits = normed.matmul(embed.t());
        return logits.to(ScalarType.Float32);
    }

    /// <summary>Mean next-token cross-entropy of windows [batch, tokens + 1]: predicts tokens 1.. from tokens ..^1.</summary>
    public Tensor Loss(Tensor windows)
    {
        long tokens = windows.shape[1] - 1;
        using Tensor inputs = windows.narrow(1, 0, tokens);
        using Tensor targets = windows.narrow(1, 1, tokens).flatten();
        using Tensor logits = forward(inputs);
        return nn.functional.cross_entropy(logits.view(-1, _shape.VocabSize), targets);
    }

    internal static Tensor RmsNorm(Tensor x, Tensor weight, double eps, ScalarType compute)
    {
        using Tensor x32 = x.to(ScalarType.Float32);
        using Tensor variance = x32.pow(2).mean([-1L], keepdim: true);
        using Tensor normed = x32 * (variance + eps).rsqrt();
        using Tensor scaled = normed.to(compute);
        using Tensor w = weight.to(compute);
        return scaled * w;
    }

    /// <summary>x·cos + rotate_half(x)·sin over the last dimension (transformers' convention: halves, not pairs).</summary>
    internal static Tensor Rotate(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        using Tensor first = x.narrow(-1, 0, half);
        using Tensor second = x.narrow(-1, half, half);
        using Tensor negated = second.neg();
        using Tensor rotated = cat([negated, first], -1);
        using Tensor a = x * cos;
        using Tensor b = rotated * sin;
        return a + b;
    }

    /// <summary>One decoder layer's parameters and forward.</summary>
    private sealed class DecoderLayer
    {
        private readonly ModelShape _s;
        private readonly Parameter _inputNorm, _postNorm, _q, _k, _v, _o, _gate, _up, _down;

        public DecoderLayer(ModelShape s, Generator generator, double residualStd, Device device)
        {
            _s = s;
            int kv = s.KeyValueHeadCount * s.HeadDim;
            Parameter Normal(long rows, long cols, double std) => OnDevice(normal(0, std, [rows, cols], generator: generator), device);
            _inputNorm = OnDevice(ones(s.HiddenSize), device);
            _postNorm = OnDevice(ones(s.HiddenSize), device);
            _q = Normal(s.HiddenSize, s.HiddenSize, 0.02);
            _k = Normal(kv, s.HiddenSize, 0.02);
            _v = Normal(kv, s.HiddenSize, 0.02);
            _o = Normal(s.HiddenSize, s.HiddenSize, residualStd);
            _gate = Normal(s.IntermediateSize, s.HiddenSize, 0.02);
            _up = Normal(s.IntermediateSize, s.HiddenSize, 0.02);
            _down = Normal(s.HiddenSize, s.IntermediateSize, residualStd);
        }

        public IEnumerable<(string, Parameter)> Named() =>
        [
            ("input_layernorm.weight", _inputNorm),
            ("self_attn.q_proj.weight", _q),
            ("self_attn.k_proj.weight", _k),
            ("self_attn.v_proj.weight", _v),
            ("self_attn.o_proj.weight", _o),
            ("post_attention_layernorm.weight", _postNorm),
            ("mlp.gate_proj.weight", _gate),
            ("mlp.up_proj.weight", _up),
            ("mlp.down_proj.weight", _down),
        ];

        public Tensor Forward(Tensor x, Tensor cos, Tensor sin, ScalarType compute)
        {
            using var scope = NewDisposeScope();
            long batch = x.shape[0], tokens = x.shape[1];
            int groups = _s.HeadCount / _s.KeyValueHeadCount;
            Tensor h = RmsNorm(x, _inputNorm, _s.RmsNormEps, compute);
            Tensor q = Linear(h, _q, compute).view(batch, tokens, _s.HeadCount, _s.HeadDim).transpose(1, 2);
            Tensor k = Linear(h, _k, compute).view(batch, tokens, _s.KeyValueHeadCount, _s.HeadDim).transpose(1, 2);
            Tensor v = Linear(h, _v, compute).view(batch, tokens, _s.KeyValueHeadCount, _s.HeadDim).transpose(1, 2);
            q = Rotate(q, cos, sin);
            k = Rotate(k, cos, sin);
            if (groups > 1)
            {
                k = k.repeat_interleave(groups, 1);
                v = v.repeat_interleave(groups, 1);
            }
            Tensor attention = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: true)
                .transpose(1, 2).reshape(batch, tokens, _s.HiddenSize);
            Tensor mid = x + Linear(attention, _o, compute);
            h = RmsNorm(mid, _postNorm, _s.RmsNormEps, compute);
            Tensor mlp = nn.functional.silu(Linear(h, _gate, compute)) * Linear(h, _up, compute);
            return (mid + Linear(mlp, _down, compute)).MoveToOuterDisposeScope();
        }

        private static Tensor Linear(Tensor x, Parameter weight, ScalarType compute) => nn.functional.linear(x, weight.to(compute));
    }
}
