using System.Runtime.InteropServices;
using System.Text;
using SpecDecode.Train.Checkpoint;

namespace SpecDecode.Tree.Tests.Parallel;

/// <summary>Model shapes for the tensor-parallel tests: the tiny transformers fixtures, the 8B and 70B shapes, and small
/// shapes the fixtures lack (every bias, Qwen3's q/k norms, a vocabulary the world size does not divide).</summary>
internal static class ParallelFixtures
{
    /// <summary>A Llama model with q/k/v, o and MLP biases, 8 query and 4 key/value heads, and 1001 vocabulary entries
    /// (uneven over 2 and 4 ranks).</summary>
    public const string BiasedLlama = """
        {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 8, "vocab_size": 1001, "rms_norm_eps": 1e-5,
         "attention_bias": true, "mlp_bias": true, "max_position_embeddings": 256, "tie_word_embeddings": false}
        """;

    /// <summary>A Qwen3 model (per-head q/k RMSNorm, explicit head size, tied head).</summary>
    public const string Qwen3 = """
        {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12, "vocab_size": 50, "rms_norm_eps": 1e-6,
         "tie_word_embeddings": true}
        """;

    public static ModelConfig Parse(string json) => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes(json)), "test config");

    public static ModelConfig Llama8B => ModelConfig.Load(SharedFixtures.Path("configs", "llama-3.1-8b.config.json"));

    public static ModelConfig Llama70B => ModelConfig.Load(Path.Combine(SharedFixtures.RepoRoot, "bench", "configs", "llama-3.1-70b.config.json"));

    /// <summary>Every shape the plan tests split, by name.</summary>
    public static IReadOnlyList<(string Name, ModelConfig Config)> Configs =>
    [
        ("llama-gqa", ModelConfig.Load(SharedFixtures.TinyCheckpoint("llama-gqa"))),
        ("qwen2-tied", ModelConfig.Load(SharedFixtures.TinyCheckpoint("qwen2-tied"))),
        ("biased-1001", Parse(BiasedLlama)),
        ("qwen3", Parse(Qwen3)),
        ("llama-3.1-8b", Llama8B),
        ("llama-3.1-70b", Llama70B),
    ];

    /// <summary>
    /// Writes a checkpoint folder of <paramref name="configJson"/> with random weights (normal, std 0.2; norms near 1) in
    /// <paramref name="dtype"/>, split over several safetensors files with an index when the tensors pass
    /// <paramref name="maxShardBytes"/> (transformers' sharded layout).
    /// </summary>
    public static void WriteRandomCheckpoint(string folder, string configJson, int seed, SafeTensorsDType dtype = SafeTensorsDType.Float32,
        long maxShardBytes = long.MaxValue)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), configJson);
        ModelConfig config = ModelConfig.Load(folder);
        var rng = new Random(seed);
        var tensors = new List<TensorData>();
        foreach ((string name, long[] shape) in TargetModel.ParameterShapes(config))
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var values = new float[count];
            for (long i = 0; i < count; i++)
            {
                double normal = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                values[i] = (float)(name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1 + 0.1 * normal : 0.2 * normal);
            }
            byte[] data = dtype switch
            {
                SafeTensorsDType.Float32 => MemoryMarshal.AsBytes(values.AsSpan()).ToArray(),
                SafeTensorsDType.Float16 => MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray(),
                _ => MemoryMarshal.AsBytes(values.Select(BFloat16Bits).ToArray().AsSpan()).ToArray(),
            };
            tensors.Add(new TensorData(name, dtype, shape, data));
        }
        SafeTensorsWriter.Write(folder, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>float32 to bfloat16 bits, rounding to nearest even.</summary>
    private static ushort BFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
}
