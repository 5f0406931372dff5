using System.Buffers.Binary;
using System.Text;

namespace SpecDecode.Tree.Tests;

/// <summary>The safetensors reader on the tiny checkpoints and on files broken in every way the loader must name.</summary>
public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("safetensors-tests").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ReadsTheTinyLlamaCheckpointAgainstItsConfig()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        ModelConfig config = ModelConfig.Load(folder);
        using CheckpointWeights weights = CheckpointWeights.Open(folder);
        SafeTensorInfo embed = weights.Get("model.embed_tokens.weight", [config.VocabSize, config.HiddenSize]);
        Assert.Equal(SafeTensorsDType.Float32, embed.DType);
        Assert.Equal(1000L * 64 * 4, embed.Length);
        int kvWidth = config.KeyValueHeadCount * config.HeadDim;
        weights.Get("model.layers.1.self_attn.k_proj.weight", [kvWidth, config.HiddenSize]);
        Assert.Contains("lm_head.weight", weights.TensorNames);

        // The bytes are the file's bytes at the header's offsets.
        byte[] file = File.ReadAllBytes(Path.Combine(folder, "model.safetensors"));
        using Stream s = weights.OpenRead("model.embed_tokens.weight");
        var bytes = new byte[embed.Length];
        s.ReadExactly(bytes);
        Assert.Equal(file.AsSpan((int)embed.Offset, (int)embed.Length).ToArray(), bytes);
    }

    [Fact]
    public void ShapeMismatchNamesTheTensor()
    {
        using CheckpointWeights weights = CheckpointWeights.Open(SharedFixtures.TinyCheckpoint("qwen2-tied"));
        var ex = Assert.Throws<SafeTensorsException>(() => weights.Get("model.embed_tokens.weight", [7, 7]));
        Assert.Contains("model.embed_tokens.weight", ex.Message);
        Assert.Contains("expects [7, 7]", ex.Message);
        var missing = Assert.Throws<SafeTensorsException>(() => weights.Get("model.layers.9.mlp.up_proj.weight"));
        Assert.Contains("model.layers.9.mlp.up_proj.weight", missing.Message);
    }

    [Fact]
    public void ShardedCheckpointFindsTensorsAndNamesAMissingShard()
    {
        string a = Write("model-00001-of-00002.safetensors", ("a.weight", "F32", [2, 2], 16));
        string b = Write("model-00002-of-00002.safetensors", ("b.weight", "BF16", [3], 6));
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"),
            """{"metadata":{},"weight_map":{"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors"}}""");
        using (CheckpointWeights w = CheckpointWeights.Open(_dir))
        {
            Assert.Equal(SafeTensorsDType.BFloat16, w.Get("b.weight", [3]).DType);
            Assert.Equal(16, w.Get("a.weight", [2, 2]).Length);
        }
        File.Delete(b);
        var ex = Assert.Throws<SafeTensorsException>(() => CheckpointWeights.Open(_dir));
        Assert.Contains("model-00002-of-00002.safetensors", ex.Message);
        Assert.Contains("missing", ex.Message);
        _ = a;
    }

    [Fact]
    public void TruncatedFileIsRefused()
    {
        string path = Write("model.safetensors", ("w", "F32", [4, 4], 64));
        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("'w'", ex.Message);
        Assert.Contains("truncated", ex.Message);
        File.WriteAllBytes(path, bytes[..5]);
        Assert.Contains("truncated", Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path)).Message);
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}""", "needs 16 bytes")]
    [InlineData("""{"w":{"dtype":"I8","shape":[16],"data_offsets":[0,16]}}""", "dtype I8")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"v":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", "overlap")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4]}}""", "corrupt header")]
    [InlineData("""{"w": nonsense""", "corrupt header")]
    [InlineData("""[1,2,3]""", "not a JSON object")]
    // Found by the parser fuzzer: a field of the wrong type, or a shape whose byte count overflows, named neither the
    // tensor nor the field ("corrupt header (One of the identified items was in an invalid format.)", "needs -4 bytes").
    [InlineData("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,"16"]}}""", "tensor 'w': \"data_offsets\"")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]}}""", "tensor 'w': \"shape\"")]
    [InlineData("""{"w":{"dtype":7,"shape":[4],"data_offsets":[0,16]}}""", "tensor 'w': \"dtype\"")]
    [InlineData("""{"w":{"dtype":"F32","shape":[9223372036854775807],"data_offsets":[0,16]}}""", "tensor 'w' of shape [9223372036854775807] has more")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,9223372036854775807]}}""", "outside the file")]
    // Issue 16 item 7: a duplicate name gave an untyped ArgumentException that named no file.
    [InlineData("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", "'w' appears twice")]
    public void CorruptHeaderIsRefusedWithTheReason(string header, string mentioned)
    {
        string path = Path.Combine(_dir, "bad.safetensors");
        WriteRaw(path, header, 16);
        var ex = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Contains(mentioned, ex.Message);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void HeaderLengthBeyondTheFileIsRefused()
    {
        string path = Path.Combine(_dir, "huge.safetensors");
        var bytes = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1UL << 40);
        File.WriteAllBytes(path, bytes);
        Assert.Contains("header claims", Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path)).Message);
        Assert.Contains("not found", Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(Path.Combine(_dir, "none"))).Message);
        Assert.Contains("not a safetensors checkpoint",
            Assert.Throws<SafeTensorsException>(() => CheckpointWeights.Open(Directory.CreateTempSubdirectory().FullName)).Message);
    }

    private string Write(string name, params (string Name, string DType, long[] Shape, int Bytes)[] tensors)
    {
        var header = new StringBuilder("{");
        int offset = 0;
        foreach ((string n, string dtype, long[] shape, int bytes) in tensors)
        {
            header.Append(header.Length > 1 ? "," : "")
                .Append($"\"{n}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + bytes}]}}");
            offset += bytes;
        }
        string path = Path.Combine(_dir, name);
        WriteRaw(path, header.Append('}').ToString(), offset);
        return path;
    }

    private static void WriteRaw(string path, string header, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)json.Length);
        json.CopyTo(bytes, 8);
        for (int i = 8 + json.Length; i < bytes.Length; i++)
        {
            bytes[i] = (byte)i;
        }
        File.WriteAllBytes(path, bytes);
    }
}
