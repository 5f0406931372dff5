using System.Text;

namespace SpecDecode.Tree.Tests;

/// <summary>Full-size models built on the meta device (no memory): every parameter's Hugging Face name and shape.</summary>
public sealed class ModelShapeTests
{
    private static ModelConfig Parse(string json) => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes(json)), "config.json");

    /// <summary>The tensors of a Llama-family checkpoint as transformers names them, written out from its modelling code.</summary>
    private static Dictionary<string, long[]> HuggingFaceTensors(int layers, long hidden, long intermediate, long heads, long kvHeads,
        long headDim, long vocab, bool qkvBias, bool tied, bool qkNorm)
    {
        var expected = new Dictionary<string, long[]> { ["model.embed_tokens.weight"] = [vocab, hidden], ["model.norm.weight"] = [hidden] };
        if (!tied)
        {
            expected["lm_head.weight"] = [vocab, hidden];
        }
        for (int i = 0; i < layers; i++)
        {
            string p = $"model.layers.{i}.";
            expected[p + "input_layernorm.weight"] = [hidden];
            expected[p + "post_attention_layernorm.weight"] = [hidden];
            expected[p + "self_attn.q_proj.weight"] = [heads * headDim, hidden];
            expected[p + "self_attn.k_proj.weight"] = [kvHeads * headDim, hidden];
            expected[p + "self_attn.v_proj.weight"] = [kvHeads * headDim, hidden];
            expected[p + "self_attn.o_proj.weight"] = [hidden, heads * headDim];
            expected[p + "mlp.gate_proj.weight"] = [intermediate, hidden];
            expected[p + "mlp.up_proj.weight"] = [intermediate, hidden];
            expected[p + "mlp.down_proj.weight"] = [hidden, intermediate];
            if (qkvBias)
            {
                expected[p + "self_attn.q_proj.bias"] = [heads * headDim];
                expected[p + "self_attn.k_proj.bias"] = [kvHeads * headDim];
                expected[p + "self_attn.v_proj.bias"] = [kvHeads * headDim];
            }
            if (qkNorm)
            {
                expected[p + "self_attn.q_norm.weight"] = [headDim];
                expected[p + "self_attn.k_norm.weight"] = [headDim];
            }
        }
        return expected;
    }

    private static void AssertSameTensors(Dictionary<string, long[]> expected, IReadOnlyList<(string Name, long[] Shape)> ours)
    {
        Assert.Equal(ours.Count, ours.Select(p => p.Name).Distinct().Count());
        Assert.Equal(expected.Keys.Order(), ours.Select(p => p.Name).Order());
        foreach ((string name, long[] shape) in ours)
        {
            Assert.True(expected[name].SequenceEqual(shape), $"{name}: ours [{string.Join(", ", shape)}], Hugging Face [{string.Join(", ", expected[name])}]");
        }
    }

    [Fact]
    public void Llama31_8BHasTheHuggingFaceTensors()
    {
        ModelConfig config = Parse("""
            {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-05,
             "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
             "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
            """);
        var ours = TargetModel.ParameterShapes(config);
        AssertSameTensors(HuggingFaceTensors(32, 4096, 14336, 32, 8, 128, 128256, qkvBias: false, tied: false, qkNorm: false), ours);
        Assert.Equal(291, ours.Count);
        Assert.Equal(8_030_261_248L, ours.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b))); // the 8.03B parameters of the model card
    }

    [Fact]
    public void Qwen25_7BHasTheHuggingFaceTensors()
    {
        ModelConfig config = Parse("""
            {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "rms_norm_eps": 1e-06,
             "rope_theta": 1000000.0, "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
             "use_sliding_window": false, "hidden_act": "silu"}
            """);
        var ours = TargetModel.ParameterShapes(config);
        AssertSameTensors(HuggingFaceTensors(28, 3584, 18944, 28, 4, 128, 152064, qkvBias: true, tied: false, qkNorm: false), ours);
        Assert.Equal(7_615_616_512L, ours.Sum(p => p.Shape.Aggregate(1L, (a, b) => a * b))); // Qwen2.5-7B's 7.61B
    }

    [Fact]
    public void Qwen3HasPerHeadNormsAndExplicitHeadSize()
    {
        // Qwen3-0.6B: head_dim 128 while hidden / heads = 64.
        ModelConfig config = Parse("""
            {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
             "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "rms_norm_eps": 1e-06,
             "rope_theta": 1000000, "tie_word_embeddings": true, "attention_bias": false}
            """);
        var ours = TargetModel.ParameterShapes(config);
        AssertSameTensors(HuggingFaceTensors(28, 1024, 3072, 16, 8, 128, 151936, qkvBias: false, tied: true, qkNorm: true), ours);
    }
}
