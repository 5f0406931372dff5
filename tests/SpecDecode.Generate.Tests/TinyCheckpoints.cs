using System.Text.Json.Nodes;

namespace SpecDecode.Generate.Tests;

/// <summary>
/// Temp copies of ../shared/fixtures/hf-tiny/llama-gqa (random weights, vocab_size 1000) with a synthetic byte-level
/// tokenizer.json: the 256 byte tokens (id = byte value) and 744 merges of two letters or digits (ids 256 .. 999), so every
/// id the model can emit decodes.
/// </summary>
public sealed class TinyCheckpoints : IDisposable
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    private const int VocabSize = 1000;

    public TinyCheckpoints()
    {
        Target = CopyCheckpoint("target");
        WriteTokenizer(Target, mergeOffset: 0);
        Chat = CopyCheckpoint("chat");
        WriteTokenizer(Chat, mergeOffset: 0);
        File.WriteAllText(Path.Combine(Chat, "tokenizer_config.json"), new JsonObject
        {
            ["chat_template"] = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        }.ToJsonString());
        NoTokenizer = CopyCheckpoint("no-tokenizer");
        OtherVocabulary = CopyCheckpoint("other-vocabulary");
        WriteTokenizer(OtherVocabulary, mergeOffset: 1);
    }

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "specdecode-generate-" + Guid.NewGuid().ToString("N"));

    /// <summary>The checkpoint with its tokenizer and no chat template.</summary>
    public string Target { get; }

    /// <summary>The same checkpoint with a ChatML-like template in tokenizer_config.json.</summary>
    public string Chat { get; }

    /// <summary>The weights and config without any tokenizer file.</summary>
    public string NoTokenizer { get; }

    /// <summary>The same weights with a tokenizer whose merged tokens differ (ids 256..999 name other pairs).</summary>
    public string OtherVocabulary { get; }

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private string CopyCheckpoint(string name)
    {
        string source = Path.Combine(RepoRoot(), "..", "shared", "fixtures", "hf-tiny", "llama-gqa");
        Assert.True(Directory.Exists(source), "fixture missing: " + source + " (../shared must lie beside the repository)");
        string folder = Path.Combine(Root, name);
        Directory.CreateDirectory(folder);
        foreach (string file in new[] { "config.json", "generation_config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(source, file), Path.Combine(folder, file));
        }
        return folder;
    }

    private static string RepoRoot()
    {
        DirectoryInfo? dir = new(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
        {
            dir = dir.Parent;
        }
        Assert.True(dir is not null, "repository root (SpecDecode.sln) not found above " + AppContext.BaseDirectory);
        return dir!.FullName;
    }

    private static void WriteTokenizer(string folder, int mergeOffset)
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
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        if (printable)
        {
            return (char)b;
        }
        int n = 0;
        for (int i = 0; i < b; i++)
        {
            if (!((i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF)))
            {
                n++;
            }
        }
        return (char)(256 + n);
    }
}
