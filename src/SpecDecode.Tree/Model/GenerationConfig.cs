using System.Text.Json;

namespace SpecDecode.Tree;

/// <summary>
/// Reads the token ids that end generation from a Hugging Face checkpoint folder, as transformers' <c>generate</c>
/// does: <c>generation_config.json</c>'s <c>eos_token_id</c> when the file sets one, otherwise <c>config.json</c>'s.
/// Instruct checkpoints often list several there (Llama 3.1: <c>[128001, 128008, 128009]</c>, so that
/// <c>&lt;|eot_id|&gt;</c> ends a reply), where config.json names only the pretraining EOS.
/// </summary>
public static class GenerationConfig
{
    /// <summary>The end-of-sequence token ids of the checkpoint in <paramref name="folder"/>.</summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <returns>The ids in the file's order (one or several); empty when neither file names any (a missing or
    /// <c>null</c> <c>eos_token_id</c> in generation_config.json falls back to config.json).</returns>
    /// <exception cref="ArgumentException"><paramref name="folder"/> is null or empty.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ModelConfigException">A file is not valid JSON or not an object, or <c>eos_token_id</c> is
    /// neither a token id nor a list of them.</exception>
    public static IReadOnlyList<int> EosTokenIds(string folder) => EosTokenIds(folder, vocabSize: null);

    /// <summary>As <see cref="EosTokenIds(string)"/>, refusing ids outside a vocabulary of <paramref name="vocabSize"/>
    /// tokens (an end-of-sequence id the model can never emit would let generation run on past every end).</summary>
    /// <exception cref="ModelConfigException">As <see cref="EosTokenIds(string)"/>, or an id is outside the vocabulary;
    /// the message names the file, the key and the id.</exception>
    internal static IReadOnlyList<int> EosTokenIds(string folder, int? vocabSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException("checkpoint folder not found: " + folder);
        }

        foreach (string file in new[] { "generation_config.json", "config.json" })
        {
            string path = Path.Combine(folder, file);
            if (File.Exists(path) && ReadEosTokenIds(path, vocabSize) is { } ids)
            {
                return ids;
            }
        }

        return [];
    }

    /// <summary>The <c>eos_token_id</c> of one JSON file, or null when it has none.</summary>
    internal static int[]? ReadEosTokenIds(string path, int? vocabSize)
    {
        JsonDocument document;
        try
        {
            using FileStream stream = File.OpenRead(path);
            document = JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new ModelConfigException(path, $"not valid JSON ({e.Message}).", e);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ModelConfigException(path, "is not a JSON object.");
            }

            if (!root.TryGetProperty("eos_token_id", out JsonElement eos) || eos.ValueKind == JsonValueKind.Null)
            {
                return null;
            }

            return ModelConfig.TokenIds(eos, "eos_token_id", vocabSize, path);
        }
    }
}
