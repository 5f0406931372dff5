using System.Text.Json.Nodes;

namespace SpecDecode.Packaging.Tests;

/// <summary>
/// A temp copy of ../shared/fixtures/hf-tiny/llama-gqa (random weights, vocab_size 1000) with a synthetic byte-level
/// tokenizer.json: the 256 byte tokens (id = byte value) and 744 merges of two letters or digits (ids 256 .. 999), so
/// every id the model can emit decodes. The same construction as SpecDecode.Generate.Tests' TinyCheckpoints.
/// </summary>
internal static class TinyCheckpoint
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    private const int VocabSize = 1000;

    /// <summary>Writes the checkpoint with its tokenizer into <paramref name="folder"/> (created).</summary>
    public static void Write(string repositoryRoot, string folder)
    {
        string source = Path.Combine(repositoryRoot, "..", "shared", "fixtures", "hf-tiny", "llama-gqa");
        Assert.True(Directory.Exists(source), "fixture missing: " + source + " (../shared must lie beside the repository)");
        Directory.CreateDirectory(folder);
        foreach (string file in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(source, file), Path.Combine(folder, file));

        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++)
            vocab[ByteChar(b).ToString()] = b;
        var merges = new JsonArray();
        foreach ((string left, string right) in (from l in Alphabet from r in Alphabet select (l.ToString(), r.ToString())).Take(VocabSize - 256))
        {
            vocab[left + right] = vocab.Count;
            merges.Add(JsonValue.Create(left + " " + right));
        }
        Assert.Equal(VocabSize, vocab.Count);
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), tokenizer.ToJsonString());
    }

    /// <summary>GPT-2's byte-to-character map: printable bytes stand for themselves, the others for 256 + n.</summary>
    private static char ByteChar(int b)
    {
        static bool Printable(int i) => (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
        return Printable(b) ? (char)b : (char)(256 + Enumerable.Range(0, b).Count(i => !Printable(i)));
    }
}
