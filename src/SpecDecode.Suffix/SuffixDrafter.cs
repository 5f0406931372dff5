namespace SpecDecode.Suffix;

/// <summary>Options of a <see cref="SuffixDrafter"/>: the cache's bounds and how drafts are grown.</summary>
public sealed record SuffixDrafterOptions
{
    /// <summary>Longest suffix, in tokens, indexed (SuffixDecoding's default 64).</summary>
    public int MaxDepth { get; init; } = 64;

    /// <summary>Draft tokens allowed per matched context token (SuffixDecoding's <c>max_spec_factor</c>).</summary>
    public float MaxSpecFactor { get; init; } = 1f;

    /// <summary>Draft tokens added to the match-proportional allowance (<c>max_spec_offset</c>).</summary>
    public float MaxSpecOffset { get; init; } = 0f;

    /// <summary>A branch stops growing once its estimated probability falls below this (<c>min_token_prob</c>).</summary>
    public float MinTokenProbability { get; init; } = 0.1f;

    /// <summary>False: path drafts (one chain). True: tree drafts grown best-first.</summary>
    public bool UseTree { get; init; }

    /// <summary>
    /// 0: SuffixDecoding's count-based drafts, shaped by <see cref="MaxSpecFactor"/>, <see cref="MaxSpecOffset"/> and
    /// <see cref="MinTokenProbability"/> (the reference behaviour). Above 0: calibrated drafts (see
    /// <see cref="SpeculationSettings.CalibratedThreshold"/>): the drafter learns from each step's outcome how likely its
    /// tokens are to be accepted and keeps every token whose estimate stays at or above this value.
    /// </summary>
    public float CalibratedThreshold { get; init; }

    /// <summary>See <see cref="SpeculationSettings.MergeCandidates"/>; needs <see cref="CalibratedThreshold"/> above 0.</summary>
    public bool MergeCandidates { get; init; }

    /// <summary>See <see cref="SuffixCacheOptions.MaxCachedResponses"/>.</summary>
    public int MaxCachedResponses { get; init; } = -1;

    /// <summary>See <see cref="SuffixCacheOptions.MaxCachedTokens"/>.</summary>
    public long MaxCachedTokens { get; init; } = -1;

    /// <summary>See <see cref="SuffixCacheOptions.MaxCachedConversations"/>.</summary>
    public int MaxCachedConversations { get; init; } = 64;

    /// <summary>See <see cref="SuffixCacheOptions.MaxConversationTokens"/>.</summary>
    public long MaxConversationTokens { get; init; } = 16_000_000;

    /// <summary>The largest budget <see cref="SuffixDrafter.Propose"/> accepts.</summary>
    public int MaxBudget { get; init; } = 1024;
}

/// <summary>
/// The SuffixDecoding drafter: drafts from a suffix tree of the request's own context and a global suffix tree of
/// earlier responses, with the draft length adapted to the match length. No model, no native code.
/// </summary>
/// <remarks>Oliaro et al., 2024, "SuffixDecoding: Extreme Speculative Decoding for Emerging AI Applications". The cache is
/// <see cref="SuffixDecodingCache"/>; this class maps the <see cref="IDrafter"/> lifecycle onto it.</remarks>
public sealed class SuffixDrafter : IDrafter
{
    private readonly SuffixDrafterOptions _options;

    /// <summary>Creates a drafter with its own empty cache.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range; the message says which.</exception>
    public SuffixDrafter(SuffixDrafterOptions? options = null)
    {
        _options = options ?? new SuffixDrafterOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.MaxBudget, 1, nameof(SuffixDrafterOptions.MaxBudget));
        if (_options.MergeCandidates && _options.CalibratedThreshold == 0f)
        {
            throw new ArgumentException(
                "MergeCandidates needs calibrated drafting: set CalibratedThreshold above 0 (e.g. 0.11), or leave MergeCandidates off.",
                nameof(options));
        }
        // Validates factor, offset and probability up front rather than at the first draft.
        new SpeculationSettings(0, new MatchLengthRule(0, _options.MaxSpecFactor, _options.MaxSpecOffset),
            _options.MinTokenProbability, _options.UseTree) { CalibratedThreshold = _options.CalibratedThreshold }.Validate();
        Cache = new SuffixDecodingCache(new SuffixCacheOptions
        {
            MaxDepth = _options.MaxDepth,
            MaxCachedResponses = _options.MaxCachedResponses,
            MaxCachedTokens = _options.MaxCachedTokens,
            MaxCachedConversations = _options.MaxCachedConversations,
            MaxConversationTokens = _options.MaxConversationTokens,
        });
    }

    /// <summary>The options the drafter was built with.</summary>
    public SuffixDrafterOptions Options => _options;

    /// <summary>The underlying cache (statistics, memory, integrity checks).</summary>
    public SuffixDecodingCache Cache { get; }

    /// <inheritdoc />
    public string Name =>
        (_options.UseTree ? "suffix-tree" : "suffix")
        + (_options.CalibratedThreshold > 0 ? "-calibrated" : "")
        + (_options.CalibratedThreshold > 0 && _options.MergeCandidates ? "-merged" : "");

    /// <inheritdoc />
    public int MaxBudget => _options.MaxBudget;

    /// <inheritdoc />
    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options) =>
        Cache.StartRequest(request, prompt, options);

    /// <inheritdoc />
    public DraftTree Propose(RequestId request, int maxTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxTokens, _options.MaxBudget);
        var settings = new SpeculationSettings(maxTokens, new MatchLengthRule(maxTokens, _options.MaxSpecFactor, _options.MaxSpecOffset),
            _options.MinTokenProbability, _options.UseTree)
        {
            CalibratedThreshold = _options.CalibratedThreshold,
            MergeCandidates = _options.MergeCandidates,
        };
        return Cache.Speculate(request, settings);
    }

    /// <inheritdoc />
    public void Observe(RequestId request, ReadOnlySpan<int> emitted) => Cache.AddTokens(request, emitted);

    /// <inheritdoc />
    public void EndRequest(RequestId request) => Cache.EndRequest(request);

    /// <summary>Bytes held by the cache's trees (see <see cref="SuffixDecodingCache.EstimateMemoryBytes"/>).</summary>
    public long EstimateMemoryBytes() => Cache.EstimateMemoryBytes();

    /// <inheritdoc />
    public void Dispose() => Cache.Dispose();
}
