using MlTokenizer = Microsoft.ML.Tokenizers.Tokenizer;
using SpecDecode.Train.Tokenizer;
using SpecDecode.Tokenization;

using ByteLevelAlphabet = SpecDecode.Train.Tokenizer.ByteLevelAlphabet;

namespace SpecDecode.Train.Tests;

/// <summary>BpeTrainer against a hand-worked example and a naive reference, and its files through CheckpointTokenizer.</summary>
public sealed class BpeTrainerTests : IDisposable
{
    private static readonly string[] Specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"];

    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-train-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    [Fact]
    public void Train_HandWorkedExample_GivesTheExpectedMerges()
    {
        // One piece "aaabdaaabac" (all letters). Pairs: aa 4, ab 2, bd 1, da 1, ba 1, ac 1 -> merge (a, a):
        //   aa a b d aa a b a c. Pairs: (aa, a) 2, (a, b) 2, others 1; tie broken by the left token, "a" < "aa" -> (a, b):
        //   aa ab d aa ab a c. Pairs: (aa, ab) 2, others 1 -> (aa, ab). Then every pair occurs once: stop (MinPairCount 2).
        BpeVocabulary vocabulary = BpeTrainer.Train(["aaabdaaabac"], new BpeTrainerSettings(1000, Specials));

        Assert.Equal([("a", "a"), ("a", "b"), ("aa", "ab")], vocabulary.Merges);
        Assert.Equal(256 + 3, vocabulary.Tokens.Count);
        Assert.Equal(["aa", "ab", "aaab"], vocabulary.Tokens.Skip(256));
        Assert.Equal(256 + 3 + 4, vocabulary.Count);
        Assert.Equal(259, vocabulary.SpecialTokenId("<|begin_of_text|>"));
        Assert.Equal(262, vocabulary.SpecialTokenId("<|im_end|>"));
    }

    [Fact]
    public void Train_StopsAtTheVocabularySize()
    {
        BpeVocabulary vocabulary = BpeTrainer.Train(["aaabdaaabac"], new BpeTrainerSettings(256 + 1 + 4, Specials));

        Assert.Equal([("a", "a")], vocabulary.Merges);
        Assert.Equal(261, vocabulary.Count);
    }

    [Fact]
    public void Train_SpaceAndSpecialTokens_AreHandledAsLlama3Does()
    {
        // " hello" pieces carry their space as 'Ġ'; the special tokens cut the text and are never learned from.
        BpeVocabulary vocabulary = BpeTrainer.Train(
            ["<|im_start|>hello hello hello<|im_end|><|im_start|>hello<|im_end|>"], new BpeTrainerSettings(1000, Specials));

        Assert.Contains("Ġhello", vocabulary.Tokens);
        Assert.Contains("hello", vocabulary.Tokens);
        Assert.DoesNotContain(vocabulary.Tokens, t => t.Contains("im", StringComparison.Ordinal) && t.Contains('|'));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Train_MatchesANaiveFullRecount(int seed)
    {
        string[] texts = RandomTexts(seed, documents: 40);
        BpeVocabulary fast = BpeTrainer.Train(texts, new BpeTrainerSettings(256 + 300 + 4, Specials));
        List<(string, string)> naive = NaiveMerges(texts, 300);

        Assert.True(fast.Merges.Count > 50, $"only {fast.Merges.Count} merges");
        Assert.Equal(naive, fast.Merges);
        // every merge's parts are tokens with lower ids than the result
        var ids = fast.Tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        foreach ((string left, string right) in fast.Merges)
        {
            Assert.True(ids[left] < ids[left + right] && ids[right] < ids[left + right]);
        }
    }

    [Theory]
    [InlineData("def main():\n    print(\"héllo wörld\")  # ünïcode 🙂\r\n\ttabs  and   spaces 12345")]
    [InlineData("  leading and trailing  \n\n")]
    [InlineData("日本語のテキスト and ASCII, — dashes")]
    public void WrittenTokenizer_RoundTripsAndUsesTheMerges(string text)
    {
        string[] corpus = RandomTexts(7, documents: 60).Append(text).Append(text).ToArray();
        BpeVocabulary vocabulary = BpeTrainer.Train(corpus, new BpeTrainerSettings(256 + 400 + 4, Specials));
        string folder = Path.Combine(_root, "tok");
        TokenizerJsonWriter.Write(folder, vocabulary, TokenizerFilesSettings.Default);

        MlTokenizer tokenizer = CheckpointTokenizer.Load(folder);
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(text);

        Assert.Equal(text, tokenizer.Decode(ids));
        Assert.True(ids.Count < System.Text.Encoding.UTF8.GetByteCount(text), $"{ids.Count} tokens for {System.Text.Encoding.UTF8.GetByteCount(text)} bytes");
        Assert.All(ids, id => Assert.InRange(id, 0, vocabulary.Tokens.Count - 1));
    }

    [Fact]
    public void WrittenTokenizer_EncodesAWholeTrainedWordAsItsToken()
    {
        BpeVocabulary vocabulary = BpeTrainer.Train(["aaabdaaabac"], new BpeTrainerSettings(1000, Specials));
        string folder = Path.Combine(_root, "tok");
        TokenizerJsonWriter.Write(folder, vocabulary, TokenizerFilesSettings.Default);

        MlTokenizer tokenizer = CheckpointTokenizer.Load(folder);

        Assert.Equal([258], tokenizer.EncodeToIds("aaab"));
        // aaab d aaab a c: both "aaab" runs reach (aa, ab)
        Assert.Equal([258, 'd', 258, 'a', 'c'], tokenizer.EncodeToIds("aaabdaaabac"));
    }

    [Fact]
    public void WrittenTokenizer_SpecialTokensEncodeToTheirIds()
    {
        BpeVocabulary vocabulary = BpeTrainer.Train(RandomTexts(3, documents: 20), new BpeTrainerSettings(256 + 100 + 4, Specials));
        string folder = Path.Combine(_root, "tok");
        TokenizerJsonWriter.Write(folder, vocabulary, TokenizerFilesSettings.Default);
        MlTokenizer tokenizer = CheckpointTokenizer.Load(folder);

        foreach (string special in Specials)
        {
            Assert.Equal([vocabulary.SpecialTokenId(special)], tokenizer.EncodeToIds(special));
            Assert.True(CheckpointTokenizer.TryGetSpecialTokenId(tokenizer, special, out int id));
            Assert.Equal(vocabulary.SpecialTokenId(special), id);
        }
        string chat = "<|im_start|>user\nhi there<|im_end|>\n";
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(chat);
        Assert.Equal(vocabulary.SpecialTokenId("<|im_start|>"), ids[0]);
        Assert.Contains(vocabulary.SpecialTokenId("<|im_end|>"), ids);
        Assert.Equal(chat, tokenizer.Decode(ids));

        string config = File.ReadAllText(Path.Combine(folder, "tokenizer_config.json"));
        Assert.Contains("\"eos_token\": \"<|im_end|>\"", config);
        Assert.Contains("\"bos_token\": \"<|begin_of_text|>\"", config);
        Assert.Contains("<|im_start|>", config);
        Assert.True(File.Exists(Path.Combine(folder, "special_tokens_map.json")));
    }

    private static string[] RandomTexts(int seed, int documents)
    {
        string[] words = ["the", "model", "token", "def", "return", "self", "import", "numpy", " ", "  ", "\n", "(", ")", ":", "é", "ß", "🙂", "123", "4567", "_", "x", "y"];
        var random = new Random(seed);
        var texts = new string[documents];
        for (int d = 0; d < documents; d++)
        {
            var builder = new System.Text.StringBuilder();
            int length = random.Next(20, 80);
            for (int i = 0; i < length; i++)
            {
                builder.Append(words[random.Next(words.Length)]);
                if (random.Next(3) == 0)
                {
                    builder.Append(' ');
                }
            }
            texts[d] = builder.ToString();
        }
        return texts;
    }

    // The textbook algorithm: recount every pair of every word before each merge.
    private static List<(string, string)> NaiveMerges(string[] texts, int maxMerges)
    {
        var words = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string text in texts)
        {
            foreach (string piece in BpeTrainer.PreTokenize(text, Specials))
            {
                words[piece] = words.GetValueOrDefault(piece) + 1;
            }
        }
        var symbols = words.Select(w => (Symbols: ByteLevelAlphabet.Encode(w.Key).Select(c => c.ToString()).ToList(), Count: w.Value)).ToList();
        var merges = new List<(string, string)>();
        while (merges.Count < maxMerges)
        {
            var counts = new Dictionary<(string, string), long>();
            foreach ((List<string> s, long count) in symbols)
            {
                for (int i = 0; i + 1 < s.Count; i++)
                {
                    counts[(s[i], s[i + 1])] = counts.GetValueOrDefault((s[i], s[i + 1])) + count;
                }
            }
            if (counts.Count == 0)
            {
                break;
            }
            var best = counts.OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1, StringComparer.Ordinal).ThenBy(p => p.Key.Item2, StringComparer.Ordinal).First();
            if (best.Value < 2)
            {
                break;
            }
            merges.Add(best.Key);
            foreach ((List<string> s, _) in symbols)
            {
                for (int i = 0; i + 1 < s.Count; i++)
                {
                    if (s[i] == best.Key.Item1 && s[i + 1] == best.Key.Item2)
                    {
                        s[i] += s[i + 1];
                        s.RemoveAt(i + 1);
                    }
                }
            }
        }
        return merges;
    }
}
