namespace SpecDecode.Suffix;

/// <summary>Sizes and bounds of a <see cref="SuffixDecodingCache"/>.</summary>
public sealed record SuffixCacheOptions
{
    /// <summary>Longest suffix, in tokens, indexed by every tree (SuffixDecoding's default 64).</summary>
    public int MaxDepth { get; init; } = 64;

    /// <summary>Most responses kept in the global tree: <c>-1</c> unbounded, <c>0</c> disables the global tree.
    /// Oldest first (FIFO by request start) are evicted, ended requests before active ones.</summary>
    public int MaxCachedResponses { get; init; } = -1;

    /// <summary>Most tokens kept in the global tree over all cached responses: <c>-1</c> unbounded.</summary>
    public long MaxCachedTokens { get; init; } = -1;

    /// <summary>Most ended conversations whose context tree is kept for the conversation's next request (least recently
    /// used are dropped): <c>0</c> keeps none.</summary>
    public int MaxCachedConversations { get; init; } = 64;

    /// <summary>Most tokens kept over all cached conversation trees: <c>-1</c> unbounded.</summary>
    public long MaxConversationTokens { get; init; } = 16_000_000;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxDepth, 1, nameof(MaxDepth));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDepth, 4096, nameof(MaxDepth));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxCachedResponses, -1, nameof(MaxCachedResponses));
        if (MaxCachedTokens < -1 || MaxCachedTokens == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxCachedTokens), MaxCachedTokens,
                "Use -1 for no bound or a positive token count; to turn the global tree off set MaxCachedResponses = 0.");
        }
        ArgumentOutOfRangeException.ThrowIfNegative(MaxCachedConversations, nameof(MaxCachedConversations));
        if (MaxConversationTokens < -1 || MaxConversationTokens == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConversationTokens), MaxConversationTokens,
                "Use -1 for no bound or a positive token count; to keep no conversation set MaxCachedConversations = 0.");
        }
    }
}

/// <summary>Counters of a <see cref="SuffixDecodingCache"/>, read with <see cref="SuffixDecodingCache.GetStatistics"/>.</summary>
/// <param name="ActiveRequests">Requests started and not ended.</param>
/// <param name="CachedResponses">Responses in the global tree.</param>
/// <param name="CachedResponseTokens">Tokens in the global tree.</param>
/// <param name="CachedConversations">Ended conversations whose context tree is kept.</param>
/// <param name="CachedConversationTokens">Tokens over those trees.</param>
/// <param name="EvictedResponses">Responses evicted from the global tree so far.</param>
/// <param name="ConversationReuses">Requests that continued a cached conversation tree instead of building one.</param>
/// <param name="ConversationRebuilds">Requests with a conversation id whose cached tree did not fit the prompt (rebuilt).</param>
/// <param name="PromptTokensInserted">Prompt tokens inserted into request trees (reused ones not counted).</param>
/// <param name="PromptTokensReused">Prompt tokens found already indexed in a reused conversation tree.</param>
/// <param name="GlobalTreeBytes">Bytes held by the global tree of responses (see <see cref="SuffixTree.EstimateMemoryBytes"/>).</param>
public readonly record struct SuffixCacheStatistics(
    int ActiveRequests,
    int CachedResponses,
    long CachedResponseTokens,
    int CachedConversations,
    long CachedConversationTokens,
    long EvictedResponses,
    long ConversationReuses,
    long ConversationRebuilds,
    long PromptTokensInserted,
    long PromptTokensReused,
    long GlobalTreeBytes)
{
    /// <summary>Bytes of the global tree per cached response token (0 when it is empty).</summary>
    public double GlobalBytesPerToken => CachedResponseTokens == 0 ? 0 : (double)GlobalTreeBytes / CachedResponseTokens;
}
