using System.Buffers.Binary;
using System.Text.Json.Nodes;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// TargetModel.Load refuses checkpoints whose files disagree or hold values no model can use, before anything reaches
/// libtorch, with an error that names the file and the key or tensor (issue 16 item 8): a config whose shapes the
/// weights do not have, an end-of-sequence id outside the vocabulary in generation_config.json, NaN or infinite weights.
/// </summary>
public sealed class CheckpointValidationTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("checkpoint-validation").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A writable copy of the tiny Llama checkpoint (float32 weights, vocabulary 1000).</summary>
    private string CopyTiny()
    {
        string source = SharedFixtures.TinyCheckpoint("llama-gqa");
        foreach (string file in new[] { "config.json", "generation_config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(source, file), Path.Combine(_dir, file));
        }
        return _dir;
    }

    private static TargetModel Load(string folder) => TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 1, MaxContext = 64 });

    private void EditConfig(string file, Action<JsonObject> edit)
    {
        string path = Path.Combine(_dir, file);
        JsonObject json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    [Fact]
    public void TheCopyLoads()
    {
        using TargetModel model = Load(CopyTiny());
        Assert.Equal(1000, model.Config.VocabSize);
    }

    /// <summary>A config whose widths are within bounds but not the weights' (here 1024 × 65536 × 2 layers, 550 GB of
    /// float32) is refused from the safetensors header, before a byte is allocated.</summary>
    [Fact]
    public void ConfigShapesTheWeightsDoNotHave_AreRefusedBeforeAllocating()
    {
        string folder = CopyTiny();
        EditConfig("config.json", c =>
        {
            c["hidden_size"] = 65536;
            c["intermediate_size"] = 262144;
            c["head_dim"] = 1024;
            c["num_attention_heads"] = 64;
            c["num_key_value_heads"] = 64;
        });
        SafeTensorsException ex = Assert.Throws<SafeTensorsException>(() => Load(folder));
        Assert.Contains("config.json", ex.Message);
        Assert.Contains("model.embed_tokens.weight", ex.Message);
        Assert.Contains("[1000, 65536]", ex.Message);
    }

    /// <summary>An end-of-sequence id outside the vocabulary loaded silently, and generation never stopped on EOS.</summary>
    [Fact]
    public void GenerationConfigEosOutsideTheVocabulary_IsRefused()
    {
        string folder = CopyTiny();
        EditConfig("generation_config.json", c => c["eos_token_id"] = new JsonArray(2, 4000));
        ModelConfigException ex = Assert.Throws<ModelConfigException>(() => Load(folder));
        Assert.EndsWith("generation_config.json", ex.Path);
        Assert.Contains("'eos_token_id'", ex.Message);
        Assert.Contains("4000", ex.Message);
        Assert.Contains("1000", ex.Message);
    }

    /// <summary>All-NaN weights loaded and generated token 0 without a word; one NaN or infinity anywhere is refused with
    /// the tensor's name and the file.</summary>
    [Theory]
    [InlineData(0x7FC00000u)]   // NaN
    [InlineData(0x7F800000u)]   // +infinity
    [InlineData(0xFF800000u)]   // -infinity
    public void NonFiniteWeights_AreRefusedNamingTheTensor(uint bits)
    {
        string folder = CopyTiny();
        string file = Path.Combine(folder, "model.safetensors");
        SafeTensorInfo info;
        using (SafeTensorsFile weights = SafeTensorsFile.Open(file))
        {
            info = weights.Get("model.layers.1.mlp.down_proj.weight");
        }
        byte[] bytes = File.ReadAllBytes(file);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)info.Offset + 4 * 777), bits);
        File.WriteAllBytes(file, bytes);

        SafeTensorsException ex = Assert.Throws<SafeTensorsException>(() => Load(folder));
        Assert.Contains("'model.layers.1.mlp.down_proj.weight'", ex.Message);
        Assert.Contains(file, ex.Message);
        Assert.Contains("element 777", ex.Message);
    }

    /// <summary>The bit test behind the refusal, for each dtype: an all-ones exponent is NaN or infinity; the largest
    /// finite values and subnormals pass.</summary>
    [Theory]
    [InlineData(SafeTensorsDType.Float32, new ushort[] { 0xFFFF, 0x7F7F, 0x0001, 0x0000 }, -1)]      // 3.4e38 and a subnormal
    [InlineData(SafeTensorsDType.Float32, new ushort[] { 0x0000, 0x3F80, 0x0000, 0x7F80 }, 1)]      // 1.0, +inf
    [InlineData(SafeTensorsDType.BFloat16, new ushort[] { 0x3F80, 0x7F7F, 0x0001, 0xFF81 }, 3)]     // NaN last
    [InlineData(SafeTensorsDType.BFloat16, new ushort[] { 0x3F80, 0x7F7F, 0x0001, 0x8000 }, -1)]
    [InlineData(SafeTensorsDType.Float16, new ushort[] { 0x7BFF, 0x7C00, 0x0001, 0x0000 }, 1)]      // 65504, +inf
    [InlineData(SafeTensorsDType.Float16, new ushort[] { 0x7BFF, 0xFBFF, 0x03FF, 0x0000 }, -1)]
    public void NonFiniteBitTest_FindsTheFirstNaNOrInfinity(SafeTensorsDType dtype, ushort[] halves, long expected)
    {
        byte[] bytes = new byte[halves.Length * 2];
        for (int i = 0; i < halves.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), halves[i]);
        }
        Assert.Equal(expected, TensorLoading.FirstNonFinite(bytes, dtype));
        // The same values at every offset of a long buffer (the vectorised path).
        byte[] longer = new byte[4096 + bytes.Length];
        bytes.CopyTo(longer, 4096);
        long shift = 4096 / (dtype == SafeTensorsDType.Float32 ? 4 : 2);
        Assert.Equal(expected < 0 ? -1 : expected + shift, TensorLoading.FirstNonFinite(longer, dtype));
    }
}
