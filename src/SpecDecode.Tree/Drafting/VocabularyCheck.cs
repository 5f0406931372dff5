using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tree;

/// <summary>
/// Whether a draft model and a target share a vocabulary (<see cref="DraftModelDrafter.EnsureSameVocabulary"/>): the
/// criterion is the tokenizers' vocabulary, not the models' <c>vocab_size</c>, which checkpoints of one tokenizer pad
/// differently (Qwen2.5-0.5B has 151936 rows, Qwen2.5-7B 152064, both over the same 151665 tokens).
/// </summary>
internal static class VocabularyCheck
{
    /// <summary>Text both tokenizers must encode to the same ids: prose, digits, code, whitespace runs, accents, CJK,
    /// an emoji, and chat markers that are special tokens in some families.</summary>
    internal const string ProbeText =
        "The quick brown fox jumps over the lazy dog. It's 2024-06-01, 12:34:56; pi = 3.14159265358979.\n" +
        "def square(x):\n    return x ** 2  # comment\n\n\tindented\r\n   spaces   \n" +
        "Über naïve café, Straße; 東京は晴れ。 Привет! 🙂 <|im_start|>user\n<|eot_id|></s>[INST]";

    private const string Advice =
        "Use a draft model trained with the target's tokenizer (for example Qwen2.5-0.5B-Instruct for Qwen2.5-7B-Instruct, " +
        "Llama-3.2-1B-Instruct for Llama-3.1-8B-Instruct).";

    /// <summary>Throws unless the two sides share a vocabulary (see <see cref="DraftModelDrafter.EnsureSameVocabulary"/>).</summary>
    /// <exception cref="VocabularyMismatchException">They do not.</exception>
    public static void Check(int targetVocab, int draftVocab, Tokenizer? targetTokenizer, Tokenizer? draftTokenizer)
    {
        if (targetTokenizer is null || draftTokenizer is null)
        {
            if (targetVocab != draftVocab)
            {
                throw new VocabularyMismatchException(
                    $"The draft model's vocab_size is {draftVocab} but the target's is {targetVocab}, and without both tokenizers " +
                    "the vocabularies cannot be compared. Checkpoints of one tokenizer may pad vocab_size differently " +
                    "(Qwen2.5-0.5B and 7B do): pass both tokenizers (CheckpointTokenizer.Load) to compare the vocabularies " +
                    "themselves. " + Advice,
                    targetVocab, draftVocab);
            }
            return;
        }

        int highestId;
        // Tables of one tokenizer type write tokens the same way; across types, compare what the ids decode to.
        Dictionary<int, string>? targetTable = Table(targetTokenizer), draftTable = Table(draftTokenizer);
        if (targetTable is not null && draftTable is not null && targetTokenizer.GetType() == draftTokenizer.GetType())
        {
            highestId = CompareTables(targetTable, draftTable, targetVocab, draftVocab);
        }
        else
        {
            // A tokenizer type that does not expose its vocabulary: compare what every id below both sizes decodes to.
            highestId = -1;
            for (int id = 0; id < Math.Min(targetVocab, draftVocab); id++)
            {
                string? t = TryDecode(targetTokenizer, id), d = TryDecode(draftTokenizer, id);
                if (!string.Equals(t, d, StringComparison.Ordinal))
                {
                    throw new VocabularyMismatchException(
                        $"Token id {id} decodes to {Show(t)} with the target's tokenizer but to {Show(d)} with the draft's: " +
                        "the models use different vocabularies. " + Advice,
                        targetVocab, draftVocab, id);
                }
            }
        }

        foreach ((string side, int size) in new[] { ("draft", draftVocab), ("target", targetVocab) })
        {
            if (highestId >= size)
            {
                throw new VocabularyMismatchException(
                    $"The tokenizers have token ids up to {highestId} but the {side} model's vocab_size is {size}: the " +
                    $"{side} model cannot read every token. Check that the tokenizer belongs to that checkpoint. " + Advice,
                    targetVocab, draftVocab, highestId);
            }
        }

        IReadOnlyList<int> targetIds = targetTokenizer.EncodeToIds(ProbeText);
        IReadOnlyList<int> draftIds = draftTokenizer.EncodeToIds(ProbeText);
        if (!targetIds.SequenceEqual(draftIds))
        {
            int at = 0;
            while (at < Math.Min(targetIds.Count, draftIds.Count) && targetIds[at] == draftIds[at])
            {
                at++;
            }
            throw new VocabularyMismatchException(
                $"The tokenizers share their token strings but split a probe text differently (from token {at} on: " +
                $"{targetIds.Count} target ids, {draftIds.Count} draft ids), so the draft model would read token sequences " +
                "it was not trained on (a different pre-tokenizer or normalizer). " + Advice,
                targetVocab, draftVocab);
        }
    }

    /// <summary>Compares two id → token tables; returns the highest id.</summary>
    private static int CompareTables(Dictionary<int, string> target, Dictionary<int, string> draft, int targetVocab, int draftVocab)
    {
        int firstDiff = int.MaxValue;
        foreach ((int id, string token) in target)
        {
            if ((!draft.TryGetValue(id, out string? other) || !string.Equals(token, other, StringComparison.Ordinal)) && id < firstDiff)
            {
                firstDiff = id;
            }
        }
        foreach (int id in draft.Keys)
        {
            if (!target.ContainsKey(id) && id < firstDiff)
            {
                firstDiff = id;
            }
        }
        if (firstDiff != int.MaxValue)
        {
            target.TryGetValue(firstDiff, out string? t);
            draft.TryGetValue(firstDiff, out string? d);
            throw new VocabularyMismatchException(
                $"The tokenizers differ: the target's has {target.Count} tokens, the draft's {draft.Count}, and token id " +
                $"{firstDiff} is {Show(t)} in the target's but {Show(d)} in the draft's. " + Advice,
                targetVocab, draftVocab, firstDiff);
        }
        return target.Count == 0 ? -1 : target.Keys.Max();
    }

    /// <summary>id → token string (ordinary and special tokens; several strings of one id joined), or null for a
    /// tokenizer type that does not expose its vocabulary (TiktokenTokenizer keeps it internal).</summary>
    private static Dictionary<int, string>? Table(Tokenizer tokenizer)
    {
        IEnumerable<KeyValuePair<string, int>>? entries = tokenizer switch
        {
            BpeTokenizer bpe => bpe.Vocabulary.Concat(bpe.SpecialTokens ?? Empty),
            SentencePieceTokenizer sentencePiece => sentencePiece.Vocabulary.Concat(sentencePiece.SpecialTokens ?? Empty),
            CodeGenTokenizer codeGen => codeGen.Vocabulary.Concat(codeGen.SpecialTokens ?? Empty),
            _ => null,
        };
        if (entries is null)
        {
            return null;
        }
        var table = new Dictionary<int, string>();
        foreach (KeyValuePair<string, int> entry in entries)
        {
            table[entry.Value] = table.TryGetValue(entry.Value, out string? known) && !string.Equals(known, entry.Key, StringComparison.Ordinal)
                ? string.Join('\u0001', new[] { known, entry.Key }.Order(StringComparer.Ordinal))
                : entry.Key;
        }
        return table;
    }

    private static readonly Dictionary<string, int> Empty = [];

    private static string? TryDecode(Tokenizer tokenizer, int id)
    {
        try
        {
            return tokenizer.Decode([id]);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or KeyNotFoundException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    private static string Show(string? token) => token is null ? "(absent)" : "\"" + token.Replace("\n", "\\n", StringComparison.Ordinal) + "\"";
}
