using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tokenization;

/// <summary>
/// Loads the tokenizer of a Hugging Face checkpoint folder as a Microsoft.ML.Tokenizers <see cref="Tokenizer"/>, and
/// finds the ids of its special (added) tokens such as <c>&lt;|eot_id|&gt;</c>.
/// </summary>
public static class CheckpointTokenizer
{
    /// <summary>
    /// Loads the tokenizer in <paramref name="folder"/>, choosing by the files it holds:
    /// <list type="number">
    /// <item><c>tokenizer.json</c> describing a byte-level BPE (Llama 3, Qwen2, Qwen3, Mistral-Nemo, GPT-2): a
    /// <see cref="BpeTokenizer"/> with <see cref="BpeOptions.ByteLevel"/> on, or a <see cref="TiktokenTokenizer"/> when the
    /// model sets <c>ignore_merges</c> (Llama 3; see remarks). Merges may be written <c>"a b"</c> or <c>["a", "b"]</c>;
    /// the pre-tokenizer may be <c>Split</c> (Isolated), <c>Digits</c> and <c>ByteLevel</c> steps; the normalizer none,
    /// NFC, NFD, NFKC or NFKD; every entry of <c>added_tokens</c> becomes a special token, matched in text before
    /// splitting and encoded as one id.</item>
    /// <item>Otherwise <c>tokenizer.model</c> (SentencePiece; Llama 2, Mistral 7B): <see cref="LlamaTokenizer"/>, with the
    /// BOS, EOS and unknown pieces and any <c>added_tokens</c> of a <c>tokenizer.json</c> beside it as special tokens.</item>
    /// <item>Otherwise <c>vocab.json</c> + <c>merges.txt</c> (GPT-2's files): a byte-level <see cref="BpeTokenizer"/> with
    /// GPT-2's split pattern; special tokens from <c>added_tokens.json</c> and from <c>added_tokens_decoder</c> in
    /// <c>tokenizer_config.json</c>, when present.</item>
    /// </list>
    /// </summary>
    /// <remarks>
    /// <para>Encoding never adds BOS or EOS: the text is encoded as it is, as transformers does with
    /// <c>add_special_tokens=False</c>. The <c>post_processor</c> of tokenizer.json (e.g. Llama 3's template that puts
    /// <c>&lt;|begin_of_text|&gt;</c> first) is not applied, because chat-templated prompts already carry it; prepend the
    /// BOS id (config.json's <c>bos_token_id</c>, or <see cref="TryGetSpecialTokenId"/>) yourself where a raw prompt
    /// needs one. Special tokens written in the text are encoded as their single ids.</para>
    /// <para>Not honoured: the <c>lstrip</c>, <c>rstrip</c> and <c>single_word</c> flags of added tokens (the whitespace
    /// around such a token is encoded as ordinary text), and the <c>normalized</c> flag (added tokens are matched in the
    /// normalized text). Rejected with <see cref="TokenizerLoadException"/>: WordPiece, Unigram and WordLevel
    /// tokenizer.json files, BPE with <c>byte_fallback</c> or dropout, <c>ByteLevel</c> with <c>add_prefix_space</c>,
    /// Split behaviours other than Isolated, other normalizers and pre-tokenizers, and split patterns .NET cannot parse.
    /// A rejected tokenizer.json falls back to a tokenizer.model beside it only when the file is not a byte-level BPE at
    /// all (Llama 2's tokenizer.json is a SentencePiece-style BPE).</para>
    /// <para><c>ignore_merges</c> (Llama 3): a piece that is itself a vocabulary token becomes that token. That is
    /// tiktoken's rule and such files are conversions of tiktoken rank files, so they are encoded by the library's
    /// <see cref="TiktokenTokenizer"/> with id = rank, after checking that the merges are exactly the conversion's
    /// (every split of a token into two tokens is a merge, ordered by the merged token's id); other files with
    /// <c>ignore_merges</c> are rejected.</para>
    /// <para>A Unicode normalizer (Qwen2 and Qwen3 use NFC) needs ICU: in a process with <c>InvariantGlobalization</c>
    /// (this repository's Directory.Build.props default) <see cref="string.Normalize()"/> does nothing to non-ASCII text,
    /// so such a tokenizer.json is rejected there rather than loaded to encode decomposed text differently.</para>
    /// <para>Split patterns are Oniguruma regexes compiled by .NET's engine; the patterns of the models named above
    /// parse unchanged, but <c>\s</c> and the Unicode classes follow .NET's tables.</para>
    /// </remarks>
    /// <param name="folder">The checkpoint folder.</param>
    /// <returns>The tokenizer; it is safe to use from several threads.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="folder"/> is null.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="TokenizerLoadException">No tokenizer file, a malformed one, or a kind or setting not supported;
    /// the message names the file and says to build a tokenizer and pass it in instead.</exception>
    public static Tokenizer Load(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException("checkpoint folder not found: " + folder);
        }

        string tokenizerJson = Path.Combine(folder, "tokenizer.json");
        string sentencePiece = Path.Combine(folder, "tokenizer.model");
        string vocabJson = Path.Combine(folder, "vocab.json");
        string mergesTxt = Path.Combine(folder, "merges.txt");

        if (File.Exists(tokenizerJson))
        {
            using JsonDocument document = ParseJson(tokenizerJson);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new TokenizerLoadException(tokenizerJson, "is not a JSON object.");
            }

            try
            {
                string? whyNot = HuggingFaceTokenizerJson.WhyNotByteLevelBpe(root);
                if (whyNot is null)
                {
                    return HuggingFaceTokenizerJson.Create(root, tokenizerJson);
                }

                if (File.Exists(sentencePiece))
                {
                    return LoadSentencePiece(sentencePiece, HuggingFaceTokenizerJson.ReadAddedTokens(root, tokenizerJson));
                }

                throw new TokenizerLoadException(tokenizerJson, $"cannot be read: {whyNot}.");
            }
            catch (InvalidOperationException e)
            {
                // JsonElement throws this for a value of another JSON type than the reader asked for, and for a string
                // escape that is not valid UTF-16; either way the file is malformed.
                throw new TokenizerLoadException(tokenizerJson, "holds a value of an unexpected JSON type or an invalid string: " + e.Message, e);
            }
        }

        if (File.Exists(sentencePiece))
        {
            return LoadSentencePiece(sentencePiece, ReadSlowAddedTokens(folder));
        }

        if (File.Exists(vocabJson) || File.Exists(mergesTxt))
        {
            return LoadVocabAndMerges(folder, vocabJson, mergesTxt);
        }

        throw new TokenizerLoadException(folder,
            "holds no tokenizer file (tokenizer.json, tokenizer.model, or vocab.json with merges.txt).");
    }

    /// <summary>
    /// Finds the id of the special token <paramref name="token"/> (e.g. <c>"&lt;|eot_id|&gt;"</c>) in any tokenizer whose
    /// special tokens Microsoft.ML.Tokenizers exposes: <see cref="BpeTokenizer"/>, <see cref="TiktokenTokenizer"/>,
    /// <see cref="CodeGenTokenizer"/> and <see cref="SentencePieceTokenizer"/> (whose BOS, EOS and unknown pieces count
    /// too), so it also works on a tokenizer passed in rather than loaded.
    /// </summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="token">The token's text, compared ordinally.</param>
    /// <param name="id">The id when found; -1 otherwise.</param>
    /// <returns>Whether <paramref name="token"/> is one of the tokenizer's special tokens.</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public static bool TryGetSpecialTokenId(Tokenizer tokenizer, string token, out int id)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(token);

        IReadOnlyDictionary<string, int>? special = tokenizer switch
        {
            BpeTokenizer bpe => bpe.SpecialTokens,
            TiktokenTokenizer tiktoken => tiktoken.SpecialTokens,
            CodeGenTokenizer codeGen => codeGen.SpecialTokens,
            SentencePieceTokenizer sentencePiece => sentencePiece.SpecialTokens,
            _ => null,
        };
        if (special is not null && special.TryGetValue(token, out id))
        {
            return true;
        }

        if (tokenizer is SentencePieceTokenizer sp)
        {
            (string? text, int value) = token == sp.BeginningOfSentenceToken ? (sp.BeginningOfSentenceToken, sp.BeginningOfSentenceId)
                : token == sp.EndOfSentenceToken ? (sp.EndOfSentenceToken, sp.EndOfSentenceId)
                : token == sp.UnknownToken ? (sp.UnknownToken, sp.UnknownId)
                : (null, -1);
            if (text is not null)
            {
                id = value;
                return true;
            }
        }

        id = -1;
        return false;
    }

    private static Tokenizer LoadSentencePiece(string path, Dictionary<string, int> added)
    {
        try
        {
            byte[] model = File.ReadAllBytes(path);
            LlamaTokenizer plain;
            using (var stream = new MemoryStream(model, writable: false))
            {
                plain = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
            }

            var special = new Dictionary<string, int>(added, StringComparer.Ordinal);
            special.TryAdd(plain.BeginningOfSentenceToken, plain.BeginningOfSentenceId);
            special.TryAdd(plain.EndOfSentenceToken, plain.EndOfSentenceId);
            special.TryAdd(plain.UnknownToken, plain.UnknownId);

            using var again = new MemoryStream(model, writable: false);
            return LlamaTokenizer.Create(again, addBeginOfSentence: false, addEndOfSentence: false, specialTokens: special);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new TokenizerLoadException(path, "is not a SentencePiece model Microsoft.ML.Tokenizers' LlamaTokenizer can read: " + e.Message, e);
        }
    }

    private static Tokenizer LoadVocabAndMerges(string folder, string vocabJson, string mergesTxt)
    {
        if (!File.Exists(vocabJson) || !File.Exists(mergesTxt))
        {
            string missing = File.Exists(vocabJson) ? mergesTxt : vocabJson;
            throw new TokenizerLoadException(missing, "is missing; a byte-level BPE needs both vocab.json and merges.txt.");
        }

        Dictionary<string, int> vocab = ReadTokenIds(vocabJson);

        var merges = new List<(string, string)>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(mergesTxt))
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal)))
            {
                continue;
            }

            string[] parts = line.Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
            {
                throw new TokenizerLoadException(mergesTxt, $"line {lineNumber} (\"{line}\") is not two tokens separated by one space.");
            }

            merges.Add((parts[0], parts[1]));
        }

        Dictionary<string, int> added = ReadSlowAddedTokens(folder);
        var preTokenizer = new IsolatingPreTokenizer([HuggingFaceTokenizerJson.CompilePattern(HuggingFaceTokenizerJson.Gpt2Pattern, vocabJson)], added.Keys);
        return HuggingFaceTokenizerJson.CreateByteLevelBpe(
            vocab, merges, added, new HuggingFaceTokenizerJson.BpeSettings(null, null, null, false), preTokenizer, normalizer: null, mergesTxt);
    }

    /// <summary>A JSON object of token to integer id (<c>vocab.json</c>, <c>added_tokens.json</c>).</summary>
    /// <exception cref="TokenizerLoadException">The file is not such an object, or an entry has no integer id.</exception>
    private static Dictionary<string, int> ReadTokenIds(string path)
    {
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        using JsonDocument document = ParseJson(path);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerLoadException(path, "is not a JSON object of token to id.");
        }

        foreach (JsonProperty entry in document.RootElement.EnumerateObject())
        {
            ids[entry.Name] = entry.Value.ValueKind == JsonValueKind.Number && entry.Value.TryGetInt32(out int id)
                ? id
                : throw new TokenizerLoadException(path, $"the entry \"{entry.Name}\" has no integer id.");
        }

        return ids;
    }

    /// <summary>The added tokens of the "slow" tokenizer files: <c>added_tokens.json</c> (content to id) and
    /// <c>added_tokens_decoder</c> (id to {content}) in <c>tokenizer_config.json</c>.</summary>
    private static Dictionary<string, int> ReadSlowAddedTokens(string folder)
    {
        string addedJson = Path.Combine(folder, "added_tokens.json");
        Dictionary<string, int> added = File.Exists(addedJson) ? ReadTokenIds(addedJson) : new(StringComparer.Ordinal);

        string configJson = Path.Combine(folder, "tokenizer_config.json");
        if (File.Exists(configJson))
        {
            using JsonDocument document = ParseJson(configJson);
            if (document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("added_tokens_decoder", out JsonElement decoder)
                && decoder.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty entry in decoder.EnumerateObject())
                {
                    if (!int.TryParse(entry.Name, out int id) || entry.Value.ValueKind != JsonValueKind.Object
                        || !entry.Value.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
                    {
                        throw new TokenizerLoadException(configJson, $"the added_tokens_decoder entry \"{entry.Name}\" is not an id with a string \"content\".");
                    }

                    added.TryAdd(content.GetString()!, id);
                }
            }
        }

        return added;
    }

    private static JsonDocument ParseJson(string path)
    {
        try
        {
            byte[] bytes = File.ReadAllBytes(path);
            // JsonDocument checks UTF-8 only when a string is read; a file that is not UTF-8 is refused here, by position.
            if (System.Text.Unicode.Utf8.ToUtf16(bytes, new char[bytes.Length], out int valid, out _, replaceInvalidSequences: false)
                == System.Buffers.OperationStatus.InvalidData)
            {
                throw new TokenizerLoadException(path, $"is not valid UTF-8 (byte {valid}).");
            }
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException(path, "is not valid JSON: " + e.Message, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException(path, "cannot be read: " + e.Message, e);
        }
    }
}
