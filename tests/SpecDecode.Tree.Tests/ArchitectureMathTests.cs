using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The architecture features the tiny transformers fixtures do not cover: Llama 3.1's RoPE scaling and Qwen3's per-head
/// q/k RMSNorm with an explicit head size. The frequencies are checked against values from an independent
/// re-implementation of transformers' <c>_compute_llama3_parameters</c>; the forwards of the serving model and the eager
/// reference are checked against each other on random checkpoints written here.
/// </summary>
public sealed class ArchitectureMathTests
{
    [Fact]
    public void Llama31RopeFrequenciesMatchTransformersFormula()
    {
        ModelConfig config = ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes("""
            {"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 1,
             "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 16, "rope_theta": 500000.0,
             "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}}
            """)), "config.json");
        double[] ours = RotaryFrequencies.Inverse(config);
        Assert.Equal(64, ours.Length);
        // From a separate Python implementation of transformers' formula (base 500000, head size 128, factor 8, low 1,
        // high 4, original context 8192): index 0-20 high frequency, kept; 30 in the smoothed band; 40+ divided by 8.
        (int Index, double Value)[] expected =
        [
            (0, 1.0), (1, 0.8146172338565447), (20, 0.016560440080994446), (30, 0.0013718935677611381),
            (40, 3.428102195952591e-05), (45, 1.2297638677963614e-05), (50, 4.411534674558404e-06), (63, 3.068925988914511e-07),
        ];
        foreach ((int index, double value) in expected)
        {
            Assert.True(Math.Abs(ours[index] - value) <= 1e-12 * value, $"inverse frequency {index}: ours {ours[index]:R}, expected {value:R}");
        }
    }

    [Theory]
    [InlineData("Qwen3ForCausalLM", """ "head_dim": 12, "tie_word_embeddings": true """)]
    [InlineData("LlamaForCausalLM", """ "rope_theta": 500000.0, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16, "rope_type": "llama3"} """)]
    public void ServingForwardMatchesTheEagerReference(string architecture, string extra)
    {
        using var dir = new TestFiles.TempDir();
        string config = $$"""
            {"architectures": ["{{architecture}}"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "rms_norm_eps": 1e-6, {{extra}} }
            """;
        File.WriteAllText(dir.File("config.json"), config);
        ModelConfig parsed = ModelConfig.Load(dir.Path);
        WriteRandomCheckpoint(dir.File("model.safetensors"), TargetModel.ParameterShapes(parsed), seed: 5);

        int[] prompt = Enumerable.Range(0, 40).Select(i => (i * 17 + 3) % 50).ToArray();
        using EagerCausalLM eager = EagerCausalLM.Load(dir.Path);
        using Tensor reference = eager.Forward(prompt.Select(i => (long)i).ToArray());
        using TargetModel model = TargetModel.Load(dir.Path, new TargetModelOptions { Device = CPU, MaxContext = 64, PrefillChunk = 8 });
        model.Prefill([(0, prompt[..20])]);
        using Tensor ours = model.TreeLogits([new TreeInput(0, prompt[20], DraftTree.Chain(prompt[21..]))]);
        SharedFixtures.AssertClose(
            reference.narrow(0, 20, 20).contiguous().data<float>().ToArray(),
            ours[0].contiguous().data<float>().ToArray(),
            architecture + " serving vs eager");
        if (architecture == "Qwen3ForCausalLM")
        {
            Assert.True(parsed.QkNorm);
            Assert.Equal(12, parsed.HeadDim);
        }
        else
        {
            Assert.Equal(RopeType.Llama3, parsed.Rope);
        }
    }

    /// <summary>A float32 safetensors file with normal(0, 0.2) weights and norms near 1.</summary>
    private static void WriteRandomCheckpoint(string path, IReadOnlyList<(string Name, long[] Shape)> tensors, int seed)
    {
        var rng = new Random(seed);
        var header = new Dictionary<string, object>();
        var data = new List<float>();
        foreach ((string name, long[] shape) in tensors)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            header[name] = new { dtype = "F32", shape, data_offsets = new[] { data.Count * 4L, (data.Count + count) * 4L } };
            for (long i = 0; i < count; i++)
            {
                double normal = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                data.Add((float)(name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1 + 0.1 * normal : 0.2 * normal));
            }
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        using var file = File.Create(path);
        file.Write(BitConverter.GetBytes((long)json.Length));
        file.Write(json);
        file.Write(MemoryMarshal.AsBytes(data.ToArray().AsSpan()));
    }
}
