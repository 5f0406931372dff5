using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tokenization;

/// <summary>
/// Reads a Hugging Face <c>tokenizer.json</c> (the tokenizers library's serialization) that describes a byte-level BPE
/// and builds the matching Microsoft.ML.Tokenizers tokenizer: <see cref="BpeTokenizer"/> with
/// <see cref="BpeOptions.ByteLevel"/>, or <see cref="TiktokenTokenizer"/> when the file asks for <c>ignore_merges</c>.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1 has no reader for <c>tokenizer.json</c>, so this glue is hand-written: it only maps the
/// file's fields onto the library's own BPE, tiktoken, pre-tokenizer and normalizer types and does no BPE itself. Every
/// field that changes how text is encoded is either honoured or rejected with a <see cref="TokenizerLoadException"/>;
/// none is silently dropped. Two deliberate exceptions, documented on <see cref="CheckpointTokenizer.Load"/>: the
/// post-processor (BOS/EOS template) is not applied, and the <c>lstrip</c>/<c>rstrip</c>/<c>single_word</c> flags of added
/// tokens are not honoured.
/// </remarks>
internal static class HuggingFaceTokenizerJson
{
    /// <summary>GPT-2's split pattern, used by the <c>ByteLevel</c> pre-tokenizer when <c>use_regex</c> is true.</summary>
    internal const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>The <c>added_tokens</c> (special or not) as content to id; empty when there are none.</summary>
    /// <exception cref="TokenizerLoadException">The list is malformed or repeats a content.</exception>
    public static Dictionary<string, int> ReadAddedTokens(JsonElement root, string path)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        if (!root.TryGetProperty("added_tokens", out JsonElement list) || list.ValueKind == JsonValueKind.Null)
        {
            return added;
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerLoadException(path, "\"added_tokens\" is not an array.");
        }

        foreach (JsonElement token in list.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object
                || !token.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String
                || !token.TryGetProperty("id", out JsonElement id) || id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int tokenId))
            {
                throw new TokenizerLoadException(path, "an entry of \"added_tokens\" lacks a string \"content\" or an integer \"id\".");
            }

            if (!added.TryAdd(content.GetString()!, tokenId))
            {
                throw new TokenizerLoadException(path, $"\"added_tokens\" lists \"{content.GetString()}\" twice.");
            }
        }

        return added;
    }

    /// <summary>Why the file is not a byte-level BPE (its model type, or the lack of a <c>ByteLevel</c> pre-tokenizer),
    /// or null when it is one and <see cref="Create"/> should be tried.</summary>
    public static string? WhyNotByteLevelBpe(JsonElement root)
    {
        if (!root.TryGetProperty("model", out JsonElement model) || model.ValueKind != JsonValueKind.Object)
        {
            return "it has no \"model\" object";
        }

        string type = model.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()!
            : model.TryGetProperty("merges", out _) ? "BPE" : "(no type)";
        if (type != "BPE")
        {
            return $"its model is {type}, and only byte-level BPE models are read from tokenizer.json";
        }

        return root.TryGetProperty("pre_tokenizer", out JsonElement pre) && HasByteLevel(pre)
            ? null
            : "its BPE model is not byte-level (no ByteLevel pre-tokenizer; e.g. a SentencePiece-style BPE with byte_fallback)";

        static bool HasByteLevel(JsonElement e) =>
            e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String
            && (type.GetString() == "ByteLevel"
                || (type.GetString() == "Sequence" && e.TryGetProperty("pretokenizers", out JsonElement steps)
                    && steps.ValueKind == JsonValueKind.Array && steps.EnumerateArray().Any(HasByteLevel)));
    }

    /// <summary>Builds the tokenizer of a byte-level BPE <c>tokenizer.json</c> (<see cref="WhyNotByteLevelBpe"/> returned
    /// null for it).</summary>
    /// <exception cref="TokenizerLoadException">A field is malformed, inconsistent or asks for behaviour not implemented.</exception>
    public static Tokenizer Create(JsonElement root, string path)
    {
        Dictionary<string, int> added = ReadAddedTokens(root, path);
        List<Regex> levels = ReadPreTokenizer(root.GetProperty("pre_tokenizer"), path);
        Normalizer? normalizer = root.TryGetProperty("normalizer", out JsonElement n) ? ReadNormalizer(n, path) : null;

        JsonElement model = root.GetProperty("model");
        if (OptionalDouble(model, "dropout", path) is double dropout && dropout != 0)
        {
            throw new TokenizerLoadException(path, $"the BPE model has dropout {dropout}, which makes encoding random; only dropout null or 0 is supported.");
        }

        if (OptionalBool(model, "byte_fallback", path) == true)
        {
            throw new TokenizerLoadException(path, "the BPE model sets byte_fallback, which Microsoft.ML.Tokenizers' BpeTokenizer does not implement.");
        }

        Dictionary<string, int> vocab = ReadVocab(model, path);
        List<(string Left, string Right)> merges = ReadMerges(model, path);
        var settings = new BpeSettings(
            UnknownToken: EmptyAsNull(OptionalString(model, "unk_token", path)),
            ContinuingSubwordPrefix: EmptyAsNull(OptionalString(model, "continuing_subword_prefix", path)),
            EndOfWordSuffix: EmptyAsNull(OptionalString(model, "end_of_word_suffix", path)),
            FuseUnknownTokens: OptionalBool(model, "fuse_unk", path) ?? false);

        var preTokenizer = new IsolatingPreTokenizer(levels, added.Keys);
        return OptionalBool(model, "ignore_merges", path) == true
            ? CreateTiktoken(vocab, merges, added, settings, preTokenizer, normalizer, path)
            : CreateByteLevelBpe(vocab, merges, added, settings, preTokenizer, normalizer, path);
    }

    /// <summary>The settings of the tokenizers library's BPE model that <see cref="BpeOptions"/> also has.</summary>
    internal readonly record struct BpeSettings(string? UnknownToken, string? ContinuingSubwordPrefix, string? EndOfWordSuffix, bool FuseUnknownTokens);

    /// <summary>A byte-level <see cref="BpeTokenizer"/> over <paramref name="vocab"/> and <paramref name="merges"/>
    /// (merge priority = list order), with <paramref name="added"/> as its special tokens.</summary>
    /// <exception cref="TokenizerLoadException">The library rejects the data (e.g. a merge of a token not in the vocabulary).</exception>
    internal static BpeTokenizer CreateByteLevelBpe(
        Dictionary<string, int> vocab, List<(string Left, string Right)> merges, Dictionary<string, int> added,
        BpeSettings settings, PreTokenizer preTokenizer, Normalizer? normalizer, string path)
    {
        foreach ((string left, string right) in merges)
        {
            if (left.Contains(' ') || right.Contains(' '))
            {
                throw new TokenizerLoadException(path, $"the merge (\"{left}\", \"{right}\") has a token with a space in it, which BpeOptions cannot represent.");
            }
        }

        var options = new BpeOptions(vocab)
        {
            Merges = merges.Select(m => m.Left + " " + m.Right),
            SpecialTokens = added.Count == 0 ? null : added,
            PreTokenizer = preTokenizer,
            Normalizer = normalizer,
            UnknownToken = settings.UnknownToken,
            ContinuingSubwordPrefix = settings.ContinuingSubwordPrefix,
            EndOfWordSuffix = settings.EndOfWordSuffix,
            FuseUnknownTokens = settings.FuseUnknownTokens,
            ByteLevel = true,
        };
        try
        {
            return BpeTokenizer.Create(options);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new TokenizerLoadException(path, "Microsoft.ML.Tokenizers rejected the BPE vocabulary and merges: " + e.Message, e);
        }
    }

    /// <summary>
    /// <c>ignore_merges: true</c> (Llama 3): a piece that is itself in the vocabulary becomes that one token, whatever the
    /// merges would give. That is tiktoken's rule, and such files are conversions of tiktoken vocabularies, so they are
    /// encoded with the library's <see cref="TiktokenTokenizer"/> (id = rank), after checking that the merges are exactly
    /// what the conversion produces (every split of a token into two tokens is a merge, ordered by the merged token's
    /// id) — the condition under which merging by list order and tiktoken's merging by rank agree.
    /// </summary>
    private static TiktokenTokenizer CreateTiktoken(
        Dictionary<string, int> vocab, List<(string Left, string Right)> merges, Dictionary<string, int> added,
        BpeSettings settings, PreTokenizer preTokenizer, Normalizer? normalizer, string path)
    {
        const string why = "the BPE model sets ignore_merges, which is only read for tiktoken-derived vocabularies (Llama 3 style), and ";
        if (settings.UnknownToken is not null || settings.ContinuingSubwordPrefix is not null || settings.EndOfWordSuffix is not null)
        {
            throw new TokenizerLoadException(path, why + "this one also sets unk_token, continuing_subword_prefix or end_of_word_suffix.");
        }

        int previous = int.MinValue;
        var mergeSet = new HashSet<string>(merges.Count, StringComparer.Ordinal);
        foreach ((string left, string right) in merges)
        {
            if (!vocab.TryGetValue(left, out int l) || !vocab.TryGetValue(right, out int r) || !vocab.TryGetValue(left + right, out int merged))
            {
                throw new TokenizerLoadException(path, $"the merge (\"{left}\", \"{right}\") uses or makes a token that is not in the vocabulary.");
            }

            if (merged < previous || l >= merged || r >= merged)
            {
                throw new TokenizerLoadException(path, why + $"its merges are not ordered by the merged token's id (at \"{left}\" + \"{right}\").");
            }

            previous = merged;
            mergeSet.Add(left + "\n" + right);
        }

        var lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        var stream = new MemoryStream();
        using (var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true))
        {
            var usedBytes = new HashSet<string>(StringComparer.Ordinal);
            foreach ((string token, int id) in vocab)
            {
                if (!ByteLevelAlphabet.TryGetBytes(token, out byte[] bytes))
                {
                    throw new TokenizerLoadException(path, $"the vocabulary entry \"{token}\" has a character outside the byte-level alphabet.");
                }

                for (int i = 1; i < token.Length; i++)
                {
                    if (lookup.ContainsKey(token.AsSpan(0, i)) && lookup.ContainsKey(token.AsSpan(i))
                        && !mergeSet.Contains(string.Concat(token.AsSpan(0, i), "\n", token.AsSpan(i))))
                    {
                        throw new TokenizerLoadException(path, why + $"its merges lack (\"{token[..i]}\", \"{token[i..]}\") although both halves and \"{token}\" are tokens.");
                    }
                }

                string base64 = Convert.ToBase64String(bytes);
                usedBytes.Add(base64);
                writer.Write(base64);
                writer.Write(' ');
                writer.Write(id);
                writer.Write('\n');
            }

            // The added tokens also go into the rank file, so that the tokenizer maps their text to their id through its
            // vocabulary; TiktokenTokenizer otherwise keeps special tokens only in its LRU cache, which can evict them.
            foreach ((string content, int id) in added)
            {
                string base64 = Convert.ToBase64String(Encoding.UTF8.GetBytes(content));
                if (usedBytes.Add(base64))
                {
                    writer.Write(base64);
                    writer.Write(' ');
                    writer.Write(id);
                    writer.Write('\n');
                }
            }
        }

        stream.Position = 0;
        try
        {
            return TiktokenTokenizer.Create(stream, preTokenizer, normalizer, added.Count == 0 ? null : added);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or FormatException)
        {
            throw new TokenizerLoadException(path, "Microsoft.ML.Tokenizers rejected the vocabulary as a tiktoken rank list: " + e.Message, e);
        }
    }

    /// <summary>Compiles one split pattern of the tokenizers library (Oniguruma syntax) as a .NET regex.</summary>
    /// <exception cref="TokenizerLoadException">.NET cannot parse it (e.g. possessive quantifiers).</exception>
    internal static Regex CompilePattern(string pattern, string path)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled);
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException(path, $"the split pattern \"{pattern}\" is not a valid .NET regular expression: {e.Message}", e);
        }
    }

    private static List<Regex> ReadPreTokenizer(JsonElement pre, string path)
    {
        var levels = new List<Regex>();
        bool byteLevelSeen = false;
        Visit(pre);
        return levels;

        void Visit(JsonElement step)
        {
            string type = RequiredString(step, "type", path);
            if (byteLevelSeen)
            {
                throw new TokenizerLoadException(path, $"the pre-tokenizer has a {type} step after its ByteLevel step; only ByteLevel as the last step is supported.");
            }

            switch (type)
            {
                case "Sequence":
                    if (!step.TryGetProperty("pretokenizers", out JsonElement steps) || steps.ValueKind != JsonValueKind.Array)
                    {
                        throw new TokenizerLoadException(path, "a Sequence pre-tokenizer lacks its \"pretokenizers\" array.");
                    }

                    foreach (JsonElement s in steps.EnumerateArray())
                    {
                        Visit(s);
                    }

                    break;
                case "Split":
                    if (!step.TryGetProperty("pattern", out JsonElement pattern) || pattern.ValueKind != JsonValueKind.Object)
                    {
                        throw new TokenizerLoadException(path, "a Split pre-tokenizer lacks its \"pattern\" object.");
                    }

                    string behavior = RequiredString(step, "behavior", path);
                    if (behavior != "Isolated" || OptionalBool(step, "invert", path) == true)
                    {
                        throw new TokenizerLoadException(path, $"a Split pre-tokenizer has behavior {behavior} (invert {OptionalBool(step, "invert", path) ?? false}); only Isolated without invert is supported.");
                    }

                    levels.Add(pattern.TryGetProperty("Regex", out JsonElement regex) && regex.ValueKind == JsonValueKind.String
                        ? CompilePattern(regex.GetString()!, path)
                        : pattern.TryGetProperty("String", out JsonElement literal) && literal.ValueKind == JsonValueKind.String
                            ? CompilePattern(Regex.Escape(literal.GetString()!), path)
                            : throw new TokenizerLoadException(path, "a Split pattern has neither a \"Regex\" nor a \"String\"."));
                    break;
                case "Digits":
                    levels.Add(CompilePattern(OptionalBool(step, "individual_digits", path) == true ? @"\p{N}" : @"\p{N}+", path));
                    break;
                case "ByteLevel":
                    // The tokenizers library's default for add_prefix_space is true.
                    if (OptionalBool(step, "add_prefix_space", path) ?? true)
                    {
                        throw new TokenizerLoadException(path, "the ByteLevel pre-tokenizer sets add_prefix_space, which is not supported.");
                    }

                    if (OptionalBool(step, "use_regex", path) ?? true)
                    {
                        levels.Add(CompilePattern(Gpt2Pattern, path));
                    }

                    byteLevelSeen = true;
                    break;
                default:
                    throw new TokenizerLoadException(path, $"the pre-tokenizer step {type} is not supported (only Sequence, Split, Digits and ByteLevel are).");
            }
        }
    }

    private static Normalizer? ReadNormalizer(JsonElement normalizer, string path)
    {
        if (normalizer.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        string type = RequiredString(normalizer, "type", path);
        if (type == "Sequence")
        {
            JsonElement[] steps = normalizer.TryGetProperty("normalizers", out JsonElement list) && list.ValueKind == JsonValueKind.Array
                ? list.EnumerateArray().ToArray()
                : throw new TokenizerLoadException(path, "a Sequence normalizer lacks its \"normalizers\" array.");
            return steps.Length switch
            {
                0 => null,
                1 => ReadNormalizer(steps[0], path),
                _ => throw new TokenizerLoadException(path, "a Sequence of several normalizers is not supported."),
            };
        }

        NormalizationForm form = type switch
        {
            "NFC" => NormalizationForm.FormC,
            "NFD" => NormalizationForm.FormD,
            "NFKC" => NormalizationForm.FormKC,
            "NFKD" => NormalizationForm.FormKD,
            _ => throw new TokenizerLoadException(path, $"the normalizer {type} is not supported (only NFC, NFD, NFKC and NFKD are)."),
        };
        if (!UnicodeNormalizer.IsAvailable(form))
        {
            throw new TokenizerLoadException(path,
                $"the normalizer {type} needs Unicode normalization, which this process lacks: it runs with InvariantGlobalization, " +
                "where string.Normalize leaves non-ASCII text unchanged. Run with <InvariantGlobalization>false</InvariantGlobalization> " +
                "(and ICU installed), or, if your text is known to be normalized already, remove the normalizer from a copy of the file.");
        }

        return new UnicodeNormalizer(form);
    }

    private static Dictionary<string, int> ReadVocab(JsonElement model, string path)
    {
        if (!model.TryGetProperty("vocab", out JsonElement vocab) || vocab.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerLoadException(path, "the BPE model lacks its \"vocab\" object.");
        }

        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id))
            {
                throw new TokenizerLoadException(path, $"the vocabulary entry \"{entry.Name}\" has no integer id.");
            }

            result[entry.Name] = id;
        }

        return result;
    }

    private static List<(string Left, string Right)> ReadMerges(JsonElement model, string path)
    {
        if (!model.TryGetProperty("merges", out JsonElement merges) || merges.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerLoadException(path, "the BPE model lacks its \"merges\" array.");
        }

        var result = new List<(string, string)>(merges.GetArrayLength());
        int index = 0;
        foreach (JsonElement merge in merges.EnumerateArray())
        {
            if (merge.ValueKind == JsonValueKind.String)
            {
                // the older form, "left right"
                string[] parts = merge.GetString()!.Split(' ');
                if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                {
                    throw new TokenizerLoadException(path, $"merge {index} (\"{merge.GetString()}\") is not two tokens separated by one space.");
                }

                result.Add((parts[0], parts[1]));
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                     && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                // the newer form, ["left", "right"]
                result.Add((merge[0].GetString()!, merge[1].GetString()!));
            }
            else
            {
                throw new TokenizerLoadException(path, $"merge {index} is neither \"left right\" nor [\"left\", \"right\"].");
            }

            index++;
        }

        return result;
    }

    private static string RequiredString(JsonElement e, string name, string path) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()!
            : throw new TokenizerLoadException(path, $"a component lacks its string \"{name}\".");

    private static string? OptionalString(JsonElement e, string name, string path) =>
        !e.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : throw new TokenizerLoadException(path, $"\"{name}\" is not a string.");

    private static bool? OptionalBool(JsonElement e, string name, string path) =>
        !e.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
        : throw new TokenizerLoadException(path, $"\"{name}\" is not a boolean.");

    private static double? OptionalDouble(JsonElement e, string name, string path) =>
        !e.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number ? v.GetDouble()
        : throw new TokenizerLoadException(path, $"\"{name}\" is not a number.");

    private static string? EmptyAsNull(string? s) => string.IsNullOrEmpty(s) ? null : s;
}
