namespace SpecDecode.Suffix;

public sealed partial class SuffixDecodingCache
{
    /// <summary>
    /// Adds a whole response that was generated elsewhere (another replica of the same model, read from a broker) to
    /// the global tree, as if a request here had produced it and ended: it is sealed at once and evicted FIFO with the
    /// others, ended responses first.
    /// </summary>
    /// <remarks>
    /// <para>Thread-safe: takes the global tree's write lock once for the whole response, like one
    /// <see cref="AddTokens"/> call, so drafts of running requests wait at most one insertion (O(tokens × depth)).</para>
    /// <para>The cache does not know where a response came from: refusing duplicates and responses of another model is
    /// the caller's job (SpecDecode.Fleet keys responses by message id).</para>
    /// </remarks>
    /// <param name="tokens">The response's token ids (non-negative).</param>
    /// <returns>
    /// True when the response is now in the global tree; false when nothing was added: the response is empty, the
    /// global tree is off (<see cref="SuffixCacheOptions.MaxCachedResponses"/> = 0), or the response alone exceeds
    /// <see cref="SuffixCacheOptions.MaxCachedTokens"/> (it would evict everything and then itself).
    /// </returns>
    /// <exception cref="ArgumentOutOfRangeException">A token is negative (nothing is added).</exception>
    /// <exception cref="ObjectDisposedException">The cache is disposed.</exception>
    public bool AddResponse(ReadOnlySpan<int> tokens)
    {
        ThrowIfDisposed();
        CheckTokens(tokens, nameof(tokens));
        if (tokens.IsEmpty || _options.MaxCachedResponses == 0
            || (_options.MaxCachedTokens > 0 && tokens.Length > _options.MaxCachedTokens))
        {
            return false;
        }
        _globalLock.EnterWriteLock();
        try
        {
            var response = new CachedResponse(NextSequenceId()) { Ended = true };
            _responses.AddLast(response.Node);
            _global.Extend(response.SequenceId, tokens);
            _global.Seal(response.SequenceId);
            response.Tokens = tokens.Length;
            // The new response is the newest ended one, so it is the last to go; it stays unless it alone breaks a bound.
            EvictOverBounds(keep: null);
            return !response.Evicted;
        }
        finally
        {
            _globalLock.ExitWriteLock();
        }
    }
}
