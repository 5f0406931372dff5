namespace SpecDecode.Suffix;

/// <summary>Settings of a <see cref="PromptLookupDrafter"/>; validated by its constructor.</summary>
/// <remarks>
/// The defaults (n-grams of 1 to 4 tokens, no match-length rule) follow vLLM's <c>ngram</c> speculative method with
/// <c>prompt_lookup_min = 1</c> and <c>prompt_lookup_max = 4</c>.
/// </remarks>
public sealed record PromptLookupDrafterOptions
{
    /// <summary>
    /// The shortest suffix of the context, in tokens, that may be matched; at least 1. A shorter suffix matches more
    /// often but predicts worse.
    /// </summary>
    public int MinNgram { get; init; } = 1;

    /// <summary>
    /// The longest suffix of the context, in tokens, that is tried first; at least <see cref="MinNgram"/> and at most
    /// <see cref="PromptLookupDrafter.MaxSupportedNgram"/>. The index holds one entry per context token for every length
    /// in <see cref="MinNgram"/>..<see cref="MaxNgram"/>.
    /// </summary>
    public int MaxNgram { get; init; } = 4;

    /// <summary>
    /// Optional cap on the draft length by the length of the matched suffix (SuffixDecoding's adaptive speculation
    /// length); <c>null</c> (the default) caps a draft only by the budget and by the tokens that followed the match.
    /// </summary>
    public MatchLengthRule? LengthRule { get; init; }
}
