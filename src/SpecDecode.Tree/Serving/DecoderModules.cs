using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

// The serving model's module tree. Every module registers its children and parameters under the Hugging Face names
// (model.layers.3.self_attn.q_proj.weight, ...), so that named_parameters() lines up one to one with a checkpoint's
// tensor names and loading is a name lookup. Parameters are created empty on the chosen device and dtype (the meta
// device for shape checks) and filled from the checkpoint; nothing is ever initialised twice.

/// <summary>A linear projection y = x Wᵀ + b, stored as Hugging Face stores it ([out, in]).</summary>
internal sealed class LinearWeights : nn.Module
{
    public LinearWeights(string name, long inFeatures, long outFeatures, bool bias, ScalarType dtype, Device device)
        : base(name)
    {
        Weight = new Parameter(empty([outFeatures, inFeatures], dtype, device), requires_grad: false);
        register_parameter("weight", Weight);
        if (bias)
        {
            Bias = new Parameter(empty([outFeatures], dtype, device), requires_grad: false);
            register_parameter("bias", Bias);
        }
    }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public Tensor Forward(Tensor x) => nn.functional.linear(x, Weight, Bias);
}

/// <summary>RMSNorm as transformers computes it: normalise in float32, cast back, then scale.</summary>
internal sealed class RmsNormWeights : nn.Module
{
    private readonly Scalar _eps; // held as long as the module (TorchScalars)

    public RmsNormWeights(string name, long size, double eps, ScalarType dtype, Device device)
        : base(name)
    {
        _eps = eps;
        Weight = new Parameter(empty([size], dtype, device), requires_grad: false);
        register_parameter("weight", Weight);
    }

    public Parameter Weight { get; }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor h = x.to(float32);
        h = h * h.pow(TorchScalars.Two).mean([-1L], keepdim: true).add(_eps, TorchScalars.One).rsqrt();
        return (Weight * h.to(x.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>self_attn: q/k/v/o projections and, for Qwen3, per-head q/k norms.</summary>
internal sealed class AttentionWeights : nn.Module
{
    public AttentionWeights(ModelConfig c, ScalarType dtype, Device device)
        : base("self_attn")
    {
        long q = (long)c.HeadCount * c.HeadDim, kv = (long)c.KeyValueHeadCount * c.HeadDim;
        QProj = Add(new LinearWeights("q_proj", c.HiddenSize, q, c.QkvBias, dtype, device));
        KProj = Add(new LinearWeights("k_proj", c.HiddenSize, kv, c.QkvBias, dtype, device));
        VProj = Add(new LinearWeights("v_proj", c.HiddenSize, kv, c.QkvBias, dtype, device));
        OProj = Add(new LinearWeights("o_proj", q, c.HiddenSize, c.OutputBias, dtype, device));
        if (c.QkNorm)
        {
            QNorm = Add(new RmsNormWeights("q_norm", c.HeadDim, c.RmsNormEps, dtype, device));
            KNorm = Add(new RmsNormWeights("k_norm", c.HeadDim, c.RmsNormEps, dtype, device));
        }
    }

    public LinearWeights QProj { get; }

    public LinearWeights KProj { get; }

    public LinearWeights VProj { get; }

    public LinearWeights OProj { get; }

    public RmsNormWeights? QNorm { get; }

    public RmsNormWeights? KNorm { get; }

    private T Add<T>(T module) where T : nn.Module
    {
        register_module(module.GetName(), module);
        return module;
    }
}

/// <summary>mlp: down(silu(gate(x)) * up(x)).</summary>
internal sealed class MlpWeights : nn.Module
{
    public MlpWeights(ModelConfig c, ScalarType dtype, Device device)
        : base("mlp")
    {
        GateProj = new LinearWeights("gate_proj", c.HiddenSize, c.IntermediateSize, c.MlpBias, dtype, device);
        UpProj = new LinearWeights("up_proj", c.HiddenSize, c.IntermediateSize, c.MlpBias, dtype, device);
        DownProj = new LinearWeights("down_proj", c.IntermediateSize, c.HiddenSize, c.MlpBias, dtype, device);
        register_module("gate_proj", GateProj);
        register_module("up_proj", UpProj);
        register_module("down_proj", DownProj);
    }

    public LinearWeights GateProj { get; }

    public LinearWeights UpProj { get; }

    public LinearWeights DownProj { get; }

    public Tensor Forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return DownProj.Forward(nn.functional.silu(GateProj.Forward(x)) * UpProj.Forward(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>One decoder layer (model.layers.N).</summary>
internal sealed class DecoderLayerWeights : nn.Module
{
    public DecoderLayerWeights(int index, ModelConfig c, ScalarType dtype, Device device)
        : base(index.ToString(System.Globalization.CultureInfo.InvariantCulture))
    {
        InputNorm = new RmsNormWeights("input_layernorm", c.HiddenSize, c.RmsNormEps, dtype, device);
        Attention = new AttentionWeights(c, dtype, device);
        PostAttentionNorm = new RmsNormWeights("post_attention_layernorm", c.HiddenSize, c.RmsNormEps, dtype, device);
        Mlp = new MlpWeights(c, dtype, device);
        register_module("input_layernorm", InputNorm);
        register_module("self_attn", Attention);
        register_module("post_attention_layernorm", PostAttentionNorm);
        register_module("mlp", Mlp);
    }

    public RmsNormWeights InputNorm { get; }

    public AttentionWeights Attention { get; }

    public RmsNormWeights PostAttentionNorm { get; }

    public MlpWeights Mlp { get; }
}

/// <summary>The whole causal LM: model.embed_tokens, model.layers, model.norm and (untied) lm_head.</summary>
internal sealed class CausalLMWeights : nn.Module
{
    public CausalLMWeights(ModelConfig c, ScalarType dtype, Device device)
        : base("CausalLM")
    {
        var model = new ModelBody();
        EmbedTokens = new Parameter(empty([c.VocabSize, c.HiddenSize], dtype, device), requires_grad: false);
        Layers = Enumerable.Range(0, c.LayerCount).Select(i => new DecoderLayerWeights(i, c, dtype, device)).ToArray();
        Norm = new RmsNormWeights("norm", c.HiddenSize, c.RmsNormEps, dtype, device);
        var embed = new ParameterHolder("embed_tokens", EmbedTokens);
        model.Add("embed_tokens", embed);
        model.Add("layers", new ModuleList<DecoderLayerWeights>(Layers.ToArray()));
        model.Add("norm", Norm);
        register_module("model", model);
        if (!c.TieWordEmbeddings)
        {
            LmHead = new Parameter(empty([c.VocabSize, c.HiddenSize], dtype, device), requires_grad: false);
            register_module("lm_head", new ParameterHolder("lm_head", LmHead));
        }
    }

    public Parameter EmbedTokens { get; }

    public IReadOnlyList<DecoderLayerWeights> Layers { get; }

    public RmsNormWeights Norm { get; }

    /// <summary>The output projection; null when tied to <see cref="EmbedTokens"/>.</summary>
    public Parameter? LmHead { get; }

    /// <summary>The output projection's weight (the embedding table when tied).</summary>
    public Tensor Head => LmHead ?? EmbedTokens;

    private sealed class ModelBody : nn.Module
    {
        public ModelBody() : base("model") { }

        public void Add(string name, nn.Module module) => register_module(name, module);
    }

    private sealed class ParameterHolder : nn.Module
    {
        public ParameterHolder(string name, Parameter weight) : base(name) => register_parameter("weight", weight);
    }
}
