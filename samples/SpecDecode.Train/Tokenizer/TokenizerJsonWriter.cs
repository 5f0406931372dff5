using System.Text.Encodings.Web;
using System.Text.Json;

namespace SpecDecode.Train.Tokenizer;

/// <summary>Settings of <see cref="TokenizerJsonWriter.Write"/>: which special tokens play which role.</summary>
/// <param name="BosToken">The beginning-of-sequence token (config <c>bos_token</c>).</param>
/// <param name="EosToken">The end-of-sequence token (config <c>eos_token</c>); for a chat model the end of a turn.</param>
/// <param name="PadToken">The padding token, or null for none.</param>
/// <param name="ModelMaxLength">The context length written as <c>model_max_length</c>.</param>
public sealed record TokenizerFilesSettings(string BosToken, string EosToken, string? PadToken, int ModelMaxLength)
{
    /// <summary>The embedded default model's roles: BOS <c>&lt;|begin_of_text|&gt;</c>, EOS <c>&lt;|im_end|&gt;</c> (a
    /// turn ends generation), pad <c>&lt;|end_of_text|&gt;</c>, 4096 positions.</summary>
    public static TokenizerFilesSettings Default { get; } = new("<|begin_of_text|>", "<|im_end|>", "<|end_of_text|>", 4096);
}

/// <summary>
/// Writes a <see cref="BpeVocabulary"/> as the tokenizer files of a Hugging Face checkpoint folder: <c>tokenizer.json</c>
/// (a byte-level BPE like Llama 3's: <c>Split</c> with Llama 3's pattern then <c>ByteLevel</c> pre-tokenizer,
/// <c>ByteLevel</c> decoder, vocab and merges, special tokens as <c>added_tokens</c>), <c>tokenizer_config.json</c> (BOS,
/// EOS, pad and a ChatML chat template) and <c>special_tokens_map.json</c>.
/// </summary>
/// <remarks>The chat template renders each message exactly as the trace replay protocol does
/// (<c>SpecDecode.Replay.ProtocolTokenizer</c>): <c>"&lt;|im_start|&gt;" + role + "\n" + content + "&lt;|im_end|&gt;\n"</c>,
/// and with <c>add_generation_prompt</c> ends with <c>"&lt;|im_start|&gt;assistant\n"</c>. It adds no BOS. Merges are
/// written as <c>"left right"</c> strings (readable by every tokenizers version; byte-level tokens never hold a space).</remarks>
public static class TokenizerJsonWriter
{
    /// <summary>The ChatML chat template written to tokenizer_config.json.</summary>
    public const string ChatTemplate =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Writes the three tokenizer files into <paramref name="folder"/> (created if missing; files replaced).</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">A role in <paramref name="settings"/> names no special token of the vocabulary.</exception>
    public static void Write(string folder, BpeVocabulary vocabulary, TokenizerFilesSettings settings)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(settings);
        foreach (string? role in new[] { settings.BosToken, settings.EosToken, settings.PadToken })
        {
            if (role is not null && !vocabulary.SpecialTokens.Contains(role))
            {
                throw new ArgumentException($"'{role}' is not a special token of the vocabulary.", nameof(settings));
            }
        }

        Directory.CreateDirectory(folder);
        WriteJson(Path.Combine(folder, "tokenizer.json"), w => WriteTokenizer(w, vocabulary));
        WriteJson(Path.Combine(folder, "tokenizer_config.json"), w => WriteConfig(w, vocabulary, settings));
        WriteJson(Path.Combine(folder, "special_tokens_map.json"), w => WriteSpecialTokensMap(w, settings));
    }

    private static void WriteJson(string path, Action<Utf8JsonWriter> body)
    {
        using FileStream stream = File.Create(path);
        using var writer = new Utf8JsonWriter(stream, WriterOptions);
        body(writer);
    }

    private static void WriteTokenizer(Utf8JsonWriter w, BpeVocabulary vocabulary)
    {
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        for (int i = 0; i < vocabulary.SpecialTokens.Count; i++)
        {
            w.WriteStartObject();
            w.WriteNumber("id", vocabulary.Tokens.Count + i);
            w.WriteString("content", vocabulary.SpecialTokens[i]);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");

        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("pretokenizers");
        w.WriteStartObject();
        w.WriteString("type", "Split");
        w.WriteStartObject("pattern");
        w.WriteString("Regex", BpeTrainer.Llama3SplitPattern);
        w.WriteEndObject();
        w.WriteString("behavior", "Isolated");
        w.WriteBoolean("invert", false);
        w.WriteEndObject();
        w.WriteStartObject();
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", false);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteNull("post_processor");

        w.WriteStartObject("decoder");
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", true);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();

        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (int id = 0; id < vocabulary.Tokens.Count; id++)
        {
            w.WriteNumber(vocabulary.Tokens[id], id);
        }
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach ((string left, string right) in vocabulary.Merges)
        {
            w.WriteStringValue(left + " " + right);
        }
        w.WriteEndArray();
        w.WriteEndObject();

        w.WriteEndObject();
    }

    private static void WriteConfig(Utf8JsonWriter w, BpeVocabulary vocabulary, TokenizerFilesSettings settings)
    {
        w.WriteStartObject();
        w.WriteBoolean("add_bos_token", false);
        w.WriteBoolean("add_eos_token", false);
        w.WriteStartObject("added_tokens_decoder");
        for (int i = 0; i < vocabulary.SpecialTokens.Count; i++)
        {
            w.WriteStartObject((vocabulary.Tokens.Count + i).ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("content", vocabulary.SpecialTokens[i]);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteString("bos_token", settings.BosToken);
        w.WriteString("eos_token", settings.EosToken);
        if (settings.PadToken is not null)
        {
            w.WriteString("pad_token", settings.PadToken);
        }
        w.WriteString("chat_template", ChatTemplate);
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteNumber("model_max_length", settings.ModelMaxLength);
        w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        w.WriteEndObject();
    }

    private static void WriteSpecialTokensMap(Utf8JsonWriter w, TokenizerFilesSettings settings)
    {
        w.WriteStartObject();
        w.WriteString("bos_token", settings.BosToken);
        w.WriteString("eos_token", settings.EosToken);
        if (settings.PadToken is not null)
        {
            w.WriteString("pad_token", settings.PadToken);
        }
        w.WriteEndObject();
    }

    /// <summary>The vocabulary size of a folder's tokenizer.json: one past the largest id of the model's vocabulary and
    /// the added tokens (what a model trained with it needs as <c>vocab_size</c>).</summary>
    /// <exception cref="FileNotFoundException">The folder has no tokenizer.json.</exception>
    public static int VocabularySize(string folder)
    {
        string path = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{folder} has no tokenizer.json; run the tokenizer command first.", path);
        }
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        int max = doc.RootElement.GetProperty("model").GetProperty("vocab").EnumerateObject().Max(p => p.Value.GetInt32());
        if (doc.RootElement.TryGetProperty("added_tokens", out JsonElement added))
        {
            foreach (JsonElement token in added.EnumerateArray())
            {
                max = Math.Max(max, token.GetProperty("id").GetInt32());
            }
        }
        return max + 1;
    }
}
