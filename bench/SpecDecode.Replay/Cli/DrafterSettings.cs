using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>Whether the suffix drafter proposes a single path or a tree.</summary>
public enum DraftMode
{
    /// <summary>One chain of tokens (the most likely continuation).</summary>
    Path,

    /// <summary>A tree of candidates, best-first under the budget.</summary>
    Tree,
}

/// <summary>The drafter settings the command line sets; <see cref="DrafterFactory"/> maps them onto each drafter's options.</summary>
public sealed record DrafterSettings
{
    /// <summary>Suffix drafter: deepest match and draft, in tokens (<c>--depth</c>).</summary>
    [JsonPropertyName("depth")] public int Depth { get; init; } = 64;

    /// <summary>Suffix drafter: draft tokens allowed per matched token (<c>--factor</c>).</summary>
    [JsonPropertyName("factor")] public float Factor { get; init; } = 1f;

    /// <summary>Suffix drafter: draft tokens added to the match-proportional allowance (<c>--offset</c>).</summary>
    [JsonPropertyName("offset")] public float Offset { get; init; }

    /// <summary>Suffix drafter: lowest estimated path probability a draft node may have (<c>--min-prob</c>).</summary>
    [JsonPropertyName("min_prob")] public float MinProbability { get; init; } = 0.1f;

    /// <summary>Suffix drafter: path or tree drafts (<c>--mode</c>).</summary>
    [JsonPropertyName("mode")] public DraftMode Mode { get; init; } = DraftMode.Path;

    /// <summary>Suffix drafter: calibrated drafting threshold, 0 for SuffixDecoding's count-based drafts (<c>--calibrated</c>).</summary>
    [JsonPropertyName("calibrated_threshold")] public float CalibratedThreshold { get; init; }

    /// <summary>Suffix drafter, calibrated only: merge every candidate into one tree (<c>--merge</c>).</summary>
    [JsonPropertyName("merge_candidates")] public bool MergeCandidates { get; init; }

    /// <summary>Suffix drafter: responses kept in the global cache, -1 for no bound (<c>--max-cached-responses</c>).</summary>
    [JsonPropertyName("max_cached_responses")] public int MaxCachedResponses { get; init; } = -1;

    /// <summary>Suffix drafter: tokens kept in the global cache, -1 for no bound (<c>--max-cached-tokens</c>).</summary>
    [JsonPropertyName("max_cached_tokens")] public long MaxCachedTokens { get; init; } = -1;

    /// <summary>Suffix drafter: ended conversations whose context tree is kept for their next call (<c>--max-cached-conversations</c>).</summary>
    [JsonPropertyName("max_cached_conversations")] public int MaxCachedConversations { get; init; } = 64;

    /// <summary>Prompt lookup: shortest n-gram matched (<c>--ngram-min</c>).</summary>
    [JsonPropertyName("ngram_min")] public int NgramMin { get; init; } = 1;

    /// <summary>Prompt lookup: longest n-gram matched (<c>--ngram-max</c>).</summary>
    [JsonPropertyName("ngram_max")] public int NgramMax { get; init; } = 4;
}
