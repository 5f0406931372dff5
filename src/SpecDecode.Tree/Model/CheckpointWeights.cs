using System.Text.Json;

namespace SpecDecode.Tree;

/// <summary>
/// The weights of a Hugging Face checkpoint folder: <c>model.safetensors</c>, or the shards named by
/// <c>model.safetensors.index.json</c>. Every file is memory-mapped and validated when the folder is opened.
/// </summary>
internal sealed class CheckpointWeights : IDisposable
{
    private readonly SafeTensorsFile[] _files;
    private readonly Dictionary<string, SafeTensorsFile> _byTensor;

    private CheckpointWeights(string folder, SafeTensorsFile[] files, Dictionary<string, SafeTensorsFile> byTensor, string? index)
    {
        Folder = folder;
        _files = files;
        _byTensor = byTensor;
        _index = index;
    }

    // model.safetensors.index.json for a sharded checkpoint; null for one model.safetensors.
    private readonly string? _index;

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary>Names of every tensor over all shards.</summary>
    public IEnumerable<string> TensorNames => _byTensor.Keys;

    /// <summary>Opens the folder's weights.</summary>
    /// <exception cref="SafeTensorsException">No weights file, a missing or corrupt shard, a malformed index, or a tensor
    /// the index places in a shard that lacks it; the message names the file and tensor.</exception>
    public static CheckpointWeights Open(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string single = Path.Combine(folder, "model.safetensors");
        string index = Path.Combine(folder, "model.safetensors.index.json");
        if (File.Exists(single))
        {
            SafeTensorsFile file = SafeTensorsFile.Open(single);
            return new CheckpointWeights(folder, [file], file.Tensors.Keys.ToDictionary(k => k, _ => file, StringComparer.Ordinal), null);
        }
        if (!File.Exists(index))
        {
            throw new SafeTensorsException($"{folder}: no model.safetensors and no model.safetensors.index.json: not a safetensors checkpoint folder.");
        }
        Dictionary<string, string> weightMap;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(index));
            weightMap = doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .ToDictionary(p => p.Name, p => p.Value.GetString() ?? throw new JsonException($"shard of '{p.Name}' is null"), StringComparer.Ordinal);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new SafeTensorsException($"{index}: malformed index ({ex.Message}).", ex);
        }
        var files = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (string shard in weightMap.Values.Distinct())
            {
                string shardPath = Path.Combine(folder, shard);
                if (!File.Exists(shardPath))
                {
                    throw new SafeTensorsException($"{shardPath}: shard named by {index} is missing.");
                }
                files[shard] = SafeTensorsFile.Open(shardPath);
            }
            var byTensor = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach ((string tensor, string shard) in weightMap)
            {
                SafeTensorsFile file = files[shard];
                if (!file.Tensors.ContainsKey(tensor))
                {
                    throw new SafeTensorsException($"{file.Path}: the index places tensor '{tensor}' here but the shard lacks it.");
                }
                byTensor[tensor] = file;
            }
            return new CheckpointWeights(folder, files.Values.ToArray(), byTensor, index);
        }
        catch
        {
            foreach (SafeTensorsFile f in files.Values)
            {
                f.Dispose();
            }
            throw;
        }
    }

    /// <summary>The entry of a tensor, checked against the shape and dtype the model expects.</summary>
    /// <exception cref="SafeTensorsException">The tensor is missing, or its shape or dtype differs; the message names it.</exception>
    public SafeTensorInfo Get(string name, ReadOnlySpan<long> expectedShape)
    {
        SafeTensorInfo info = Get(name);
        if (!info.Shape.AsSpan().SequenceEqual(expectedShape))
        {
            throw new SafeTensorsException(
                $"{_byTensor[name].Path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], the model expects [{string.Join(", ", expectedShape.ToArray())}]: config.json and weights disagree.");
        }
        return info;
    }

    /// <summary>Checks every tensor a model needs against the headers (present, of the expected shape) before anything is
    /// allocated: a config.json whose shapes the weights do not have is refused here, not by a libtorch allocation.</summary>
    /// <exception cref="SafeTensorsException">A tensor is missing or of another shape; the message names it.</exception>
    public void CheckShapes(IEnumerable<(string Name, long[] Shape)> expected)
    {
        foreach ((string name, long[] shape) in expected)
        {
            Get(name, shape);
        }
    }

    /// <summary>The file that holds <paramref name="name"/> (the folder when no file does).</summary>
    public string FileOf(string name) => _byTensor.TryGetValue(name, out SafeTensorsFile? file) ? file.Path : Folder;

    /// <summary>The entry of a tensor.</summary>
    /// <exception cref="SafeTensorsException">No shard holds the tensor.</exception>
    public SafeTensorInfo Get(string name) =>
        _byTensor.TryGetValue(name, out SafeTensorsFile? file)
            ? file.Get(name)
            : throw new SafeTensorsException(_index is null
                ? $"{_files[0].Path}: no tensor '{name}' (the file has {_files[0].Tensors.Count}): the weights do not belong to this config.json, or the file is corrupt."
                : $"{_index}: no shard holds tensor '{name}': the weights do not belong to this config.json, or the index is corrupt.");

    /// <summary>A read-only stream over one tensor's bytes.</summary>
    /// <exception cref="SafeTensorsException">No shard holds the tensor.</exception>
    public Stream OpenRead(string name)
    {
        Get(name);
        return _byTensor[name].OpenRead(name);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (SafeTensorsFile f in _files)
        {
            f.Dispose();
        }
    }
}
