using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Text.Json;

namespace SpecDecode.Tree;

/// <summary>Element types of safetensors files that the loader understands.</summary>
public enum SafeTensorsDType
{
    /// <summary>32-bit IEEE float (<c>F32</c>).</summary>
    Float32,

    /// <summary>16-bit IEEE float (<c>F16</c>).</summary>
    Float16,

    /// <summary>bfloat16 (<c>BF16</c>).</summary>
    BFloat16,
}

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor name, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The shape.</param>
/// <param name="Offset">Byte offset of the data from the start of the file.</param>
/// <param name="Length">Byte length of the data (may exceed 2 GB).</param>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Offset, long Length)
{
    /// <summary>Number of elements (product of the shape; 1 for a scalar).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>Thrown when a safetensors file or its index is missing, truncated or corrupt, or lacks a tensor; the message
/// names the file and, where it applies, the tensor.</summary>
public sealed class SafeTensorsException : SpecDecodeException
{
    /// <summary>Creates the exception.</summary>
    public SafeTensorsException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// A memory-mapped safetensors file: the header is parsed and checked up front (types, shapes against byte lengths,
/// offsets inside the file, no overlaps), and tensor data is read through the mapping without loading the file into
/// managed memory; tensors over 2 GB are read as streams.
/// </summary>
/// <remarks>Format: an 8-byte little-endian header length, a JSON header mapping names to <c>dtype</c>, <c>shape</c> and
/// <c>data_offsets</c> (relative to the end of the header), then the data (huggingface/safetensors).</remarks>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;
    private readonly MemoryMappedFile _map;
    private readonly Dictionary<string, SafeTensorInfo> _tensors;

    private SafeTensorsFile(string path, MemoryMappedFile map, Dictionary<string, SafeTensorInfo> tensors)
    {
        Path = path;
        _map = map;
        _tensors = tensors;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Every tensor of the file, by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => _tensors;

    /// <summary>Opens and validates a file.</summary>
    /// <exception cref="SafeTensorsException">The file is missing, shorter than its header says, or its header is corrupt.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new SafeTensorsException($"{path}: safetensors file not found.");
        }
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8)
        {
            throw new SafeTensorsException($"{path}: truncated: {fileLength} bytes, not even the 8-byte header length.");
        }
        Span<byte> lengthBytes = stackalloc byte[8];
        byte[] header;
        using (FileStream stream = File.OpenRead(path))
        {
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
            if (headerLength > (ulong)MaxHeaderBytes || (long)headerLength > fileLength - 8)
            {
                throw new SafeTensorsException(
                    $"{path}: corrupt or truncated: the header claims {headerLength} bytes but the file has {fileLength - 8} after the length.");
            }
            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        long dataStart = 8 + header.Length;
        Dictionary<string, SafeTensorInfo> tensors = ParseHeader(header, path, dataStart, fileLength);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, 0, MemoryMappedFileAccess.Read);
        return new SafeTensorsFile(path, map, tensors);
    }

    /// <summary>The entry of a tensor.</summary>
    /// <exception cref="SafeTensorsException">The file has no tensor of that name.</exception>
    public SafeTensorInfo Get(string name) =>
        _tensors.TryGetValue(name, out SafeTensorInfo? info)
            ? info
            : throw new SafeTensorsException($"{Path}: no tensor '{name}' (the file has {_tensors.Count}).");

    /// <summary>A read-only stream over one tensor's bytes (any size).</summary>
    /// <exception cref="SafeTensorsException">The file has no tensor of that name.</exception>
    public Stream OpenRead(string name)
    {
        SafeTensorInfo info = Get(name);
        return _map.CreateViewStream(info.Offset, info.Length, MemoryMappedFileAccess.Read);
    }

    /// <summary>Copies one tensor's bytes into <paramref name="destination"/>, which must have exactly its length.</summary>
    /// <exception cref="SafeTensorsException">No such tensor.</exception>
    /// <exception cref="ArgumentException">The destination length differs from the tensor's.</exception>
    public void CopyTo(string name, Span<byte> destination)
    {
        SafeTensorInfo info = Get(name);
        if (destination.Length != info.Length)
        {
            throw new ArgumentException($"Tensor '{name}' has {info.Length} bytes; the destination has {destination.Length}.", nameof(destination));
        }
        using Stream stream = OpenRead(name);
        stream.ReadExactly(destination);
    }

    /// <inheritdoc />
    public void Dispose() => _map.Dispose();

    /// <summary>One tensor's header entry, every field checked: its dtype, a shape of non-negative integers whose byte
    /// count fits a file, and two offsets inside the data that give exactly that count. Arithmetic cannot overflow.</summary>
    private static SafeTensorInfo Entry(JsonProperty entry, string path, long dataStart, long dataLength)
    {
        string where = $"{path}: corrupt header: tensor '{entry.Name}'";
        JsonElement e = entry.Value;
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new SafeTensorsException($"{where} is a JSON {e.ValueKind}, not an object with dtype, shape and data_offsets.");
        }
        string dtypeName = e.TryGetProperty("dtype", out JsonElement d) && d.ValueKind == JsonValueKind.String
            ? d.GetString()!
            : throw new SafeTensorsException($"{where}: \"dtype\" must be a string such as \"BF16\".");
        (SafeTensorsDType dtype, int size) = dtypeName switch
        {
            "F32" => (SafeTensorsDType.Float32, 4),
            "F16" => (SafeTensorsDType.Float16, 2),
            "BF16" => (SafeTensorsDType.BFloat16, 2),
            _ => throw new SafeTensorsException($"{path}: tensor '{entry.Name}' has dtype {dtypeName}; F32, F16 and BF16 are supported."),
        };
        long[] shape = Integers(e, "shape", -1, where);
        long[] offsets = Integers(e, "data_offsets", 2, where);
        long begin = offsets[0], end = offsets[1];
        if (shape.Any(dim => dim < 0) || begin < 0 || end < begin || end > dataLength)
        {
            throw new SafeTensorsException(
                $"{path}: tensor '{entry.Name}' has offsets [{begin}, {end}) outside the file's {dataLength} data bytes (truncated file?).");
        }
        long bytes;
        try
        {
            bytes = checked(shape.Aggregate(1L, (a, b) => a * b) * size);
        }
        catch (OverflowException)
        {
            throw new SafeTensorsException($"{path}: tensor '{entry.Name}' of shape [{string.Join(", ", shape)}] has more elements than a file can hold.");
        }
        if (bytes != end - begin)
        {
            throw new SafeTensorsException(
                $"{path}: tensor '{entry.Name}' of shape [{string.Join(", ", shape)}] {dtypeName} needs {bytes} bytes, its offsets give {end - begin}.");
        }
        return new SafeTensorInfo(entry.Name, dtype, shape, dataStart + begin, end - begin);
    }

    /// <summary>A field that must be a list of integers (of <paramref name="count"/> of them, unless -1).</summary>
    private static long[] Integers(JsonElement entry, string field, int count, string where)
    {
        bool found = entry.TryGetProperty(field, out JsonElement list);
        if (found && list.ValueKind == JsonValueKind.Array && (count < 0 || list.GetArrayLength() == count))
        {
            var values = new long[list.GetArrayLength()];
            bool integers = true;
            int i = 0;
            foreach (JsonElement item in list.EnumerateArray())
            {
                integers &= item.ValueKind == JsonValueKind.Number && item.TryGetInt64(out values[i++]);
            }
            if (integers)
            {
                return values;
            }
        }
        string what = count < 0 ? "a list of integers" : $"a list of {count} integers";
        throw new SafeTensorsException($"{where}: \"{field}\" must be {what}, not {(found ? Shorten(list.GetRawText()) : "missing")}.");
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";

    private static Dictionary<string, SafeTensorInfo> ParseHeader(byte[] header, string path, long dataStart, long fileLength)
    {
        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        long dataLength = fileLength - dataStart;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(header);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new SafeTensorsException($"{path}: corrupt header: not a JSON object.");
            }
            foreach (JsonProperty entry in doc.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__")
                {
                    continue;
                }
                SafeTensorInfo info = Entry(entry, path, dataStart, dataLength);
                if (!tensors.TryAdd(entry.Name, info))
                {
                    throw new SafeTensorsException($"{path}: corrupt header: tensor '{entry.Name}' appears twice.");
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Malformed JSON, or text that is not valid UTF-8 or UTF-16 where a name is read.
            throw new SafeTensorsException($"{path}: corrupt header ({ex.Message}).", ex);
        }
        SafeTensorInfo[] ordered = tensors.Values.OrderBy(t => t.Offset).ToArray();
        for (int i = 1; i < ordered.Length; i++)
        {
            if (ordered[i].Offset < ordered[i - 1].Offset + ordered[i - 1].Length)
            {
                throw new SafeTensorsException($"{path}: corrupt header: tensors '{ordered[i - 1].Name}' and '{ordered[i].Name}' overlap.");
            }
        }
        return tensors;
    }
}
