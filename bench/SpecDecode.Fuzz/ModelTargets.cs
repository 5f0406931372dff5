using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.Fuzz;

/// <summary>The files TargetModel.Load reads; a model that loads is used for one forward.</summary>
internal abstract class ModelFileTarget : FuzzTarget
{
    public override void Parse(string folder)
    {
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 1, MaxContext = 16 });
        model.Prefill([(0, [1, 2, 3])]);
        model.VerifyGreedy([new TreeInput(0, 4, DraftTree.Empty)]);
    }
}

/// <summary>model.safetensors: its header (JSON, length prefix, offsets, shapes) and its body (bit flips, NaN and
/// infinity injected into a tensor, truncation).</summary>
internal sealed class SafeTensorsTarget : ModelFileTarget
{
    public override string Name => "safetensors";

    public override string FileName => "model.safetensors";

    public override bool IsTyped(Exception error) => error is SafeTensorsException;

    protected override byte[] CorruptOnce(byte[] bytes, Random random, out string description)
    {
        if (bytes.Length < 8)
        {
            return ByteMutator.Mutate(bytes, random, out description);
        }
        ulong claimed = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (claimed > (ulong)(bytes.Length - 8))
        {
            return ByteMutator.Mutate(bytes, random, out description);   // the header no longer parses: raw bytes only
        }
        int headerLength = (int)claimed;
        string header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        byte[] body = bytes[(8 + headerLength)..];
        switch (random.Next(10))
        {
            case 0 or 1 or 2:
            {
                string mutated = JsonMutator.Mutate(header, random, out string what);
                description = "header " + what;
                return Assemble(mutated, body, null);
            }
            case 3:
                return Rewrite(header, body, random, "data_offsets", out description, (entry, r) => entry["data_offsets"] = Offsets(r, body.Length));
            case 4:
                return Rewrite(header, body, random, "shape", out description, (entry, r) => entry["shape"] = Shape(r, entry["shape"] as JsonArray));
            case 5:
            {
                ulong lie = random.Next(4) switch
                {
                    0 => claimed + (ulong)random.Next(1, 17),
                    1 => claimed - (ulong)random.Next(1, Math.Min(17, headerLength)),
                    2 => (ulong)random.NextInt64(),
                    _ => ulong.MaxValue - (ulong)random.Next(8),
                };
                byte[] copy = [.. bytes];
                BinaryPrimitives.WriteUInt64LittleEndian(copy, lie);
                description = $"length prefix {claimed} -> {lie}";
                return copy;
            }
            case 6:
            {
                byte[] mutated = ByteMutator.Mutate(bytes, random, out string what, 8 + headerLength);
                description = "body " + what;
                return mutated;
            }
            case 7:
                return NonFinite(header, bytes, headerLength, random, out description);
            case 8:
            {
                int keep = random.Next(body.Length + 1);
                description = $"body truncated to {keep} of {body.Length} bytes";
                return bytes[..(8 + headerLength + keep)];
            }
            default:
                return ByteMutator.Mutate(bytes, random, out description);
        }
    }

    private static byte[] Assemble(string header, byte[] body, ulong? prefix)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + json.Length + body.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, prefix ?? (ulong)json.Length);
        json.CopyTo(file, 8);
        body.CopyTo(file, 8 + json.Length);
        return file;
    }

    /// <summary>Changes one field of one tensor's entry (the header is re-encoded with a correct length).</summary>
    private static byte[] Rewrite(string header, byte[] body, Random random, string field, out string description, Action<JsonObject, Random> change)
    {
        if (JsonNode.Parse(header) is not JsonObject root)
        {
            description = "header (not an object, unchanged)";
            return Assemble(header, body, null);
        }
        List<string> names = root.Where(p => p.Key != "__metadata__" && p.Value is JsonObject).Select(p => p.Key).ToList();
        if (names.Count == 0)
        {
            description = "header (no tensor, unchanged)";
            return Assemble(header, body, null);
        }
        string name = names[random.Next(names.Count)];
        var entry = (JsonObject)root[name]!;
        change(entry, random);
        description = $"'{name}' {field} = {entry[field]?.ToJsonString()}";
        return Assemble(root.ToJsonString(), body, null);
    }

    private static JsonArray Offsets(Random random, long bodyLength)
    {
        long Pick() => random.Next(8) switch
        {
            0 => 0,
            1 => random.NextInt64(bodyLength + 1),
            2 => bodyLength,
            3 => bodyLength + random.Next(1, 64),
            4 => -random.Next(1, 64),
            5 => long.MaxValue - random.Next(64),
            6 => 1L << random.Next(31, 62),
            _ => random.NextInt64(bodyLength + 1),
        };
        long a = Pick(), b = Pick();
        return random.Next(4) == 0 ? new JsonArray(a) : new JsonArray(a, b);
    }

    private static JsonArray Shape(Random random, JsonArray? shape)
    {
        long[] dims = shape?.Select(d => d?.GetValue<long>() ?? 0).ToArray() ?? [];
        return random.Next(7) switch
        {
            0 => new JsonArray(0),
            1 => new JsonArray([.. dims.Select(d => JsonValue.Create(-d))]),
            2 => new JsonArray(4294967296L, 4294967296L),
            3 => new JsonArray(long.MaxValue),
            4 => new JsonArray(),
            5 => new JsonArray([.. dims.Append(random.Next(1, 4)).Select(d => JsonValue.Create(d))]),
            _ => new JsonArray([.. dims.Reverse().Select(d => JsonValue.Create(d))]),
        };
    }

    /// <summary>Sets one element of one tensor to NaN or an infinity (all exponent bits, maybe mantissa bits).</summary>
    private static byte[] NonFinite(string header, byte[] bytes, int headerLength, Random random, out string description)
    {
        if (JsonNode.Parse(header) is not JsonObject root)
        {
            description = "non-finite (header not an object, unchanged)";
            return bytes;
        }
        var entries = root.Where(p => p.Value is JsonObject o && o["data_offsets"] is JsonArray { Count: 2 } && o["dtype"] is not null)
            .Select(p => (p.Key, Entry: (JsonObject)p.Value!)).ToList();
        if (entries.Count == 0)
        {
            description = "non-finite (no tensor, unchanged)";
            return bytes;
        }
        (string name, JsonObject e) = entries[random.Next(entries.Count)];
        long begin = e["data_offsets"]![0]!.GetValue<long>(), end = e["data_offsets"]![1]!.GetValue<long>();
        string dtype = e["dtype"]!.GetValue<string>();
        int size = dtype == "F32" ? 4 : 2;
        long count = (end - begin) / size;
        byte[] copy = [.. bytes];
        if (count <= 0)
        {
            description = $"non-finite ('{name}' is empty, unchanged)";
            return copy;
        }
        long element = random.NextInt64(count);
        int at = (int)(8 + headerLength + begin + element * size);
        bool nan = random.Next(2) == 0;
        switch (dtype)
        {
            case "F32":
                BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(at), (random.Next(2) == 0 ? 0u : 0x8000_0000u) | 0x7F80_0000u | (nan ? 0x0040_0000u : 0u));
                break;
            case "BF16":
                BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(at), (ushort)(0x7F80 | (nan ? 0x0040 : 0)));
                break;
            default:
                BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(at), (ushort)(0x7C00 | (nan ? 0x0200 : 0)));
                break;
        }
        description = $"'{name}' element {element} = {(nan ? "NaN" : "infinity")}";
        return copy;
    }
}

/// <summary>config.json, loaded with the seed weights (a refusal of shapes the weights lack names config.json too).</summary>
internal sealed class ConfigTarget : ModelFileTarget
{
    public override string Name => "config";

    public override string FileName => "config.json";

    public override bool IsTyped(Exception error) => error is ModelConfigException or SafeTensorsException;

    protected override byte[] CorruptOnce(byte[] bytes, Random random, out string description) => CorruptJson(bytes, random, out description);
}

/// <summary>generation_config.json, loaded with the rest of the checkpoint.</summary>
internal sealed class GenerationConfigTarget : ModelFileTarget
{
    public override string Name => "generation-config";

    public override string FileName => "generation_config.json";

    public override bool IsTyped(Exception error) => error is ModelConfigException;

    public override void Parse(string folder)
    {
        // The model loads (and is used) only when the file is accepted; the file is read before the weights.
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 1, MaxContext = 16 });
    }

    protected override byte[] CorruptOnce(byte[] bytes, Random random, out string description) => CorruptJson(bytes, random, out description);
}
