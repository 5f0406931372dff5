using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using SpecDecode.Train.Checkpoint;
using SpecDecode.Train.Tokenizer;
using SpecDecode.Tree;

namespace SpecDecode.Fuzz;

/// <summary>
/// The valid files the fuzzer corrupts, written fresh for every run: a tiny Llama checkpoint (config.json with llama3
/// RoPE scaling, generation_config.json, one model.safetensors with float32, bfloat16 and float16 tensors, and a
/// byte-level BPE tokenizer.json of 300 tokens trained here), and a trace file of three trajectories. Small, so that a
/// case costs milliseconds, and covering every field the parsers read.
/// </summary>
internal static class SeedFiles
{
    public const string TraceFile = "trace.jsonl.gz";

    private static readonly string[] Texts =
    [
        "THOUGHT: I need to look at the failing test first to see what it expects.",
        "```bash\ncat tests/test_utils.py | head -50\n```",
        "def parse_config(path):\n    with open(path) as f:\n        return json.load(f)",
        "Traceback (most recent call last):\n  File \"src/app.py\", line 42, in main",
        "grep -rn \"def validate\" src/ | head -20",
        "The error comes from the validator, which does not accept empty lists.",
        "FAILED tests/test_validator.py::test_empty_list - AssertionError",
        "class Validator:\n    def __init__(self, schema):\n        self.schema = schema",
    ];

    /// <summary>Writes the checkpoint into <paramref name="folder"/> and the trace beside it.</summary>
    public static void Write(string folder)
    {
        Directory.CreateDirectory(folder);
        IReadOnlyList<string> specials = BpeTrainerSettings.DefaultSpecialTokens;
        BpeVocabulary vocabulary = BpeTrainer.Train(Enumerable.Repeat(Texts, 4).SelectMany(t => t), new BpeTrainerSettings(300, specials, MinPairCount: 1));
        TokenizerJsonWriter.Write(folder, vocabulary, TokenizerFilesSettings.Default);
        int bos = vocabulary.SpecialTokenId(specials[0]), eos = vocabulary.SpecialTokenId("<|im_end|>"), end = vocabulary.SpecialTokenId(specials[1]);

        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_size"] = 16,
            ["intermediate_size"] = 32,
            ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = 2,
            ["num_key_value_heads"] = 1,
            ["head_dim"] = 8,
            ["vocab_size"] = vocabulary.Count,
            ["max_position_embeddings"] = 128,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["rope_scaling"] = new JsonObject
            {
                ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0,
                ["original_max_position_embeddings"] = 64,
            },
            ["tie_word_embeddings"] = false,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["hidden_act"] = "silu",
            ["torch_dtype"] = "bfloat16",
            ["bos_token_id"] = bos,
            ["eos_token_id"] = new JsonArray(eos, end),
        };
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        var generation = new JsonObject { ["bos_token_id"] = bos, ["eos_token_id"] = new JsonArray(eos, end), ["do_sample"] = false };
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), generation.ToJsonString());

        var random = new Random(7);
        SafeTensorsDType[] dtypes = [SafeTensorsDType.Float32, SafeTensorsDType.BFloat16, SafeTensorsDType.Float16];
        var tensors = TargetModel.ParameterShapes(ModelConfig.Load(folder))
            .Select((p, i) => Tensor(p.Name, p.Shape, dtypes[i % dtypes.Length], random))
            .ToList();
        SafeTensorsWriter.Write(folder, tensors, long.MaxValue, new Dictionary<string, string> { ["format"] = "pt" });

        WriteTrace(Path.Combine(folder, TraceFile));
    }

    private static TensorData Tensor(string name, long[] shape, SafeTensorsDType dtype, Random random)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        int size = SafeTensorsWriter.ElementSize(dtype);
        var bytes = new byte[count * size];
        for (int i = 0; i < count; i++)
        {
            float value = name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1f : (float)(0.02 * (random.NextDouble() * 2 - 1));
            switch (dtype)
            {
                case SafeTensorsDType.Float32:
                    BitConverter.TryWriteBytes(bytes.AsSpan(i * 4), value);
                    break;
                case SafeTensorsDType.BFloat16:
                    BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16));
                    break;
                default:
                    BitConverter.TryWriteBytes(bytes.AsSpan(i * 2), BitConverter.HalfToUInt16Bits((Half)value));
                    break;
            }
        }
        return new TensorData(name, dtype, shape, bytes);
    }

    /// <summary>The lines of the seed trace: three trajectories of the replay protocol's shape.</summary>
    public static IReadOnlyList<string> TraceLines()
    {
        var lines = new List<string>();
        for (int t = 0; t < 3; t++)
        {
            var messages = new JsonArray
            {
                new JsonObject { ["role"] = "system", ["content"] = "You are a helpful assistant that can interact with a computer." },
                new JsonObject { ["role"] = "user", ["content"] = Texts[t] },
                new JsonObject { ["role"] = "assistant", ["content"] = Texts[t + 1] },
                new JsonObject { ["role"] = "user", ["content"] = Texts[t + 2] },
                new JsonObject { ["role"] = "assistant", ["content"] = Texts[t + 3] },
            };
            var line = new JsonObject
            {
                ["task_id"] = $"repo__task-{t}",
                ["resolved"] = t % 2 == 0,
                ["messages"] = messages,
                ["assistant_indices"] = new JsonArray(2, 4),
            };
            lines.Add(line.ToJsonString());
        }
        return lines;
    }

    /// <summary>Gzips JSONL lines (each ended by a newline) into one member.</summary>
    public static byte[] Gzip(IEnumerable<string> lines)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
        {
            byte[] text = Encoding.UTF8.GetBytes(string.Concat(lines.Select(l => l + "\n")));
            gzip.Write(text);
        }
        return buffer.ToArray();
    }

    private static void WriteTrace(string path) => File.WriteAllBytes(path, Gzip(TraceLines()));
}
