using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using SpecDecode.Tree;

namespace SpecDecode.Train.Checkpoint;

/// <summary>One tensor to write: its name, element type, shape and raw little-endian bytes.</summary>
/// <param name="Name">The Hugging Face key, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="DType">F32, F16 or BF16.</param>
/// <param name="Shape">The shape; empty for a scalar.</param>
/// <param name="Data">The bytes: element count × element size.</param>
public sealed record TensorData(string Name, SafeTensorsDType DType, long[] Shape, ReadOnlyMemory<byte> Data);

/// <summary>
/// Writes tensors as safetensors files: an 8-byte little-endian header length, a JSON header (each tensor's
/// <c>dtype</c>, <c>shape</c> and <c>data_offsets</c> relative to the data, plus optional <c>__metadata__</c>) padded
/// with spaces so the data starts 8-byte aligned, then the data in the given order. Past a size limit the tensors are
/// split over shards <c>model-00001-of-0000N.safetensors</c> with a <c>model.safetensors.index.json</c> (<c>metadata.total_size</c>,
/// <c>weight_map</c>), as transformers' <c>save_pretrained</c> does; otherwise one <c>model.safetensors</c>.
/// </summary>
/// <remarks>Format: huggingface/safetensors README. Shards are filled greedily in the given order; a tensor larger than
/// the limit gets a shard of its own.</remarks>
public static class SafeTensorsWriter
{
    /// <summary>The index file written beside shards.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>The single file written when everything fits one shard.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Writes <paramref name="tensors"/> into <paramref name="folder"/> (created if missing).</summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="tensors">The tensors, in file order.</param>
    /// <param name="maxShardBytes">The most data bytes per shard (the header comes on top).</param>
    /// <param name="metadata">String metadata for every file's <c>__metadata__</c> (transformers writes
    /// <c>{"format": "pt"}</c>), or null.</param>
    /// <returns>The file names written (shards, then the index when there is one).</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxShardBytes"/> is not positive.</exception>
    /// <exception cref="ArgumentException">No tensors; a name empty, repeated or <c>__metadata__</c>; a negative dimension;
    /// data whose length is not the element count times the element size.</exception>
    public static IReadOnlyList<string> Write(string folder, IReadOnlyList<TensorData> tensors, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        Validate(tensors);

        var shards = new List<List<TensorData>>();
        long current = 0;
        foreach (TensorData tensor in tensors)
        {
            if (shards.Count == 0 || (current > 0 && current + tensor.Data.Length > maxShardBytes))
            {
                shards.Add([]);
                current = 0;
            }
            shards[^1].Add(tensor);
            current += tensor.Data.Length;
        }

        Directory.CreateDirectory(folder);
        var written = new List<string>();
        if (shards.Count == 1)
        {
            WriteFile(Path.Combine(folder, SingleFileName), shards[0], metadata);
            written.Add(SingleFileName);
            return written;
        }

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int s = 0; s < shards.Count; s++)
        {
            string name = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteFile(Path.Combine(folder, name), shards[s], metadata);
            written.Add(name);
            foreach (TensorData tensor in shards[s])
            {
                weightMap.Add(tensor.Name, name);
            }
        }

        using (FileStream stream = File.Create(Path.Combine(folder, IndexFileName)))
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", tensors.Sum(t => (long)t.Data.Length));
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach ((string tensor, string file) in weightMap)
            {
                w.WriteString(tensor, file);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        written.Add(IndexFileName);
        return written;
    }

    /// <summary>The size in bytes of one element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Float32 => 4,
        SafeTensorsDType.Float16 => 2,
        SafeTensorsDType.BFloat16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>The safetensors name of <paramref name="dtype"/>: <c>F32</c>, <c>F16</c> or <c>BF16</c>.</summary>
    public static string DTypeName(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Float32 => "F32",
        SafeTensorsDType.Float16 => "F16",
        SafeTensorsDType.BFloat16 => "BF16",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    private static void Validate(IReadOnlyList<TensorData> tensors)
    {
        if (tensors.Count == 0)
        {
            throw new ArgumentException("No tensors to write.", nameof(tensors));
        }
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (TensorData tensor in tensors)
        {
            ArgumentNullException.ThrowIfNull(tensor, nameof(tensors));
            if (string.IsNullOrEmpty(tensor.Name) || tensor.Name == "__metadata__" || !names.Add(tensor.Name))
            {
                throw new ArgumentException($"Tensor name '{tensor.Name}' is empty, reserved or repeated.", nameof(tensors));
            }
            if (tensor.Shape is null || tensor.Shape.Any(d => d < 0))
            {
                throw new ArgumentException($"Tensor '{tensor.Name}' has no shape or a negative dimension.", nameof(tensors));
            }
            long expected = tensor.Shape.Aggregate(1L, (a, b) => a * b) * ElementSize(tensor.DType);
            if (tensor.Data.Length != expected)
            {
                throw new ArgumentException(
                    $"Tensor '{tensor.Name}' has {tensor.Data.Length} bytes; shape [{string.Join(", ", tensor.Shape)}] of {DTypeName(tensor.DType)} needs {expected}.",
                    nameof(tensors));
            }
        }
    }

    private static void WriteFile(string path, List<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var headerStream = new MemoryStream();
        using (var w = new Utf8JsonWriter(headerStream))
        {
            w.WriteStartObject();
            if (metadata is not null && metadata.Count > 0)
            {
                w.WriteStartObject("__metadata__");
                foreach ((string key, string value) in metadata)
                {
                    w.WriteString(key, value);
                }
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (TensorData tensor in tensors)
            {
                w.WriteStartObject(tensor.Name);
                w.WriteString("dtype", DTypeName(tensor.DType));
                w.WriteStartArray("shape");
                foreach (long d in tensor.Shape)
                {
                    w.WriteNumberValue(d);
                }
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + tensor.Data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += tensor.Data.Length;
            }
            w.WriteEndObject();
        }

        int padding = (int)((8 - (headerStream.Length % 8)) % 8);
        headerStream.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));

        using FileStream file = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerStream.Length);
        file.Write(length);
        headerStream.Position = 0;
        headerStream.CopyTo(file);
        foreach (TensorData tensor in tensors)
        {
            file.Write(tensor.Data.Span);
        }
    }
}
