using System.Runtime.InteropServices;
using System.Text.Json;
using SpecDecode.Tree;

namespace SpecDecode.Check;

/// <summary>Thrown on bad input: a checkpoint folder or its reference files missing or malformed, a checkpoint the model
/// cannot load, or a device that is not there. The message names the file and what is wrong; the command reports it
/// without a stack trace (exit code 2).</summary>
public sealed class CheckInputException : Exception
{
    /// <summary>Creates the exception.</summary>
    public CheckInputException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// What transformers computed for a checkpoint, in the format of <c>shared/fixtures/hf-tiny</c>: <c>expected.json</c>
/// (<c>prompt_ids</c>, <c>greedy_continuation</c>, <c>tree_tokens</c>, <c>tree_parents</c>, <c>second_prompt_ids</c>,
/// optionally <c>dtype</c>) and <c>expected.safetensors</c> (float32 <c>prompt_logits</c> [P, V], <c>tree_logits</c>
/// [N, V], <c>second_prompt_logits</c> [S, V]).
/// </summary>
public sealed class ReferenceFixture
{
    private ReferenceFixture(string folder)
    {
        Folder = folder;
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary>The prompt's token ids.</summary>
    public int[] PromptIds { get; private init; } = [];

    /// <summary>The tokens transformers' greedy <c>generate</c> produced after the prompt.</summary>
    public int[] GreedyContinuation { get; private init; } = [];

    /// <summary>Token per node of the reference tree hanging after the prompt's last token.</summary>
    public int[] TreeTokens { get; private init; } = [];

    /// <summary>Parent per node of the reference tree (-1: child of the prompt's last token).</summary>
    public int[] TreeParents { get; private init; } = [];

    /// <summary>A second prompt of another length.</summary>
    public int[] SecondPromptIds { get; private init; } = [];

    /// <summary>The dtype transformers computed in, from expected.json's <c>dtype</c> (null when absent).</summary>
    public string? DType { get; private init; }

    /// <summary>The vocabulary size (the logits' last dimension).</summary>
    public int VocabSize { get; private init; }

    /// <summary>Logits after each prompt token, float32 [P * V], row-major.</summary>
    public float[] PromptLogits { get; private init; } = [];

    /// <summary>Logits at each tree node given the prompt and the root-to-node path, float32 [N * V], row-major.</summary>
    public float[] TreeLogits { get; private init; } = [];

    /// <summary>Logits after each second-prompt token, float32 [S * V], row-major.</summary>
    public float[] SecondPromptLogits { get; private init; } = [];

    /// <summary>Reads and checks a checkpoint folder's <c>expected.json</c> and <c>expected.safetensors</c>.</summary>
    /// <exception cref="CheckInputException">The folder or a file is missing, a field is absent or of the wrong type, a
    /// tensor is absent, not float32 or of a shape that does not match the ids.</exception>
    public static ReferenceFixture Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
        {
            throw new CheckInputException($"{folder}: no such folder.");
        }
        string jsonPath = Path.Combine(folder, "expected.json");
        string tensorsPath = Path.Combine(folder, "expected.safetensors");
        foreach (string path in new[] { Path.Combine(folder, "config.json"), jsonPath, tensorsPath })
        {
            if (!File.Exists(path))
            {
                throw new CheckInputException($"{path}: missing. A checked folder holds config.json, the weights (model.safetensors or " +
                    "an index with shards), expected.json and expected.safetensors (see shared/fixtures/hf-tiny/README.md).");
            }
        }

        int[] prompt, continuation, treeTokens, treeParents, second;
        string? dtype;
        try
        {
            using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(jsonPath));
            JsonElement root = json.RootElement;
            prompt = Ids(root, "prompt_ids", jsonPath);
            continuation = Ids(root, "greedy_continuation", jsonPath);
            treeTokens = Ids(root, "tree_tokens", jsonPath);
            treeParents = Ids(root, "tree_parents", jsonPath);
            second = Ids(root, "second_prompt_ids", jsonPath);
            dtype = root.TryGetProperty("dtype", out JsonElement d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
        }
        catch (JsonException e)
        {
            throw new CheckInputException($"{jsonPath}: not valid JSON ({e.Message}).", e);
        }
        if (prompt.Length < 2 || second.Length < 2)
        {
            throw new CheckInputException($"{jsonPath}: prompt_ids and second_prompt_ids need at least 2 tokens.");
        }
        if (continuation.Length == 0 || treeTokens.Length == 0)
        {
            throw new CheckInputException($"{jsonPath}: greedy_continuation and tree_tokens must not be empty.");
        }
        if (treeParents.Length != treeTokens.Length)
        {
            throw new CheckInputException($"{jsonPath}: tree_parents has {treeParents.Length} entries, tree_tokens {treeTokens.Length}.");
        }

        try
        {
            using SafeTensorsFile tensors = SafeTensorsFile.Open(tensorsPath);
            (float[] promptLogits, int vocab) = Logits(tensors, "prompt_logits", prompt.Length, null);
            (float[] treeLogits, _) = Logits(tensors, "tree_logits", treeTokens.Length, vocab);
            (float[] secondLogits, _) = Logits(tensors, "second_prompt_logits", second.Length, vocab);
            return new ReferenceFixture(folder)
            {
                PromptIds = prompt,
                GreedyContinuation = continuation,
                TreeTokens = treeTokens,
                TreeParents = treeParents,
                SecondPromptIds = second,
                DType = dtype,
                VocabSize = vocab,
                PromptLogits = promptLogits,
                TreeLogits = treeLogits,
                SecondPromptLogits = secondLogits,
            };
        }
        catch (SafeTensorsException e)
        {
            throw new CheckInputException(e.Message, e);
        }
    }

    private static int[] Ids(JsonElement root, string field, string path)
    {
        if (!root.TryGetProperty(field, out JsonElement array) || array.ValueKind != JsonValueKind.Array)
        {
            throw new CheckInputException($"{path}: no list \"{field}\".");
        }
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (JsonElement e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out ids[i]))
            {
                throw new CheckInputException($"{path}: \"{field}\"[{i}] is not an integer.");
            }
            i++;
        }
        return ids;
    }

    private static (float[] Values, int Vocab) Logits(SafeTensorsFile file, string name, int rows, int? vocab)
    {
        if (!file.Tensors.TryGetValue(name, out SafeTensorInfo? info))
        {
            throw new CheckInputException($"{file.Path}: no tensor \"{name}\".");
        }
        if (info.DType != SafeTensorsDType.Float32)
        {
            throw new CheckInputException($"{file.Path}: \"{name}\" is {info.DType}; the reference logits must be float32.");
        }
        if (info.Shape.Length != 2 || info.Shape[0] != rows || (vocab is { } v && info.Shape[1] != v) || info.Shape[1] < 1)
        {
            throw new CheckInputException($"{file.Path}: \"{name}\" has shape [{string.Join(", ", info.Shape)}]; expected [{rows}, {(vocab is { } w ? w : "vocab")}].");
        }
        var bytes = new byte[info.Length];
        file.CopyTo(name, bytes);
        return (MemoryMarshal.Cast<byte, float>(bytes).ToArray(), (int)info.Shape[1]);
    }
}
