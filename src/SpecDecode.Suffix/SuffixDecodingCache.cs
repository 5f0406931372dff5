using System.Collections.Concurrent;

namespace SpecDecode.Suffix;

/// <summary>
/// SuffixDecoding's cache: a global suffix tree over the responses of earlier and current requests, and per request a
/// suffix tree of its own context (prompt plus the tokens generated so far). Drafts come from both; the better score wins.
/// </summary>
/// <remarks>
/// <para>Oliaro et al., 2024, "SuffixDecoding: Extreme Speculative Decoding for Emerging AI Applications"; the same roles as
/// ArcticInference's <c>SuffixDecodingCache</c> (prompt tree per request, global tree of responses, FIFO eviction).</para>
/// <para>Beyond the reference: a request that names a conversation (<see cref="DraftRequestOptions.ConversationId"/>) whose
/// previous request's context is a prefix of the new prompt continues that request's tree and inserts only the new
/// tokens, so an agent's hundredth call does not re-index a 100k-token prompt.</para>
/// <para>Threading: calls for different requests may run concurrently. Drafting from the global tree takes a shared
/// lock; adding generated tokens and evicting take it exclusively (one writer at a time). Each request's own tree is
/// touched by calls for that request, which must not overlap, under a lock of the request's own that only
/// <see cref="CheckIntegrity"/> and <see cref="EstimateMemoryBytes"/> contend for (they read every request's tree from
/// another thread).</para>
/// </remarks>
public sealed partial class SuffixDecodingCache : IDisposable
{
    private const string Owner = nameof(SuffixDecodingCache);

    private readonly SuffixCacheOptions _options;
    private readonly SuffixTree _global;
    private readonly ReaderWriterLockSlim _globalLock = new(LockRecursionPolicy.NoRecursion);
    private readonly ConcurrentDictionary<RequestId, RequestState> _requests = new();
    // Responses in the global tree in insertion order (guarded by the write lock).
    private readonly LinkedList<CachedResponse> _responses = new();
    private readonly HashSet<int> _cachedIds = new();
    private int _nextSequenceId;
    private long _evicted;

    private readonly Lock _conversationGate = new();
    private readonly Dictionary<string, LinkedListNode<CachedConversation>> _conversations = new(StringComparer.Ordinal);
    private readonly LinkedList<CachedConversation> _conversationLru = new();   // most recently used last
    private long _conversationTokens;
    private long _reuses, _rebuilds, _inserted, _reused;
    private bool _disposed;

    [ThreadStatic] private static DraftBuffer t_local, t_global, t_scratch;
    [ThreadStatic] private static DraftTrie? t_trie;
    private readonly AcceptanceModel _acceptance = new();

    /// <summary>Creates an empty cache.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message says which and why.</exception>
    public SuffixDecodingCache(SuffixCacheOptions? options = null)
    {
        _options = options ?? new SuffixCacheOptions();
        _options.Validate();
        _global = new SuffixTree(_options.MaxDepth);
    }

    /// <summary>The options the cache was built with.</summary>
    public SuffixCacheOptions Options => _options;

    /// <summary>Starts a request: indexes its prompt (or continues its conversation's tree) and opens a slot for its
    /// response in the global tree, evicting the oldest responses if a bound requires.</summary>
    /// <exception cref="DuplicateRequestException">The request is already active.</exception>
    /// <exception cref="ArgumentException">The id is invalid or a prompt token is negative.</exception>
    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        ThrowIfDisposed();
        if (!request.IsValid)
        {
            throw new ArgumentException("RequestId.Invalid names no request.", nameof(request));
        }
        CheckTokens(prompt, nameof(prompt));
        if (_requests.ContainsKey(request))
        {
            throw new DuplicateRequestException(request, Owner);
        }

        string? conversation = options?.ConversationId;
        SuffixTree local = TakeConversationTree(conversation, prompt) ?? NewContextTree(prompt);
        var state = new RequestState(local, conversation);
        if (!_requests.TryAdd(request, state))
        {
            throw new DuplicateRequestException(request, Owner);
        }

        if (_options.MaxCachedResponses != 0)
        {
            _globalLock.EnterWriteLock();
            try
            {
                int id = NextSequenceId();
                state.Response = new CachedResponse(id);
                _responses.AddLast(state.Response.Node);
                EvictOverBounds(keep: state.Response.Node);
            }
            finally
            {
                _globalLock.ExitWriteLock();
            }
        }
    }

    /// <summary>Appends generated tokens to the request's context and to its cached response.</summary>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    /// <exception cref="ArgumentException">A token is negative (nothing is appended).</exception>
    public void AddTokens(RequestId request, ReadOnlySpan<int> tokens)
    {
        ThrowIfDisposed();
        CheckTokens(tokens, nameof(tokens));
        RequestState state = Get(request);
        lock (state.Gate)
        {
            state.Context.Extend(0, tokens);
            state.LearnFrom(tokens, _acceptance);
        }
        CachedResponse? response = state.Response;
        if (response is null || response.Evicted || tokens.IsEmpty)
        {
            return;
        }
        _globalLock.EnterWriteLock();
        try
        {
            if (!response.Evicted)
            {
                _global.Extend(response.SequenceId, tokens);
                response.Tokens += tokens.Length;
                EvictOverBounds(keep: null);
            }
        }
        finally
        {
            _globalLock.ExitWriteLock();
        }
    }

    /// <summary>Drafts a continuation of the request's context from its own tree and from the global tree, and returns
    /// the draft with the higher score (the request's own on a tie).</summary>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The settings are out of range.</exception>
    public DraftTree Speculate(RequestId request, in SpeculationSettings settings)
    {
        ThrowIfDisposed();
        settings.Validate();
        RequestState state = Get(request);
        if (settings.MaxTokens == 0)
        {
            return DraftTree.Empty;
        }
        lock (state.Gate)
        {
            return Speculate(state, settings);
        }
    }

    /// <summary><see cref="Speculate(RequestId, in SpeculationSettings)"/> for a request whose lock the caller holds.</summary>
    private DraftTree Speculate(RequestState state, in SpeculationSettings settings)
    {
        ReadOnlySpan<int> context = state.ContextTokens;
        if (context.Length > _options.MaxDepth)
        {
            context = context[^_options.MaxDepth..];
        }
        bool calibrated = settings.CalibratedThreshold > 0f;
        DraftTrie? trie = null;
        if (calibrated && settings.MergeCandidates)
        {
            trie = t_trie ??= new DraftTrie();
            trie.Clear();
        }
        if (calibrated)
        {
            state.Context.SpeculateCalibrated(context, settings.MaxTokens, settings.CalibratedThreshold, settings.UseTree, 0,
                _acceptance, ref t_local, ref t_scratch, trie);
        }
        else
        {
            state.Context.SpeculateInto(context, settings, ref t_local, ref t_scratch);
        }
        bool useGlobal = false;
        if (_options.MaxCachedResponses != 0)
        {
            _globalLock.EnterReadLock();
            try
            {
                if (calibrated)
                {
                    _global.SpeculateCalibrated(context, settings.MaxTokens, settings.CalibratedThreshold, settings.UseTree, 1,
                        _acceptance, ref t_global, ref t_scratch, trie);
                }
                else
                {
                    _global.SpeculateInto(context, settings, ref t_global, ref t_scratch);
                }
            }
            finally
            {
                _globalLock.ExitReadLock();
            }
            useGlobal = t_global.Score > t_local.Score;
        }
        if (trie is not null)
        {
            trie.Emit(settings.MaxTokens, ref t_local);
            useGlobal = false;
        }
        ref DraftBuffer chosen = ref useGlobal ? ref t_global : ref t_local;
        if (calibrated)
        {
            state.RememberDraft(chosen);
        }
        return chosen.ToDraftTree();
    }

    /// <summary>Ends a request. Its response stays in the global tree until evicted; with a conversation id its context
    /// tree is kept for the conversation's next request.</summary>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    public void EndRequest(RequestId request)
    {
        ThrowIfDisposed();
        if (!_requests.TryRemove(request, out RequestState? state))
        {
            throw new UnknownRequestException(request, Owner);
        }
        lock (state.Gate)
        {
            state.Ended = true;   // its tree may now pass to the conversation cache and to another request
        }
        if (state.Response is { } response)
        {
            response.Ended = true;
            if (!response.Evicted)
            {
                // The response is complete: trim its storage to its length (drafts do not change).
                _globalLock.EnterWriteLock();
                try
                {
                    if (!response.Evicted)
                    {
                        _global.Seal(response.SequenceId);
                    }
                }
                finally
                {
                    _globalLock.ExitWriteLock();
                }
            }
        }
        if (state.Conversation is not null && _options.MaxCachedConversations > 0)
        {
            KeepConversationTree(state.Conversation, state.Context);
        }
    }

    /// <summary>True while the request is active.</summary>
    public bool IsActive(RequestId request) => _requests.ContainsKey(request);

    /// <summary>The request's context: its prompt followed by the tokens added so far (a copy).</summary>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    public int[] GetContext(RequestId request)
    {
        RequestState state = Get(request);
        lock (state.Gate)
        {
            return state.ContextTokens.ToArray();
        }
    }

    /// <summary>Draft-token outcomes the calibrated drafting has learned from; for tests.</summary>
    internal long CalibrationObservations => _acceptance.Observations;

    /// <summary>The request's own tree; for tests.</summary>
    internal SuffixTree ContextTreeOf(RequestId request) => Get(request).Context;

    /// <summary>Counters: cached responses and tokens, conversations, reuse and eviction totals, global-tree bytes.
    /// Cost: O(cached responses), under the shared lock; not for every step.</summary>
    public SuffixCacheStatistics GetStatistics()
    {
        int responses;
        long responseTokens, evicted, globalBytes;
        _globalLock.EnterReadLock();
        try
        {
            responses = _responses.Count;
            responseTokens = _global.TokenCount;
            evicted = _evicted;
            globalBytes = _global.EstimateMemoryBytes();
        }
        finally
        {
            _globalLock.ExitReadLock();
        }
        lock (_conversationGate)
        {
            return new SuffixCacheStatistics(_requests.Count, responses, responseTokens, _conversations.Count, _conversationTokens,
                evicted, _reuses, _rebuilds, _inserted, _reused, globalBytes);
        }
    }

    /// <summary>Bytes held: the global tree, every active request's tree and every cached conversation tree.</summary>
    public long EstimateMemoryBytes()
    {
        long total;
        _globalLock.EnterReadLock();
        try
        {
            total = _global.EstimateMemoryBytes();
        }
        finally
        {
            _globalLock.ExitReadLock();
        }
        foreach (RequestState state in _requests.Values)
        {
            lock (state.Gate)
            {
                total += state.Ended ? 0 : state.Context.EstimateMemoryBytes();
            }
        }
        lock (_conversationGate)
        {
            foreach (CachedConversation c in _conversationLru)
            {
                total += c.Tree.EstimateMemoryBytes();
            }
        }
        return total;
    }

    /// <summary>Checks every tree's invariants (see <see cref="SuffixTree.CheckIntegrity"/>) and the cache's bounds.</summary>
    /// <exception cref="SuffixTreeIntegrityException">An invariant is broken.</exception>
    public void CheckIntegrity()
    {
        _globalLock.EnterReadLock();
        try
        {
            _global.CheckIntegrity();
            long tokens = 0;
            foreach (CachedResponse r in _responses)
            {
                tokens += r.Tokens;
                if (r.Tokens != (_global.Contains(r.SequenceId) ? _global.SequenceLength(r.SequenceId) : 0))
                {
                    throw new SuffixTreeIntegrityException($"cached response {r.SequenceId} counts {r.Tokens} tokens, the tree holds another number");
                }
            }
            if (tokens != _global.TokenCount || _responses.Count < _global.SequenceCount)
            {
                throw new SuffixTreeIntegrityException("the global tree holds sequences the cache does not track");
            }
            if (_options.MaxCachedResponses > 0 && _responses.Count > _options.MaxCachedResponses)
            {
                throw new SuffixTreeIntegrityException($"{_responses.Count} cached responses exceed the bound {_options.MaxCachedResponses}");
            }
            if (_options.MaxCachedTokens > 0 && tokens > _options.MaxCachedTokens)
            {
                throw new SuffixTreeIntegrityException($"{tokens} cached tokens exceed the bound {_options.MaxCachedTokens}");
            }
        }
        finally
        {
            _globalLock.ExitReadLock();
        }
        foreach (RequestState state in _requests.Values)
        {
            lock (state.Gate)
            {
                if (!state.Ended)
                {
                    state.Context.CheckIntegrity();
                }
            }
        }
        lock (_conversationGate)
        {
            foreach (CachedConversation c in _conversationLru)
            {
                c.Tree.CheckIntegrity();
            }
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _requests.Clear();
        _globalLock.Dispose();
    }

    // ------------------------------------------------------------------------------------------------ internals

    private RequestState Get(RequestId request) =>
        _requests.TryGetValue(request, out RequestState? state) ? state : throw new UnknownRequestException(request, Owner);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private static void CheckTokens(ReadOnlySpan<int> tokens, string name)
    {
        foreach (int t in tokens)
        {
            if (t < 0)
            {
                throw new ArgumentOutOfRangeException(name, t, "Token ids must be non-negative; nothing was changed.");
            }
        }
    }

    private SuffixTree NewContextTree(ReadOnlySpan<int> prompt)
    {
        var tree = new SuffixTree(_options.MaxDepth);
        tree.Extend(0, prompt);
        Interlocked.Add(ref _inserted, prompt.Length);
        return tree;
    }

    /// <summary>Takes the conversation's cached tree when its context is a prefix of the prompt, extended by the rest.</summary>
    private SuffixTree? TakeConversationTree(string? conversation, ReadOnlySpan<int> prompt)
    {
        if (conversation is null)
        {
            return null;
        }
        CachedConversation? cached;
        lock (_conversationGate)
        {
            if (!_conversations.Remove(conversation, out var node))
            {
                return null;
            }
            cached = node.Value;
            _conversationLru.Remove(node);
            _conversationTokens -= cached.Tree.TokenCount;
        }
        ReadOnlySpan<int> knownTokens = cached.Tree.Contains(0) ? cached.Tree.SequenceTokens(0) : default;
        if (knownTokens.Length > prompt.Length || !prompt[..knownTokens.Length].SequenceEqual(knownTokens))
        {
            Interlocked.Increment(ref _rebuilds);
            return null;
        }
        int reused = knownTokens.Length;
        cached.Tree.Extend(0, prompt[reused..]);
        Interlocked.Increment(ref _reuses);
        Interlocked.Add(ref _reused, reused);
        Interlocked.Add(ref _inserted, prompt.Length - reused);
        return cached.Tree;
    }

    private void KeepConversationTree(string conversation, SuffixTree tree)
    {
        lock (_conversationGate)
        {
            if (_conversations.Remove(conversation, out var old))
            {
                _conversationLru.Remove(old);
                _conversationTokens -= old.Value.Tree.TokenCount;
            }
            long limit = _options.MaxConversationTokens;
            if (limit > 0 && tree.TokenCount > limit)
            {
                return;   // larger than the whole budget: not kept
            }
            _conversations[conversation] = _conversationLru.AddLast(new CachedConversation(conversation, tree));
            _conversationTokens += tree.TokenCount;
            while (_conversations.Count > _options.MaxCachedConversations || (limit > 0 && _conversationTokens > limit))
            {
                CachedConversation oldest = _conversationLru.First!.Value;
                _conversationLru.RemoveFirst();
                _conversations.Remove(oldest.Id);
                _conversationTokens -= oldest.Tree.TokenCount;
            }
        }
    }

    private int NextSequenceId()
    {
        // Ids only need to be unique among cached responses; they wrap around within the non-negative ints.
        while (true)
        {
            int id = _nextSequenceId;
            _nextSequenceId = id == int.MaxValue ? 0 : id + 1;
            if (_cachedIds.Add(id))
            {
                return id;
            }
        }
    }

    /// <summary>Evicts oldest responses (ended before active) until both bounds hold. Caller holds the write lock.</summary>
    private void EvictOverBounds(LinkedListNode<CachedResponse>? keep)
    {
        int maxResponses = _options.MaxCachedResponses;
        long maxTokens = _options.MaxCachedTokens;
        while ((maxResponses > 0 && _responses.Count > maxResponses) || (maxTokens > 0 && _global.TokenCount > maxTokens))
        {
            LinkedListNode<CachedResponse>? victim = null;
            for (var n = _responses.First; n is not null; n = n.Next)
            {
                if (n.Value.Ended && n != keep)
                {
                    victim = n;
                    break;
                }
            }
            victim ??= _responses.First == keep ? _responses.First?.Next : _responses.First;
            if (victim is null)
            {
                return;   // only the response being added is left and it cannot go; it is empty so bounds hold
            }
            _global.Remove(victim.Value.SequenceId);
            _cachedIds.Remove(victim.Value.SequenceId);
            _responses.Remove(victim);
            // An active request whose response was evicted keeps drafting from its own tree and the rest of the cache.
            victim.Value.Evicted = true;
            _evicted++;
        }
    }

    private sealed class RequestState(SuffixTree context, string? conversation)
    {
        public readonly SuffixTree Context = context;
        public readonly string? Conversation = conversation;
        public CachedResponse? Response;

        /// <summary>Held while the request's tree is read or written; see the class remarks.</summary>
        public readonly Lock Gate = new();

        /// <summary>Set (under <see cref="Gate"/>) when the request ends: its tree then belongs to the conversation cache.</summary>
        public bool Ended;

        // The last calibrated draft, kept until the next tokens tell which of its nodes the target accepted.
        private int[] _draftTokens = [], _draftParents = [], _draftCells = [], _draftDepths = [];
        private bool[] _draftAccepted = [];
        private int _draftCount;

        public void RememberDraft(in DraftBuffer draft)
        {
            int n = draft.Count;
            if (_draftTokens.Length < n)
            {
                int size = Math.Max(n, 2 * _draftTokens.Length);
                (_draftTokens, _draftParents, _draftCells, _draftDepths, _draftAccepted) =
                    (new int[size], new int[size], new int[size], new int[size], new bool[size]);
            }
            draft.Tokens.AsSpan(0, n).CopyTo(_draftTokens);
            draft.Parents.AsSpan(0, n).CopyTo(_draftParents);
            draft.Cells.AsSpan(0, n).CopyTo(_draftCells);
            _draftCount = n;
        }

        /// <summary>Teaches the model the outcome of the last draft: a node whose parent was accepted is a trial, accepted
        /// when its token is the one emitted at its depth. Nodes deeper than the emitted tokens reach are not judged.</summary>
        public void LearnFrom(ReadOnlySpan<int> emitted, AcceptanceModel model)
        {
            for (int i = 0; i < _draftCount; i++)
            {
                int parent = _draftParents[i];
                _draftAccepted[i] = false;
                if (parent >= 0 && !_draftAccepted[parent])
                {
                    continue;
                }
                int depth = _draftDepths[i] = parent < 0 ? 1 : _draftDepths[parent] + 1;
                if (depth > emitted.Length)
                {
                    continue;
                }
                bool accepted = _draftTokens[i] == emitted[depth - 1];
                _draftAccepted[i] = accepted;
                model.Record(_draftCells[i], accepted);
            }
            _draftCount = 0;
        }

        /// <summary>The prompt and the tokens added since (sequence 0 of the request's tree; absent while empty).</summary>
        public ReadOnlySpan<int> ContextTokens => Context.Contains(0) ? Context.SequenceTokens(0) : default;
    }

    /// <summary>A response slot in the global tree. It must not reference its request's state: a cached response
    /// outlives the request, and holding the request would keep its whole context tree alive.</summary>
    private sealed class CachedResponse
    {
        public CachedResponse(int sequenceId)
        {
            SequenceId = sequenceId;
            Node = new LinkedListNode<CachedResponse>(this);
        }

        public readonly int SequenceId;
        public readonly LinkedListNode<CachedResponse> Node;
        public long Tokens;
        public volatile bool Ended;
        public volatile bool Evicted;
    }

    private sealed record CachedConversation(string Id, SuffixTree Tree);
}
