using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SpecDecode.Fuzz;

/// <summary>
/// Structure-aware corruptions of a JSON document: a value replaced by a huge, negative, fractional, non-finite or
/// wrongly typed one, a key removed, renamed or duplicated, an array cut or repeated, a deep nesting. Values JSON
/// nodes cannot hold (1e400, duplicate keys) are spliced into the text after serialisation.
/// </summary>
internal static class JsonMutator
{
    /// <summary>Raw JSON texts a value may be replaced with.</summary>
    private static readonly string[] Values =
    [
        "0", "-1", "-2", "1", "2", "-2147483648", "2147483647", "2147483648", "4294967296", "9007199254740993",
        "-9223372036854775808", "9223372036854775808", "99999999999999999999999", "1.5", "-0.0", "1e-320", "1e308",
        "-1e308", "1e400", "-1e400", "2e9", "1e9", "\"\"", "\"x\"", "\"NaN\"", "\"Infinity\"", "\"-1\"", "\"12\"", "null",
        "true", "false", "[]", "{}", "[1,2]", "[-1]", "[\"a\",\"b\"]", "{\"a\":1}", "[[[[]]]]", "\"\\u0000\"",
        "\"\\ud800\"", "\"" + new string('a', 5000) + "\"",
    ];

    /// <summary>Applies one random corruption to <paramref name="json"/>; the text is returned and the corruption
    /// described. Text that does not parse is returned unchanged, described as such.</summary>
    public static string Mutate(string json, Random random, out string description)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { MaxDepth = 512 });
        }
        catch (JsonException)
        {
            description = "json: (input not JSON, unchanged)";
            return json;
        }
        if (root is null)
        {
            description = "json: (null document, unchanged)";
            return json;
        }
        List<JsonNode> nodes = [];
        Collect(root, nodes);
        JsonNode target = nodes[random.Next(nodes.Count)];
        var splices = new Dictionary<string, string>();
        string Splice(string raw)
        {
            string marker = $"__fuzz_raw_{splices.Count}__";
            splices[$"\"{marker}\""] = raw;
            return marker;
        }
        string path = target.GetPath();
        switch (random.Next(8))
        {
            case 0 or 1:
            {
                string raw = Values[random.Next(Values.Length)];
                if (!Replace(root, target, JsonValue.Create(Splice(raw))))
                {
                    goto default;
                }
                description = $"json: {path} = {Short(raw)}";
                break;
            }
            case 2 when target.Parent is JsonObject parent:
            {
                string key = target.GetPropertyName();
                parent.Remove(key);
                description = $"json: remove {path}";
                break;
            }
            case 3 when target.Parent is JsonObject parent:
            {
                // A second occurrence of the key with another value: JSON nodes cannot hold it, so it is spliced in.
                string key = target.GetPropertyName();
                string raw = random.Next(2) == 0 ? target.ToJsonString() : Values[random.Next(Values.Length)];
                string marker = $"__fuzz_dup_{splices.Count}__";
                parent[marker] = JsonValue.Create(Splice(raw));
                splices[$"\"{marker}\""] = JsonSerializer.Serialize(key);
                description = $"json: duplicate key {path} = {Short(raw)}";
                break;
            }
            case 4 when target.Parent is JsonObject parent:
            {
                string key = target.GetPropertyName();
                string renamed = random.Next(3) switch { 0 => key.ToUpperInvariant(), 1 => key + "_", _ => "" };
                parent.Remove(key);
                if (!parent.ContainsKey(renamed))
                {
                    parent[renamed] = target;
                }
                description = $"json: rename {path} to \"{renamed}\"";
                break;
            }
            case 5 when target is JsonArray array && array.Count > 0:
            {
                int at = random.Next(array.Count);
                switch (random.Next(3))
                {
                    case 0:
                        array.RemoveAt(at);
                        description = $"json: remove {path}[{at}]";
                        break;
                    case 1:
                        array.Insert(at, array[at]?.DeepClone());
                        description = $"json: repeat {path}[{at}]";
                        break;
                    default:
                        int keep = random.Next(array.Count);
                        while (array.Count > keep)
                        {
                            array.RemoveAt(array.Count - 1);
                        }
                        description = $"json: cut {path} to {keep} elements";
                        break;
                }
                break;
            }
            case 6:
            {
                int depth = random.Next(2) == 0 ? random.Next(10, 80) : random.Next(500, 5000);
                string raw = new string('[', depth) + new string(']', depth);
                if (!Replace(root, target, JsonValue.Create(Splice(raw))))
                {
                    goto default;
                }
                description = $"json: {path} = nesting {depth} deep";
                break;
            }
            case 7 when target.Parent is JsonObject parent:
            {
                string key = random.Next(2) == 0 ? "__metadata__" : "unexpected_key";
                string raw = Values[random.Next(Values.Length)];
                if (!parent.ContainsKey(key))
                {
                    parent[key] = JsonValue.Create(Splice(raw));
                }
                description = $"json: add {key} = {Short(raw)} beside {path}";
                break;
            }
            default:
            {
                string raw = Values[random.Next(Values.Length)];
                if (!Replace(root, target, JsonValue.Create(Splice(raw))))
                {
                    root = JsonValue.Create(Splice(raw));
                    path = "$";
                }
                description = $"json: {path} = {Short(raw)}";
                break;
            }
        }
        var text = new StringBuilder(root!.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        foreach ((string marker, string raw) in splices)
        {
            text.Replace(marker, raw);
        }
        return text.ToString();
    }

    private static void Collect(JsonNode node, List<JsonNode> nodes)
    {
        nodes.Add(node);
        switch (node)
        {
            case JsonObject o:
                foreach (KeyValuePair<string, JsonNode?> p in o)
                {
                    if (p.Value is not null)
                    {
                        Collect(p.Value, nodes);
                    }
                }
                break;
            case JsonArray a:
                // Long arrays (vocabularies, merges): a sample of their elements is enough.
                for (int i = 0; i < a.Count; i += Math.Max(1, a.Count / 32))
                {
                    if (a[i] is { } child)
                    {
                        Collect(child, nodes);
                    }
                }
                break;
        }
    }

    /// <summary>Puts <paramref name="value"/> where <paramref name="target"/> is; false for the root.</summary>
    private static bool Replace(JsonNode root, JsonNode target, JsonNode value)
    {
        switch (target.Parent)
        {
            case JsonObject o:
                o[target.GetPropertyName()] = value;
                return true;
            case JsonArray a:
                a[a.IndexOf(target)] = value;
                return true;
            default:
                return false;
        }
    }

    private static string Short(string raw) => raw.Length <= 40 ? raw : raw[..37] + "...";
}
