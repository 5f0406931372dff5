using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SpecDecode.Suffix;

/// <summary>
/// The model-free prompt-lookup baseline: drafts by copying what followed the most recent earlier occurrence of the
/// longest matching suffix of the request's own context (its prompt followed by every observed token).
/// </summary>
/// <remarks>
/// <para>For <c>n</c> from <see cref="PromptLookupDrafterOptions.MaxNgram"/> down to
/// <see cref="PromptLookupDrafterOptions.MinNgram"/>, the drafter looks for the most recent earlier occurrence of the last
/// <c>n</c> context tokens and, at the first <c>n</c> that has one, proposes the tokens that followed that occurrence as a
/// chain (every probability 1, <see cref="DraftTree.MatchLength"/> = <c>n</c>), cut to the budget, to the end of the
/// context, and to <see cref="PromptLookupDrafterOptions.LengthRule"/> when one is set. This is prompt lookup decoding
/// (Saxena, 2023) as vLLM implements it in its <c>ngram</c> proposer.</para>
/// <para>Each request keeps an index from a 64-bit hash of every n-gram (<c>n</c> in MinNgram..MaxNgram) to the last
/// position where an n-gram with that hash ends, plus, per position, the previous position with the same hash (hash
/// chains, as in LZ77 compressors). Appending a token costs O(MaxNgram) dictionary updates; a proposal costs
/// O(MaxNgram²) plus the chain steps a hash collision adds plus the draft length, independent of the context length.
/// Every candidate is compared with the actual tokens, so a collision can only cost time, never give a wrong match.</para>
/// <para>Threading: calls for different requests may run concurrently; calls for one request must not overlap (the
/// <see cref="IDrafter"/> contract).</para>
/// </remarks>
[DebuggerDisplay("prompt-lookup n={_minNgram}..{_maxNgram}, {_requests.Count} requests")]
public sealed class PromptLookupDrafter : IDrafter
{
    /// <summary>The largest <see cref="PromptLookupDrafterOptions.MaxNgram"/> accepted.</summary>
    public const int MaxSupportedNgram = 64;

    private const int BudgetLimit = 1024;

    // Parent indices of a chain of BudgetLimit nodes: node i's parent is i - 1. Sliced for every proposal.
    private static readonly int[] s_chainParents = CreateChainParents(BudgetLimit);

    private readonly ConcurrentDictionary<RequestId, RequestState> _requests = new();
    private readonly int _minNgram;
    private readonly int _maxNgram;
    private readonly MatchLengthRule? _lengthRule;
    private readonly ulong _hashMask;
    private volatile bool _disposed;

    /// <summary>Creates a prompt-lookup drafter.</summary>
    /// <param name="options">The n-gram range and optional length rule; <c>null</c> for the defaults (1..4, no rule).</param>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="PromptLookupDrafterOptions.MinNgram"/> is below 1, or
    /// <see cref="PromptLookupDrafterOptions.MaxNgram"/> is below MinNgram or above <see cref="MaxSupportedNgram"/>.</exception>
    public PromptLookupDrafter(PromptLookupDrafterOptions? options = null)
        : this(options, ulong.MaxValue)
    {
    }

    /// <summary>
    /// Test hook: keys the index by <c>hash &amp; hashMask</c>, so a small mask forces hash collisions and exercises the
    /// verification against the actual tokens.
    /// </summary>
    internal PromptLookupDrafter(PromptLookupDrafterOptions? options, ulong hashMask)
    {
        options ??= new PromptLookupDrafterOptions();
        if (options.MinNgram < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MinNgram,
                $"{nameof(PromptLookupDrafterOptions.MinNgram)} is {options.MinNgram}: it must be at least 1 (the shortest suffix matched).");
        }
        if (options.MaxNgram < options.MinNgram)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxNgram,
                $"{nameof(PromptLookupDrafterOptions.MaxNgram)} is {options.MaxNgram}, below {nameof(PromptLookupDrafterOptions.MinNgram)} " +
                $"{options.MinNgram}: set MaxNgram >= MinNgram.");
        }
        if (options.MaxNgram > MaxSupportedNgram)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxNgram,
                $"{nameof(PromptLookupDrafterOptions.MaxNgram)} is {options.MaxNgram}, above the supported {MaxSupportedNgram}: " +
                "the index keeps one entry per token for every n-gram length, so use a smaller MaxNgram.");
        }
        Options = options;
        _minNgram = options.MinNgram;
        _maxNgram = options.MaxNgram;
        _lengthRule = options.LengthRule;
        _hashMask = hashMask;
    }

    /// <inheritdoc />
    public string Name => "prompt-lookup";

    /// <inheritdoc />
    public int MaxBudget => BudgetLimit;

    /// <summary>The settings this drafter was created with.</summary>
    public PromptLookupDrafterOptions Options { get; }

    /// <summary>Number of requests started and not yet ended.</summary>
    public int ActiveRequests => _requests.Count;

    /// <inheritdoc />
    /// <remarks>Indexes the prompt in O(prompt length × MaxNgram). <see cref="DraftRequestOptions.ConversationId"/> is
    /// ignored: prompt lookup only looks at the request's own context, which the prompt already carries in full.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!request.IsValid)
        {
            throw new ArgumentException($"{Name}: RequestId.Invalid cannot be started; use any other id.", nameof(request));
        }
        ThrowIfNegativeToken(prompt, nameof(prompt));
        if (_requests.ContainsKey(request))
        {
            throw new DuplicateRequestException(request, Name);
        }
        var state = new RequestState(this, prompt.Length);
        state.Append(prompt);
        if (!_requests.TryAdd(request, state))
        {
            throw new DuplicateRequestException(request, Name);
        }
    }

    /// <inheritdoc />
    /// <remarks>The draft is a chain whose <see cref="DraftTree.MatchLength"/> is the length of the matched suffix.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public DraftTree Propose(RequestId request, int maxTokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if ((uint)maxTokens > BudgetLimit)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens,
                $"{Name}: the budget must lie in 0..{BudgetLimit} (MaxBudget).");
        }
        RequestState state = GetState(request);
        return maxTokens == 0 ? DraftTree.Empty : state.Propose(maxTokens);
    }

    /// <inheritdoc />
    /// <remarks>O(emitted tokens × MaxNgram). Nothing is appended when a token id is negative.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        RequestState state = GetState(request);
        ThrowIfNegativeToken(emitted, nameof(emitted));
        state.Append(emitted);
    }

    /// <inheritdoc />
    /// <remarks>The request's index is dropped: prompt lookup keeps nothing across requests.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void EndRequest(RequestId request)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_requests.TryRemove(request, out _))
        {
            throw new UnknownRequestException(request, Name);
        }
    }

    /// <summary>
    /// An estimate of the managed memory held by the active requests' contexts and indexes, in bytes: per context token
    /// 4 + 4 × (MaxNgram - MinNgram + 1) bytes for the tokens and hash chains, plus about 28 bytes per distinct n-gram in
    /// the dictionaries (so at most about 4 + 32 × (MaxNgram - MinNgram + 1) per token), plus slack from array growth;
    /// 0 after <see cref="Dispose"/>. Safe to call while requests run; it then reads each request's size as of its last
    /// update.
    /// </summary>
    public long EstimateMemoryBytes()
    {
        long total = 0;
        foreach (KeyValuePair<RequestId, RequestState> entry in _requests)
        {
            total += entry.Value.EstimatedBytes;
        }
        return total;
    }

    /// <summary>Ends every request and releases the indexes; later calls other than this one throw
    /// <see cref="ObjectDisposedException"/>. Calling it again does nothing.</summary>
    public void Dispose()
    {
        _disposed = true;
        _requests.Clear();
    }

    /// <summary>The number of context tokens of an active request (prompt plus observed tokens).</summary>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    internal int ContextLength(RequestId request) => GetState(request).Length;

    /// <summary>
    /// Checks every active request's index against its context: each indexed n-gram is on exactly one hash chain, under
    /// its own key, with positions strictly decreasing along the chain, and exactly the n-grams ending before the last
    /// token are indexed. Not thread-safe with calls for the same requests.
    /// </summary>
    /// <exception cref="InvalidOperationException">The index is inconsistent.</exception>
    internal void CheckIntegrity()
    {
        foreach (KeyValuePair<RequestId, RequestState> entry in _requests)
        {
            entry.Value.CheckIntegrity(entry.Key);
        }
    }

    private RequestState GetState(RequestId request) =>
        _requests.TryGetValue(request, out RequestState? state) ? state : throw new UnknownRequestException(request, Name);

    private static void ThrowIfNegativeToken(ReadOnlySpan<int> tokens, string paramName)
    {
        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] < 0)
            {
                throw new ArgumentException($"Token {i} is {tokens[i]}: token ids must be >= 0.", paramName);
            }
        }
    }

    private static int[] CreateChainParents(int length)
    {
        var parents = new int[length];
        for (int i = 0; i < length; i++)
        {
            parents[i] = i - 1;
        }
        return parents;
    }

    private const ulong HashSeed = 0x243F6A8885A308D3UL;

    // Extends the hash of an n-gram by the token before it (n-grams are hashed from their last token backwards, so the
    // hashes of the n-grams ending at one position come out of one pass for n = 1, 2, ...).
    private static ulong Mix(ulong hash, int token)
    {
        hash = (hash ^ (uint)token) * 0x9E3779B97F4A7C15UL;
        hash ^= hash >> 29;
        hash *= 0xBF58476D1CE4E5B9UL;
        return hash ^ (hash >> 32);
    }

    /// <summary>One request's context and its n-gram index.</summary>
    private sealed class RequestState
    {
        private readonly int _minNgram;
        private readonly int _maxNgram;
        private readonly int _lengths; // MaxNgram - MinNgram + 1: n-gram lengths indexed
        private readonly ulong _hashMask;
        private readonly MatchLengthRule? _lengthRule;
        // _heads[n - MinNgram]: masked hash of an n-gram -> last position where an n-gram with that key ends.
        private readonly Dictionary<ulong, int>[] _heads;
        private int[] _tokens;
        // _previous[end * _lengths + (n - MinNgram)]: the previous end position with the same key, or -1.
        private int[] _previous;
        private int _length;
        private long _estimatedBytes;

        public RequestState(PromptLookupDrafter owner, int promptLength)
        {
            _minNgram = owner._minNgram;
            _maxNgram = owner._maxNgram;
            _lengths = _maxNgram - _minNgram + 1;
            _hashMask = owner._hashMask;
            _lengthRule = owner._lengthRule;
            _heads = new Dictionary<ulong, int>[_lengths];
            for (int i = 0; i < _lengths; i++)
            {
                _heads[i] = new Dictionary<ulong, int>(promptLength);
            }
            int capacity = Math.Max(16, promptLength + 64);
            if ((long)capacity * _lengths > Array.MaxLength)
            {
                throw TooLong();
            }
            _tokens = new int[capacity];
            _previous = new int[capacity * _lengths];
        }

        public int Length => _length;

        public long EstimatedBytes => Volatile.Read(ref _estimatedBytes);

        /// <summary>Appends tokens (already validated) and indexes every n-gram that now ends before the last token.</summary>
        public void Append(ReadOnlySpan<int> tokens)
        {
            if (tokens.IsEmpty)
            {
                return;
            }
            EnsureCapacity((long)_length + tokens.Length);
            foreach (int token in tokens)
            {
                // The index lags one token behind: n-grams ending at the last position have no continuation yet, and the
                // suffix being matched must never match itself.
                if (_length > 0)
                {
                    Index(_length - 1);
                }
                _tokens[_length++] = token;
            }
            UpdateEstimate();
        }

        public DraftTree Propose(int maxTokens)
        {
            int length = _length;
            // An earlier occurrence of an n-gram suffix must end at length - 2 or before, so n <= length - 1.
            int longest = Math.Min(_maxNgram, length - 1);
            if (longest < _minNgram)
            {
                return DraftTree.Empty;
            }
            ReadOnlySpan<int> context = _tokens.AsSpan(0, length);
            Span<ulong> suffixKeys = stackalloc ulong[MaxSupportedNgram];
            ulong hash = HashSeed;
            for (int n = 1; n <= longest; n++)
            {
                hash = Mix(hash, context[length - n]);
                suffixKeys[n - 1] = hash & _hashMask;
            }
            for (int n = longest; n >= _minNgram; n--)
            {
                int slot = n - _minNgram;
                if (!_heads[slot].TryGetValue(suffixKeys[n - 1], out int end))
                {
                    continue;
                }
                ReadOnlySpan<int> suffix = context.Slice(length - n, n);
                for (; end >= 0; end = _previous[end * _lengths + slot])
                {
                    if (!context.Slice(end - n + 1, n).SequenceEqual(suffix))
                    {
                        continue; // a hash collision: keep walking the chain
                    }
                    int draftLength = Math.Min(maxTokens, length - 1 - end);
                    if (_lengthRule is MatchLengthRule rule)
                    {
                        draftLength = Math.Min(draftLength, rule.Limit(n));
                    }
                    // A rule that allows nothing for this match allows nothing for shorter ones either (the limit never
                    // decreases with the match length), so there is no point in trying them.
                    return draftLength <= 0
                        ? DraftTree.Empty
                        : DraftTree.Create(context.Slice(end + 1, draftLength), s_chainParents.AsSpan(0, draftLength),
                            default, maxTokens, matchLength: n);
                }
            }
            return DraftTree.Empty;
        }

        public void CheckIntegrity(RequestId request)
        {
            if (_length > _tokens.Length || (long)_tokens.Length * _lengths != _previous.Length)
            {
                throw Broken(request, $"length {_length}, token capacity {_tokens.Length}, chain capacity {_previous.Length}");
            }
            for (int slot = 0; slot < _lengths; slot++)
            {
                int n = slot + _minNgram;
                int expected = Math.Max(0, _length - n); // n-grams ending at n - 1 .. length - 2
                int visited = 0;
                foreach (KeyValuePair<ulong, int> head in _heads[slot])
                {
                    int last = int.MaxValue;
                    for (int end = head.Value; end >= 0; end = _previous[end * _lengths + slot])
                    {
                        if (end >= last || end < n - 1 || end > _length - 2)
                        {
                            throw Broken(request, $"n = {n}: chain of key {head.Key:x} reaches position {end} after {last}");
                        }
                        if (KeyAt(end, n) != head.Key)
                        {
                            throw Broken(request, $"n = {n}: position {end} is on the chain of key {head.Key:x} but has key {KeyAt(end, n):x}");
                        }
                        last = end;
                        if (++visited > expected)
                        {
                            throw Broken(request, $"n = {n}: more than {expected} positions on the chains");
                        }
                    }
                }
                if (visited != expected)
                {
                    throw Broken(request, $"n = {n}: {visited} positions on the chains, expected {expected}");
                }
            }
        }

        private void Index(int end)
        {
            int longest = Math.Min(_maxNgram, end + 1);
            ulong hash = HashSeed;
            for (int n = 1; n <= longest; n++)
            {
                hash = Mix(hash, _tokens[end - n + 1]);
                if (n < _minNgram)
                {
                    continue;
                }
                int slot = n - _minNgram;
                ref int head = ref CollectionsMarshal.GetValueRefOrAddDefault(_heads[slot], hash & _hashMask, out bool exists);
                _previous[end * _lengths + slot] = exists ? head : -1;
                head = end;
            }
        }

        private ulong KeyAt(int end, int n)
        {
            ulong hash = HashSeed;
            for (int i = 0; i < n; i++)
            {
                hash = Mix(hash, _tokens[end - i]);
            }
            return hash & _hashMask;
        }

        private void EnsureCapacity(long needed)
        {
            if (needed <= _tokens.Length)
            {
                return;
            }
            long capacity = Math.Max(needed, 2L * _tokens.Length);
            long maxTokens = Array.MaxLength / _lengths;
            if (needed > maxTokens)
            {
                throw TooLong();
            }
            capacity = Math.Min(capacity, maxTokens);
            Array.Resize(ref _tokens, (int)capacity);
            Array.Resize(ref _previous, (int)capacity * _lengths);
        }

        private void UpdateEstimate()
        {
            const long ArrayOverhead = 24;
            const long DictionaryOverhead = 80 + 2 * ArrayOverhead;
            const long BytesPerEntry = 24 + 4; // Entry { uint hash; int next; ulong key; int value } padded, plus a bucket
            long bytes = ArrayOverhead + 4L * _tokens.Length + ArrayOverhead + 4L * _previous.Length;
            foreach (Dictionary<ulong, int> heads in _heads)
            {
                bytes += DictionaryOverhead + BytesPerEntry * heads.EnsureCapacity(0);
            }
            Volatile.Write(ref _estimatedBytes, bytes);
        }

        private InvalidOperationException TooLong() =>
            new($"prompt-lookup: a context cannot exceed {Array.MaxLength / _lengths} tokens with {_lengths} n-gram lengths indexed.");

        private static InvalidOperationException Broken(RequestId request, string what) =>
            new($"prompt-lookup index of request {request} is inconsistent: {what}.");
    }
}
