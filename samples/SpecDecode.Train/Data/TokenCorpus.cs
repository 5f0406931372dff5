using Microsoft.ML.Tokenizers;
using static TorchSharp.torch;

namespace SpecDecode.Train.Data;

/// <summary>
/// Documents tokenized and concatenated into one stream, each followed by a separator token, from which training
/// batches are random windows. The batch of a step is a pure function of (seed, step), so a run resumed from a
/// checkpoint sees exactly the batches an uninterrupted run would have.
/// </summary>
public sealed class TokenCorpus
{
    private readonly ushort[] _tokens;

    private TokenCorpus(ushort[] tokens, int documents)
    {
        _tokens = tokens;
        Documents = documents;
    }

    /// <summary>Tokens in the stream, separators included.</summary>
    public long Length => _tokens.Length;

    /// <summary>Documents in the stream.</summary>
    public int Documents { get; }

    /// <summary>Tokenizes <paramref name="documents"/> in parallel and joins them, <paramref name="separatorId"/> after each.</summary>
    /// <exception cref="ArgumentException">An id does not fit 16 bits, or no document has a token.</exception>
    public static TokenCorpus Build(IReadOnlyList<string> documents, Microsoft.ML.Tokenizers.Tokenizer tokenizer, int separatorId)
    {
        var encoded = new IReadOnlyList<int>[documents.Count];
        Parallel.For(0, documents.Count, i => encoded[i] = tokenizer.EncodeToIds(documents[i]));
        return FromDocuments(encoded, separatorId);
    }

    /// <summary>Joins token-id documents, <paramref name="separatorId"/> after each.</summary>
    /// <exception cref="ArgumentException">An id does not fit 16 bits, or no document has a token.</exception>
    public static TokenCorpus FromDocuments(IReadOnlyList<IReadOnlyList<int>> documents, int separatorId)
    {
        long total = documents.Sum(e => (long)e.Count + 1);
        if (total <= documents.Count)
        {
            throw new ArgumentException("the documents hold no tokens to train on.");
        }
        var tokens = new ushort[total];
        long at = 0;
        foreach (IReadOnlyList<int> ids in documents)
        {
            foreach (int id in ids)
            {
                tokens[at++] = Checked(id);
            }
            tokens[at++] = Checked(separatorId);
        }
        return new TokenCorpus(tokens, documents.Count);
    }

    private static ushort Checked(int id) =>
        id is >= 0 and <= ushort.MaxValue ? (ushort)id : throw new ArgumentException($"token id {id} does not fit 16 bits.");

    /// <summary>The training batch of <paramref name="step"/>: <paramref name="batch"/> windows of
    /// <paramref name="window"/> tokens starting at positions drawn from (seed, step), as int64 [batch, window].</summary>
    /// <exception cref="ArgumentException">The stream is shorter than one window.</exception>
    public Tensor Batch(long seed, long step, int batch, int window, Device device)
    {
        if (_tokens.Length <= window)
        {
            throw new ArgumentException($"the corpus has {_tokens.Length} tokens, fewer than one window of {window}.");
        }
        var random = new Random(StepSeed(seed, step));
        var ids = new long[batch * window];
        for (int b = 0; b < batch; b++)
        {
            long start = random.NextInt64(_tokens.Length - window + 1);
            for (int t = 0; t < window; t++)
            {
                ids[b * window + t] = _tokens[start + t];
            }
        }
        using Tensor cpu = tensor(ids, [batch, window]);
        return cpu.to(device);
    }

    /// <summary>A 32-bit seed mixed from (seed, step) with SplitMix64's finaliser (HashCode is randomised per process).</summary>
    private static int StepSeed(long seed, long step)
    {
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)((z ^ (z >> 31)) & int.MaxValue);
    }

    /// <summary>Every whole window of the stream in order, <paramref name="batch"/> at a time (the evaluation pass:
    /// each token is predicted once; the last partial window is dropped).</summary>
    public IEnumerable<Tensor> Sequential(int batch, int window, Device device, int maxWindows = int.MaxValue)
    {
        // Windows overlap by one token so that every token after the first is a target exactly once.
        long count = Math.Min(maxWindows, (_tokens.Length - 1) / (window - 1));
        for (long first = 0; first < count; first += batch)
        {
            int n = (int)Math.Min(batch, count - first);
            var ids = new long[n * window];
            for (int b = 0; b < n; b++)
            {
                long start = (first + b) * (window - 1);
                for (int t = 0; t < window; t++)
                {
                    ids[b * window + t] = _tokens[start + t];
                }
            }
            using Tensor cpu = tensor(ids, [n, window]);
            yield return cpu.to(device);
        }
    }
}
