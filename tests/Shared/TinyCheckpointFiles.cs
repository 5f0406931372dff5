using System.Text.Json.Nodes;
using Xunit;

namespace SpecDecode.Tests.Shared;

/// <summary>
/// Writes temp copies of ../shared/fixtures/hf-tiny/llama-gqa (random weights, vocab_size 1000) with a synthetic
/// byte-level tokenizer.json: the 256 byte tokens (id = byte value) and 744 merges of two letters or digits (ids
/// 256 .. 999), so every id the model can emit decodes. Linked into the test projects that need a loadable checkpoint
/// with a tokenizer (one source file, compiled into each).
/// </summary>
internal static class TinyCheckpointFiles
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    private const int VocabSize = 1000;

    /// <summary>Copies the fixture's config, generation config and weights into <paramref name="folder"/> (created).</summary>
    public static void CopyFixture(string repositoryRoot, string folder)
    {
        string source = Path.Combine(repositoryRoot, "..", "shared", "fixtures", "hf-tiny", "llama-gqa");
        Assert.True(Directory.Exists(source), "fixture missing: " + source + " (../shared must lie beside the repository)");
        Directory.CreateDirectory(folder);
        foreach (string file in new[] { "config.json", "generation_config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(source, file), Path.Combine(folder, file));
        }
    }

    /// <summary>Writes the synthetic tokenizer.json; <paramref name="mergeOffset"/> &gt; 0 names other pairs for ids
    /// 256 .. 999 (a different vocabulary of the same size).</summary>
    public static void WriteTokenizer(string folder, int mergeOffset = 0)
    {
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++)
        {
            vocab[ByteChar(b).ToString()] = b;
        }
        var merges = new JsonArray();
        var pairs = (from l in Alphabet from r in Alphabet select (Left: l.ToString(), Right: r.ToString()))
            .Skip(mergeOffset).Take(VocabSize - 256);
        foreach ((string left, string right) in pairs)
        {
            vocab[left + right] = vocab.Count;
            merges.Add(JsonValue.Create(left + " " + right));
        }
        Assert.Equal(VocabSize, vocab.Count);
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
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
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString());
    }

    /// <summary>GPT-2's byte-to-character map: printable bytes stand for themselves, the others for 256 + n.</summary>
    private static char ByteChar(int b)
    {
        static bool Printable(int i) => (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
        return Printable(b) ? (char)b : (char)(256 + Enumerable.Range(0, b).Count(i => !Printable(i)));
    }
}
