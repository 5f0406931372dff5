using System.Collections.Concurrent;
using System.Text;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace SpecDecode.Train.Tokenizer;

/// <summary>Settings of <see cref="BpeTrainer.Train"/>.</summary>
/// <param name="VocabSize">The total number of ids wanted: 256 bytes + merged tokens + special tokens. Training stops
/// earlier when no pair occurs <paramref name="MinPairCount"/> times.</param>
/// <param name="SpecialTokens">Special tokens, given ids after the ordinary tokens in this order. Where they occur in the
/// training text they cut it and are not learned from.</param>
/// <param name="MinPairCount">The fewest occurrences a pair needs to be merged.</param>
public sealed record BpeTrainerSettings(int VocabSize, IReadOnlyList<string> SpecialTokens, int MinPairCount = 2)
{
    /// <summary>The special tokens of the embedded default model: <c>&lt;|begin_of_text|&gt;</c>,
    /// <c>&lt;|end_of_text|&gt;</c>, <c>&lt;|im_start|&gt;</c>, <c>&lt;|im_end|&gt;</c>.</summary>
    public static IReadOnlyList<string> DefaultSpecialTokens { get; } =
        ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"];
}

/// <summary>
/// Trains a byte-level BPE vocabulary the GPT-2 / Llama 3 way: pre-tokenize with Llama 3's split pattern, write each
/// piece's UTF-8 bytes in the byte-level alphabet, count the pieces, then repeatedly merge the most frequent adjacent
/// pair of symbols until the vocabulary has the size asked for.
/// </summary>
/// <remarks>
/// <para>Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units"; the byte-level variant of
/// Radford et al. 2019 (GPT-2). As Hugging Face tokenizers' <c>BpeTrainer</c> does, pair counts are kept incrementally:
/// each merge rewrites only the words that hold the pair (found through a pair-to-words index) and adjusts the counts of
/// the pairs around it; the best pair comes from a priority queue with lazy deletion (an entry whose count went stale
/// is pushed again with its current count; counts of existing pairs only decrease, so the queue's value bounds it).</para>
/// <para>Ties: equal counts go to the pair whose left token, then right token, is ordinally smallest in the
/// byte-level alphabet, so training is deterministic (word counting is parallel but the counts are sums).</para>
/// <para>A merge whose result spells an existing token (reached by another split) is recorded in the merge list but
/// reuses that token's id, as Hugging Face's trainer does; so the merge list can be longer than the merged tokens.</para>
/// </remarks>
public static class BpeTrainer
{
    /// <summary>Llama 3's pre-tokenizer split pattern (the <c>Split</c> step of its tokenizer.json).</summary>
    public const string Llama3SplitPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static readonly Regex Splitter = new(Llama3SplitPattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);

    /// <summary>Trains a vocabulary on <paramref name="texts"/> (documents; pieces never cross documents).</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The vocabulary size leaves no room beyond the 256 bytes and the special
    /// tokens, or <see cref="BpeTrainerSettings.MinPairCount"/> is below 1.</exception>
    /// <exception cref="ArgumentException">A special token is empty or repeated.</exception>
    public static BpeVocabulary Train(IEnumerable<string> texts, BpeTrainerSettings settings)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(settings.SpecialTokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(settings.MinPairCount, 1, nameof(settings));
        ArgumentOutOfRangeException.ThrowIfLessThan(settings.VocabSize, 256 + settings.SpecialTokens.Count, nameof(settings));
        if (settings.SpecialTokens.Any(string.IsNullOrEmpty) || settings.SpecialTokens.Distinct(StringComparer.Ordinal).Count() != settings.SpecialTokens.Count)
        {
            throw new ArgumentException("Special tokens must be non-empty and distinct.", nameof(settings));
        }

        Dictionary<string, long> pieces = CountPieces(texts, settings.SpecialTokens);
        var merger = new Merger(pieces);
        merger.Run(settings.VocabSize - settings.SpecialTokens.Count, settings.MinPairCount);
        return new BpeVocabulary(merger.Tokens, merger.Merges, settings.SpecialTokens.ToArray());
    }

    /// <summary>The pre-tokenized pieces of <paramref name="text"/> (split at special tokens first), as Llama 3's
    /// tokenizer cuts it before applying merges.</summary>
    public static IEnumerable<string> PreTokenize(string text, IReadOnlyList<string> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(specialTokens);
        foreach (string segment in SplitAtSpecialTokens(text, specialTokens))
        {
            for (Match match = Splitter.Match(segment); match.Success; match = match.NextMatch())
            {
                yield return match.Value;
            }
        }
    }

    private static Dictionary<string, long> CountPieces(IEnumerable<string> texts, IReadOnlyList<string> specialTokens)
    {
        var partials = new ConcurrentBag<Dictionary<string, long>>();
        Parallel.ForEach(
            texts,
            () => new Dictionary<string, long>(StringComparer.Ordinal),
            (text, state, counts) =>
            {
                ArgumentNullException.ThrowIfNull(text, nameof(texts));
                foreach (string piece in PreTokenize(text, specialTokens))
                {
                    CollectionsMarshal.GetValueRefOrAddDefault(counts, piece, out _)++;
                }
                return counts;
            },
            partials.Add);

        var total = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (Dictionary<string, long> partial in partials)
        {
            foreach ((string piece, long count) in partial)
            {
                CollectionsMarshal.GetValueRefOrAddDefault(total, piece, out _) += count;
            }
        }
        return total;
    }

    private static IEnumerable<string> SplitAtSpecialTokens(string text, IReadOnlyList<string> specialTokens)
    {
        int start = 0;
        while (start < text.Length)
        {
            int best = -1;
            int bestLength = 0;
            foreach (string token in specialTokens)
            {
                int at = text.IndexOf(token, start, StringComparison.Ordinal);
                if (at >= 0 && (best < 0 || at < best || (at == best && token.Length > bestLength)))
                {
                    best = at;
                    bestLength = token.Length;
                }
            }
            if (best < 0)
            {
                yield return text[start..];
                yield break;
            }
            if (best > start)
            {
                yield return text[start..best];
            }
            start = best + bestLength;
        }
    }

    /// <summary>The merge loop over distinct words with their counts.</summary>
    private sealed class Merger
    {
        private readonly int[][] _words;
        private readonly long[] _counts;
        private readonly int[] _seen;
        private readonly Dictionary<long, long> _pairCounts = new();
        private readonly Dictionary<long, List<int>> _pairWords = new();
        private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
        private readonly PriorityQueue<long, QueuedPair> _queue;
        private int _stamp;

        public Merger(Dictionary<string, long> pieces)
        {
            for (int b = 0; b < 256; b++)
            {
                string token = ByteLevelAlphabet.ToChar((byte)b).ToString();
                Tokens.Add(token);
                _ids.Add(token, b);
            }

            // Sorted so that word indices, and so list orders, do not depend on dictionary order.
            KeyValuePair<string, long>[] sorted = pieces.OrderBy(p => p.Key, StringComparer.Ordinal).ToArray();
            _words = new int[sorted.Length][];
            _counts = new long[sorted.Length];
            _seen = new int[sorted.Length];
            for (int w = 0; w < sorted.Length; w++)
            {
                byte[] bytes = Encoding.UTF8.GetBytes(sorted[w].Key);
                _words[w] = Array.ConvertAll(bytes, b => (int)b);
                _counts[w] = sorted[w].Value;
                for (int i = 0; i + 1 < bytes.Length; i++)
                {
                    long pair = Pair(bytes[i], bytes[i + 1]);
                    CollectionsMarshal.GetValueRefOrAddDefault(_pairCounts, pair, out _) += _counts[w];
                    AddWord(pair, w);
                }
            }

            _queue = new PriorityQueue<long, QueuedPair>(Comparer<QueuedPair>.Create(ComparePairs));
            foreach ((long pair, long count) in _pairCounts)
            {
                _queue.Enqueue(pair, new QueuedPair(pair, count));
            }
        }

        public List<string> Tokens { get; } = [];

        public List<(string Left, string Right)> Merges { get; } = [];

        public void Run(int ordinaryTokens, int minPairCount)
        {
            while (Tokens.Count < ordinaryTokens && _queue.TryDequeue(out long pair, out QueuedPair queued))
            {
                long current = _pairCounts.GetValueOrDefault(pair);
                if (current != queued.Count)
                {
                    if (current > 0)
                    {
                        _queue.Enqueue(pair, new QueuedPair(pair, current));
                    }
                    continue;
                }
                if (current < minPairCount)
                {
                    break;
                }
                Merge(pair);
            }
        }

        private void Merge(long pair)
        {
            int left = (int)(pair >> 32);
            int right = (int)(pair & 0xFFFFFFFF);
            string text = Tokens[left] + Tokens[right];
            Merges.Add((Tokens[left], Tokens[right]));
            if (!_ids.TryGetValue(text, out int merged))
            {
                merged = Tokens.Count;
                Tokens.Add(text);
                _ids.Add(text, merged);
            }

            var created = new HashSet<long>();
            _stamp++;
            foreach (int w in _pairWords[pair])
            {
                if (_seen[w] == _stamp)
                {
                    continue;
                }
                _seen[w] = _stamp;
                MergeWord(w, left, right, merged, created);
            }
            _pairWords.Remove(pair);
            _pairCounts.Remove(pair);
            foreach (long fresh in created.Order())
            {
                long count = _pairCounts.GetValueOrDefault(fresh);
                if (count > 0)
                {
                    _queue.Enqueue(fresh, new QueuedPair(fresh, count));
                }
            }
        }

        private void MergeWord(int w, int left, int right, int merged, HashSet<long> created)
        {
            int[] symbols = _words[w];
            long count = _counts[w];
            var result = new List<int>(symbols.Length);
            bool changed = false;
            for (int i = 0; i < symbols.Length; i++)
            {
                if (i + 1 < symbols.Length && symbols[i] == left && symbols[i + 1] == right)
                {
                    result.Add(merged);
                    i++;
                    changed = true;
                }
                else
                {
                    result.Add(symbols[i]);
                }
            }
            if (!changed)
            {
                return;
            }

            for (int i = 0; i + 1 < symbols.Length; i++)
            {
                _pairCounts[Pair(symbols[i], symbols[i + 1])] -= count;
            }
            for (int i = 0; i + 1 < result.Count; i++)
            {
                long pair = Pair(result[i], result[i + 1]);
                CollectionsMarshal.GetValueRefOrAddDefault(_pairCounts, pair, out _) += count;
                if (result[i] == merged || result[i + 1] == merged)
                {
                    AddWord(pair, w);
                    created.Add(pair);
                }
            }
            _words[w] = result.ToArray();
        }

        private void AddWord(long pair, int w)
        {
            if (!_pairWords.TryGetValue(pair, out List<int>? list))
            {
                list = [];
                _pairWords.Add(pair, list);
            }
            if (list.Count == 0 || list[^1] != w)
            {
                list.Add(w);
            }
        }

        private int ComparePairs(QueuedPair a, QueuedPair b)
        {
            if (a.Count != b.Count)
            {
                return b.Count.CompareTo(a.Count);
            }
            int byLeft = string.CompareOrdinal(Tokens[(int)(a.Pair >> 32)], Tokens[(int)(b.Pair >> 32)]);
            return byLeft != 0 ? byLeft : string.CompareOrdinal(Tokens[(int)(a.Pair & 0xFFFFFFFF)], Tokens[(int)(b.Pair & 0xFFFFFFFF)]);
        }

        private static long Pair(int left, int right) => ((long)left << 32) | (uint)right;

        /// <summary>A queue entry: the pair (left id in the high half, right id in the low half) and its count when pushed.</summary>
        private readonly record struct QueuedPair(long Pair, long Count);
    }
}
