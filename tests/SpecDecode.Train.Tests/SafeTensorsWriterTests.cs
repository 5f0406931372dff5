using System.Buffers.Binary;
using System.Text.Json;
using SpecDecode.Train.Checkpoint;
using SpecDecode.Tree;

namespace SpecDecode.Train.Tests;

/// <summary>SafeTensorsWriter output read back through the repository's SafeTensorsFile reader.</summary>
public sealed class SafeTensorsWriterTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-st-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private static TensorData[] SampleTensors()
    {
        var random = new Random(5);
        TensorData Make(string name, SafeTensorsDType dtype, params long[] shape)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var bytes = new byte[count * SafeTensorsWriter.ElementSize(dtype)];
            random.NextBytes(bytes);
            return new TensorData(name, dtype, shape, bytes);
        }
        return
        [
            Make("model.embed_tokens.weight", SafeTensorsDType.BFloat16, 300, 64),
            Make("model.layers.0.self_attn.q_proj.weight", SafeTensorsDType.Float16, 64, 64),
            Make("model.layers.0.input_layernorm.weight", SafeTensorsDType.Float32, 64),
            Make("model.norm.weight", SafeTensorsDType.Float32, 63),
            Make("lm_head.weight", SafeTensorsDType.BFloat16, 300, 64),
            Make("scalar", SafeTensorsDType.Float32),
        ];
    }

    [Fact]
    public void SingleFile_ReadsBackEqual()
    {
        TensorData[] tensors = SampleTensors();
        IReadOnlyList<string> files = SafeTensorsWriter.Write(_root, tensors, 16L << 20, new Dictionary<string, string> { ["format"] = "pt" });

        Assert.Equal([SafeTensorsWriter.SingleFileName], files);
        Assert.False(File.Exists(Path.Combine(_root, SafeTensorsWriter.IndexFileName)));
        string path = Path.Combine(_root, SafeTensorsWriter.SingleFileName);
        AssertAligned(path);
        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        Assert.Equal(tensors.Length, file.Tensors.Count);
        foreach (TensorData tensor in tensors)
        {
            AssertSame(file, tensor);
        }
    }

    [Fact]
    public void Sharded_IndexPointsEachNameToItsShard()
    {
        TensorData[] tensors = SampleTensors();
        // 300x64 bf16 = 38400 bytes: a 40000-byte limit puts the embedding, then q_proj + norms, then lm_head + scalar.
        IReadOnlyList<string> files = SafeTensorsWriter.Write(_root, tensors, 40_000, metadata: null);

        Assert.Equal(
            ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", SafeTensorsWriter.IndexFileName],
            files);
        using JsonDocument index = JsonDocument.Parse(File.ReadAllText(Path.Combine(_root, SafeTensorsWriter.IndexFileName)));
        Assert.Equal(tensors.Sum(t => (long)t.Data.Length), index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        Dictionary<string, string> weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        Assert.Equal(tensors.Select(t => t.Name).Order(), weightMap.Keys.Order());
        Assert.Equal("model-00001-of-00003.safetensors", weightMap["model.embed_tokens.weight"]);
        Assert.Equal("model-00002-of-00003.safetensors", weightMap["model.norm.weight"]);
        Assert.Equal("model-00003-of-00003.safetensors", weightMap["scalar"]);

        foreach (TensorData tensor in tensors)
        {
            string path = Path.Combine(_root, weightMap[tensor.Name]);
            AssertAligned(path);
            using SafeTensorsFile file = SafeTensorsFile.Open(path);
            AssertSame(file, tensor);
        }
        foreach (string shard in files.Take(3))
        {
            Assert.True(new FileInfo(Path.Combine(_root, shard)).Length - 8 - HeaderLength(Path.Combine(_root, shard)) <= 40_000);
        }
    }

    [Fact]
    public void BadInput_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(_root,
            [new TensorData("a", SafeTensorsDType.Float32, [3], new byte[8])], 1024, null));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(_root,
            [new TensorData("a", SafeTensorsDType.Float32, [1], new byte[4]), new TensorData("a", SafeTensorsDType.Float32, [1], new byte[4])], 1024, null));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(_root, [], 1024, null));
    }

    private static void AssertSame(SafeTensorsFile file, TensorData expected)
    {
        SafeTensorInfo info = file.Get(expected.Name);
        Assert.Equal(expected.DType, info.DType);
        Assert.Equal(expected.Shape, info.Shape);
        var bytes = new byte[info.Length];
        file.CopyTo(expected.Name, bytes);
        Assert.Equal(expected.Data.ToArray(), bytes);
    }

    private static long HeaderLength(string path)
    {
        using FileStream stream = File.OpenRead(path);
        Span<byte> length = stackalloc byte[8];
        stream.ReadExactly(length);
        return (long)BinaryPrimitives.ReadUInt64LittleEndian(length);
    }

    private static void AssertAligned(string path) => Assert.Equal(0, (8 + HeaderLength(path)) % 8);
}
