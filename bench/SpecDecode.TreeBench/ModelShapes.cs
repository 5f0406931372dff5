using System.Text;
using SpecDecode.Tree;

namespace SpecDecode.TreeBench;

/// <summary>Configurations of public models, as their config.json gives them (weights are random in the benchmark).</summary>
internal static class ModelShapes
{
    /// <summary>meta-llama/Llama-3.1-8B's config.json (the fields the model reads).</summary>
    public const string Llama31_8B = """
        {
          "architectures": ["LlamaForCausalLM"], "model_type": "llama",
          "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
          "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
          "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
          "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "hidden_act": "silu", "tie_word_embeddings": false, "torch_dtype": "bfloat16",
          "bos_token_id": 128000, "eos_token_id": 128001
        }
        """;

    /// <summary>A configuration by name, or from a config.json file or checkpoint folder.</summary>
    public static ModelConfig Get(string name) => name switch
    {
        "llama-3.1-8b" => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes(Llama31_8B)), name),
        _ when File.Exists(name) || Directory.Exists(name) => ModelConfig.Load(name),
        _ => throw new ArgumentException($"unknown model shape '{name}': llama-3.1-8b, or a config.json path."),
    };
}
