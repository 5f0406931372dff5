using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tokenization.Tests;

/// <summary>
/// CheckpointTokenizer on small synthetic checkpoint folders written by the tests. The vocabulary is byte-level: the 256
/// single bytes, each with id = byte value (so 'h' = 104 and a space, written 'Ġ', = 32), then the merged tokens from
/// id 256 on. Expected ids are worked out by hand from the BPE rule: in each pre-tokenized piece, repeatedly apply the
/// adjacent pair with the earliest merge in the list, leftmost first.
/// </summary>
public sealed class TokenizerTests : IDisposable
{
    // Llama 3's split pattern.
    private const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    // Merge list, in priority order, producing ids 256.. in this order.
    private static readonly (string Left, string Right)[] HelloMerges =
    [
        ("l", "l"),      // 256 ll
        ("h", "e"),      // 257 he
        ("Ġ", "w"),      // 258 Ġw
        ("he", "ll"),    // 259 hell
        ("o", "r"),      // 260 or
        ("Ġw", "or"),    // 261 Ġwor
        ("hell", "o"),   // 262 hello
        ("1", "2"),      // 263 12
        ("3", "4"),      // 264 34
    ];

    // "hello": h e l l o -> ll (rank 0) -> he (1) -> hell (3) -> hello (6) = [262].
    // " world": Ġ w o r l d -> Ġw (2) -> or (4) -> Ġwor (5); no merge for (Ġwor, l) or (l, d) = [261, 108, 100].
    private static readonly int[] HelloWorldIds = [262, 261, 108, 100];

    private const int EotId = 300;
    private const int BeginId = 301;

    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-tok-" + Guid.NewGuid().ToString("N"));

    public TokenizerTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    // ---------- byte-level BPE from tokenizer.json ----------

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TokenizerJson_BothMergeStyles_EncodeByTheMergeRules(bool arrayMerges)
    {
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizerJson(HelloMerges, arrayMerges));

        Assert.IsType<BpeTokenizer>(tokenizer);
        Assert.Equal(HelloWorldIds, tokenizer.EncodeToIds("hello world"));
        // without the final merge's last letter: h e l l -> ll -> he -> hell = [259]
        Assert.Equal([259], tokenizer.EncodeToIds("hell"));
        // no BOS or EOS is ever added
        Assert.Equal([104], tokenizer.EncodeToIds("h"));
    }

    [Fact]
    public void TokenizerJson_SplitPatternIsApplied()
    {
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizerJson(HelloMerges));

        // \p{N}{1,3} splits "1234" into "123" and "4": "123" -> 12 (merge "1 2") then 3 = [263, 51]; "4" = [52].
        // Without the split, (1,2) and (3,4) would both merge: [263, 264].
        Assert.Equal([263, 51, 52], tokenizer.EncodeToIds("1234"));
        // "hello" and "hello" separated by a space: the space joins the second word ("Ġhello" has no merge for (Ġ, h)).
        Assert.Equal([262, 32, 262], tokenizer.EncodeToIds("hello hello"));
    }

    [Fact]
    public void TokenizerJson_MergeOrderDecides()
    {
        // Giving (e, l) the highest priority changes how "hello" is cut, although "hell" would be reachable otherwise.
        (string, string)[] merges =
        [
            ("e", "l"),      // 256 el
            ("l", "l"),      // 257 ll
            ("h", "e"),      // 258 he
        ];
        string folder = WriteTokenizerJson(merges);
        Tokenizer tokenizer = CheckpointTokenizer.Load(folder);

        // h e l l o: candidates (h,e) rank 2, (e,l) rank 0, (l,l) rank 1 -> el first: h el l o;
        // then (h,el) none, (el,l) none, (l,o) none -> [104, 256, 108, 111]
        Assert.Equal([104, 256, 108, 111], tokenizer.EncodeToIds("hello"));
    }

    [Fact]
    public void TokenizerJson_SpecialTokensAreOneIdAndFindable()
    {
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizerJson(HelloMerges));

        Assert.Equal([BeginId, 262, EotId, 261, 108, 100], tokenizer.EncodeToIds("<|begin_of_text|>hello<|eot_id|> world"));
        Assert.True(CheckpointTokenizer.TryGetSpecialTokenId(tokenizer, "<|eot_id|>", out int eot));
        Assert.Equal(EotId, eot);
        Assert.True(CheckpointTokenizer.TryGetSpecialTokenId(tokenizer, "<|begin_of_text|>", out int begin));
        Assert.Equal(BeginId, begin);
        Assert.False(CheckpointTokenizer.TryGetSpecialTokenId(tokenizer, "hello", out int none));
        Assert.Equal(-1, none);
    }

    [Theory]
    [InlineData("hello world")]
    [InlineData("<|begin_of_text|>hello<|eot_id|> world\n")]
    [InlineData("héllo wörld, 12345 — ünïcode 🙂\r\n\ttabs  and   spaces")]
    public void TokenizerJson_DecodeRoundTrips(string text)
    {
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizerJson(HelloMerges));

        Assert.Equal(text, tokenizer.Decode(tokenizer.EncodeToIds(text)));
    }

    [Fact]
    public void TokenizerJson_MultiByteCharactersBecomeTheirUtf8Bytes()
    {
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizerJson(HelloMerges));

        // é is UTF-8 C3 A9; the newline is byte 10 (written 'Ċ' in the vocabulary).
        Assert.Equal([0xC3, 0xA9, 10], tokenizer.EncodeToIds("é\n"));
    }

    [Fact]
    public void TokenizerJson_NfcNormalizer_IsAppliedOrRefused()
    {
        string folder = WriteTokenizerJson(HelloMerges, mutate: root => root["normalizer"] = new JsonObject { ["type"] = "NFC" });

        if ("e\u0301".Normalize() == "\u00e9")
        {
            // "e" + U+0301 (combining acute) composes to é = C3 A9 under NFC; unnormalized it is [101, 0xCC, 0x81].
            Assert.Equal([0xC3, 0xA9], CheckpointTokenizer.Load(folder).EncodeToIds("e\u0301"));
        }
        else
        {
            // Globalization-invariant mode (this repository's default): string.Normalize leaves the text unchanged, so
            // the loader refuses rather than encode decomposed text differently from the checkpoint's tokenizer.
            var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
            Assert.Contains("the normalizer NFC needs Unicode normalization", e.Message);
            Assert.Contains("InvariantGlobalization", e.Message);
        }

        Assert.Equal([101, 0xCC, 0x81], CheckpointTokenizer.Load(WriteTokenizerJson(HelloMerges)).EncodeToIds("e\u0301"));
    }

    [Fact]
    public void TokenizerJson_ByteLevelWithRegex_UsesGpt2Split()
    {
        // GPT-2's tokenizer.json: a lone ByteLevel pre-tokenizer with use_regex. Its pattern splits "hello1234" into
        // "hello" and "1234" (digits in one run, unlike Llama 3's groups of three): [262] + 1 2 3 4 -> 12, 34 = [263, 264].
        string folder = WriteTokenizerJson(HelloMerges, mutate: root => root["pre_tokenizer"] = ByteLevelStep(useRegex: true));
        Tokenizer tokenizer = CheckpointTokenizer.Load(folder);

        Assert.Equal([262, 263, 264], tokenizer.EncodeToIds("hello1234"));
        Assert.Equal(HelloWorldIds, tokenizer.EncodeToIds("hello world"));
    }

    // ---------- ignore_merges (Llama 3) ----------

    // A tiktoken-like vocabulary: every token is a merge of two earlier ones, merges ordered by the merged id, and every
    // split of a token into two tokens listed. "abcde" is a token (abcde = a + bcde), but BPE on the word "abcde" never
    // reaches it: a b c d e -> ab (256) -> de (257) -> [ab, c, de], and neither "abc" nor "cde" is a token.
    private static readonly (string, string)[] TiktokenMerges =
    [
        ("a", "b"),       // 256 ab
        ("d", "e"),       // 257 de
        ("b", "c"),       // 258 bc
        ("bc", "de"),     // 259 bcde
        ("a", "bcde"),    // 260 abcde
    ];

    [Fact]
    public void IgnoreMerges_WholeWordInVocabularyIsOneToken()
    {
        Tokenizer merging = CheckpointTokenizer.Load(WriteTokenizerJson(TiktokenMerges));
        Tokenizer ignoring = CheckpointTokenizer.Load(WriteTokenizerJson(TiktokenMerges, ignoreMerges: true));

        Assert.IsType<BpeTokenizer>(merging);
        Assert.IsType<TiktokenTokenizer>(ignoring);
        Assert.Equal([256, 99, 257], merging.EncodeToIds("abcde"));
        Assert.Equal([260], ignoring.EncodeToIds("abcde"));
        // "xabcde" is not a token, so both merge, and agree: x a b c d e -> ab -> de -> [x, ab, c, de]
        Assert.Equal([120, 256, 99, 257], merging.EncodeToIds("xabcde"));
        Assert.Equal([120, 256, 99, 257], ignoring.EncodeToIds("xabcde"));
        // special tokens and decoding on the tiktoken path
        Assert.Equal([260, EotId, 260], ignoring.EncodeToIds("abcde<|eot_id|>abcde"));
        // " abcde" is one piece (the space joins the word) and "Ġabcde" is no token: Ġ a b c d e -> [Ġ, ab, c, de]
        Assert.Equal([EotId, 32, 256, 99, 257], ignoring.EncodeToIds("<|eot_id|> abcde"));
        Assert.True(CheckpointTokenizer.TryGetSpecialTokenId(ignoring, "<|eot_id|>", out int eot));
        Assert.Equal(EotId, eot);
        Assert.Equal("abcde<|eot_id|> héllo\n", ignoring.Decode(ignoring.EncodeToIds("abcde<|eot_id|> héllo\n")));
    }

    [Fact]
    public void IgnoreMerges_SpecialTokensSurviveManyDistinctWords()
    {
        // TiktokenTokenizer keeps special tokens in an LRU cache of 8192 words; the loader also puts them in its
        // vocabulary, so they still encode as one id after the cache has turned over.
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizerJson(TiktokenMerges, ignoreMerges: true));
        for (int i = 0; i < 10_000; i++)
        {
            tokenizer.EncodeToIds("w" + i.ToString("x"));
        }

        Assert.Equal([EotId], tokenizer.EncodeToIds("<|eot_id|>"));
    }

    [Fact]
    public void IgnoreMerges_NotTiktokenOrdered_IsRejected()
    {
        (string, string)[] swapped = [("d", "e"), ("a", "b"), ("b", "c"), ("bc", "de"), ("a", "bcde")];
        // ids follow list order, so give "ab" the higher id to break "ordered by the merged token's id"
        string folder = WriteTokenizerJson(swapped, ignoreMerges: true, mutate: root =>
        {
            var vocab = (JsonObject)root["model"]!["vocab"]!;
            vocab["de"] = 257;
            vocab["ab"] = 256;
        });

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Contains("ignore_merges", e.Message);
        Assert.Contains("not ordered", e.Message);
    }

    /// <summary>Found by the parser fuzzer (issue 16): a vocabulary id or added-token id of another JSON type threw an
    /// untyped InvalidOperationException, and bytes that are not UTF-8 threw while a key was read.</summary>
    [Theory]
    [InlineData("vocab")]
    [InlineData("added")]
    public void TokenizerJson_IdOfAnotherJsonType_IsATypedRefusal(string where)
    {
        string folder = WriteTokenizerJson(HelloMerges, mutate: root =>
        {
            if (where == "vocab")
            {
                root["model"]!["vocab"]!["he"] = new JsonObject();
            }
            else
            {
                root["added_tokens"] = new JsonArray(new JsonObject { ["content"] = "<s>", ["id"] = "7", ["special"] = true });
            }
        });
        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Contains("tokenizer.json", e.Message);
    }

    [Fact]
    public void TokenizerJson_NotUtf8_IsATypedRefusalWithThePosition()
    {
        string folder = WriteTokenizerJson(HelloMerges);
        string path = Path.Combine(folder, "tokenizer.json");
        byte[] bytes = File.ReadAllBytes(path);
        int at = Array.IndexOf(bytes, (byte)'h', bytes.Length / 2);
        bytes[at] = 0xFF;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Contains($"not valid UTF-8 (byte {at})", e.Message);
    }

    [Fact]
    public void IgnoreMerges_MissingSplit_IsRejected()
    {
        // "cd" is added as a token, making (c, d) a split of nothing but "cd" itself, which has no merge.
        string folder = WriteTokenizerJson(TiktokenMerges, ignoreMerges: true, mutate: root => root["model"]!["vocab"]!["cd"] = 261);

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Contains("lack (\"c\", \"d\")", e.Message);
    }

    // ---------- vocab.json + merges.txt ----------

    [Fact]
    public void VocabAndMerges_EncodeLikeTokenizerJson()
    {
        string folder = NewFolder();
        File.WriteAllText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(Vocabulary(HelloMerges)));
        File.WriteAllLines(Path.Combine(folder, "merges.txt"), ["#version: 0.2", .. HelloMerges.Select(m => m.Left + " " + m.Right)]);
        File.WriteAllText(Path.Combine(folder, "added_tokens.json"), "{\"<|endoftext|>\": 300}");

        Tokenizer tokenizer = CheckpointTokenizer.Load(folder);

        Assert.Equal(HelloWorldIds, tokenizer.EncodeToIds("hello world"));
        // GPT-2's split keeps "1234" together: 12, 34
        Assert.Equal([263, 264], tokenizer.EncodeToIds("1234"));
        Assert.Equal([262, 300], tokenizer.EncodeToIds("hello<|endoftext|>"));
        Assert.True(CheckpointTokenizer.TryGetSpecialTokenId(tokenizer, "<|endoftext|>", out int id));
        Assert.Equal(300, id);
        Assert.Equal("hello<|endoftext|> wörld", tokenizer.Decode(tokenizer.EncodeToIds("hello<|endoftext|> wörld")));
    }

    // ---------- errors ----------

    [Fact]
    public void EmptyFolder_Throws()
    {
        string folder = NewFolder();

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Equal(folder, e.Path);
        Assert.Contains("no tokenizer file", e.Message);
        AssertAdvice(e);
    }

    [Fact]
    public void MissingFolder_ThrowsDirectoryNotFound()
    {
        Assert.Throws<DirectoryNotFoundException>(() => CheckpointTokenizer.Load(Path.Combine(_root, "absent")));
    }

    [Fact]
    public void MalformedTokenizerJson_Throws()
    {
        string folder = NewFolder();
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), "{ \"model\": ");

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Equal(Path.Combine(folder, "tokenizer.json"), e.Path);
        Assert.Contains("tokenizer.json: is not valid JSON", e.Message);
        AssertAdvice(e);
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    [InlineData("WordLevel")]
    public void NonBpeTokenizerJson_Throws(string modelType)
    {
        string folder = NewFolder();
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"),
            $$$"""{"model": {"type": "{{{modelType}}}", "vocab": {"a": 0}}, "pre_tokenizer": null, "added_tokens": []}""");

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Contains($"its model is {modelType}", e.Message);
        Assert.EndsWith("tokenizer.json", e.Path);
        AssertAdvice(e);
    }

    [Fact]
    public void SentencePieceStyleBpeJson_WithoutTokenizerModel_Throws()
    {
        // Llama 2's tokenizer.json: BPE with byte_fallback and a Metaspace-like setup, no ByteLevel step.
        string folder = WriteTokenizerJson(HelloMerges, mutate: root =>
        {
            root["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁" };
            root["model"]!["byte_fallback"] = true;
        });

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Contains("not byte-level", e.Message);
        AssertAdvice(e);
    }

    [Fact]
    public void SentencePieceStyleBpeJson_FallsBackToTokenizerModel_WhichMustBeReadable()
    {
        string folder = WriteTokenizerJson(HelloMerges, mutate: root => root["pre_tokenizer"] = null);
        File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), [0xFF, 0xFF, 0xFF, 0x01, 0x02]);

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Equal(Path.Combine(folder, "tokenizer.model"), e.Path);
        Assert.Contains("SentencePiece", e.Message);
        AssertAdvice(e);
    }

    public static TheoryData<string, Action<JsonObject>> UnsupportedSettings => new()
    {
        { "add_prefix_space", root => root["pre_tokenizer"] = ByteLevelStep(useRegex: true, addPrefixSpace: true) },
        { "behavior Removed", root => root["pre_tokenizer"]!["pretokenizers"]![0]!["behavior"] = "Removed" },
        { "not a valid .NET regular expression", root => root["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = @"\p{L}++" } },
        { "the normalizer Lowercase is not supported", root => root["normalizer"] = new JsonObject { ["type"] = "Lowercase" } },
        { "pre-tokenizer step Whitespace", root => ((JsonArray)root["pre_tokenizer"]!["pretokenizers"]!).Insert(0, new JsonObject { ["type"] = "Whitespace" }) },
        { "dropout 0.1", root => root["model"]!["dropout"] = 0.1 },
        { "merge 0 is neither", root => root["model"]!["merges"]![0] = 5 },
        { "Trying to merge a token 'zz'", root => ((JsonArray)root["model"]!["merges"]!).Add("zz q") },
        { "lists \"<|eot_id|>\" twice", root => ((JsonArray)root["added_tokens"]!).Add(AddedToken("<|eot_id|>", 302)) },
    };

    [Theory]
    [MemberData(nameof(UnsupportedSettings))]
    public void UnsupportedOrBrokenSetting_Throws(string expected, Action<JsonObject> mutate)
    {
        string folder = WriteTokenizerJson(HelloMerges, mutate: mutate);

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Equal(Path.Combine(folder, "tokenizer.json"), e.Path);
        Assert.Contains(expected, e.Message);
        AssertAdvice(e);
    }

    [Fact]
    public void VocabWithoutMerges_Throws()
    {
        string folder = NewFolder();
        File.WriteAllText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(Vocabulary(HelloMerges)));

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Equal(Path.Combine(folder, "merges.txt"), e.Path);
        Assert.Contains("is missing", e.Message);
        AssertAdvice(e);
    }

    [Fact]
    public void MalformedMergesTxt_Throws()
    {
        string folder = NewFolder();
        File.WriteAllText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(Vocabulary(HelloMerges)));
        File.WriteAllLines(Path.Combine(folder, "merges.txt"), ["#version: 0.2", "l l", "h e x"]);

        var e = Assert.Throws<TokenizerLoadException>(() => CheckpointTokenizer.Load(folder));
        Assert.Equal(Path.Combine(folder, "merges.txt"), e.Path);
        Assert.Contains("line 3", e.Message);
        AssertAdvice(e);
    }

    // ---------- helpers ----------

    private static void AssertAdvice(TokenizerLoadException e) => Assert.Contains("pass it in", e.Message);

    private string NewFolder()
    {
        string folder = Path.Combine(_root, Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        return folder;
    }

    /// <summary>GPT-2's byte-to-character table, written out independently of the loader's.</summary>
    private static char ByteChar(int b)
    {
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
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

    /// <summary>The 256 bytes (id = byte value), then each merge's result in list order from 256.</summary>
    private static Dictionary<string, int> Vocabulary(IEnumerable<(string Left, string Right)> merges)
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++)
        {
            vocab[ByteChar(b).ToString()] = b;
        }

        foreach ((string left, string right) in merges)
        {
            vocab[left + right] = vocab.Count;
        }

        Assert.Equal(32, vocab["Ġ"]);
        Assert.Equal(10, vocab["Ċ"]);
        return vocab;
    }

    private static JsonObject ByteLevelStep(bool useRegex, bool addPrefixSpace = false) => new()
    {
        ["type"] = "ByteLevel",
        ["add_prefix_space"] = addPrefixSpace,
        ["trim_offsets"] = true,
        ["use_regex"] = useRegex,
    };

    private static JsonObject AddedToken(string content, int id) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = false,
        ["lstrip"] = false,
        ["rstrip"] = false,
        ["normalized"] = false,
        ["special"] = true,
    };

    /// <summary>Writes a Llama-3-shaped tokenizer.json (Split + ByteLevel pre-tokenizer, ByteLevel decoder,
    /// BOS template post-processor) into a new folder and returns the folder.</summary>
    private string WriteTokenizerJson(
        IEnumerable<(string Left, string Right)> merges, bool arrayMerges = false, bool ignoreMerges = false, Action<JsonObject>? mutate = null)
    {
        var mergeList = merges.ToList();
        var vocab = new JsonObject();
        foreach ((string token, int id) in Vocabulary(mergeList))
        {
            vocab[token] = id;
        }

        var mergesJson = new JsonArray();
        foreach ((string left, string right) in mergeList)
        {
            mergesJson.Add(arrayMerges ? new JsonArray(left, right) : JsonValue.Create(left + " " + right));
        }

        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(AddedToken("<|eot_id|>", EotId), AddedToken("<|begin_of_text|>", BeginId)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = Llama3Pattern },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    ByteLevelStep(useRegex: false)),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["ignore_merges"] = ignoreMerges,
                ["vocab"] = vocab,
                ["merges"] = mergesJson,
            },
        };
        mutate?.Invoke(root);

        string folder = NewFolder();
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString());
        return folder;
    }
}
