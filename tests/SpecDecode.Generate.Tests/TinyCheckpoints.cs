using System.Text.Json.Nodes;
using SpecDecode.Tests.Shared;

namespace SpecDecode.Generate.Tests;

/// <summary>
/// Temp copies of ../shared/fixtures/hf-tiny/llama-gqa (random weights, vocab_size 1000) with a synthetic byte-level
/// tokenizer.json: the 256 byte tokens (id = byte value) and 744 merges of two letters or digits (ids 256 .. 999), so every
/// id the model can emit decodes (the files come from the shared <see cref="TinyCheckpointFiles"/>).
/// </summary>
public sealed class TinyCheckpoints : IDisposable
{

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
        LongContext = CopyCheckpoint("long-context");
        WriteTokenizer(LongContext, mergeOffset: 0);
        string config = Path.Combine(LongContext, "config.json");
        JsonNode json = JsonNode.Parse(File.ReadAllText(config))!;
        json["max_position_embeddings"] = 1 << 26; // the most config.json may claim (ConfigBounds.MaxPositions)
        File.WriteAllText(config, json.ToJsonString());
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

    /// <summary>The same checkpoint claiming a context of 2^26 positions (the most config.json may claim): a large --max-context passes the
    /// context check and must be refused by the memory check before libtorch allocates.</summary>
    public string LongContext { get; }

    public void Dispose() => Directory.Delete(Root, recursive: true);

    private string CopyCheckpoint(string name)
    {
        string folder = Path.Combine(Root, name);
        TinyCheckpointFiles.CopyFixture(RepoRoot(), folder);
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

    private static void WriteTokenizer(string folder, int mergeOffset) => TinyCheckpointFiles.WriteTokenizer(folder, mergeOffset);
}
