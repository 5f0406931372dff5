namespace SpecDecode;

/// <summary>
/// One generation request: a prompt (text, token ids or chat messages: exactly one), how much to generate, when to stop
/// and how to sample.
/// </summary>
/// <remarks>An engine copies what it needs when the request is submitted; changing the object (or its
/// <see cref="Sampling"/>) afterwards does not affect a running request.</remarks>
public sealed record GenerationRequest
{
    /// <summary>The prompt as plain text, encoded as it is (no chat template, no BOS added).</summary>
    public string? Prompt { get; init; }

    /// <summary>The prompt as token ids, used as they are.</summary>
    public IReadOnlyList<int>? PromptTokens { get; init; }

    /// <summary>The prompt as chat messages, rendered with the checkpoint's chat template (the engine refuses them when the
    /// checkpoint has none) followed by the assistant turn's header.</summary>
    public IReadOnlyList<PromptMessage>? Messages { get; init; }

    /// <summary>The most tokens to generate (stop tokens not counted). Default 256.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Generation stops at the first occurrence of any of these strings in the generated text, which then ends
    /// just before it. A stop string may span several tokens.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Token ids that end generation (not included in the output). <c>null</c> uses the checkpoint's end-of-sequence
    /// ids (generation_config.json, else config.json); an empty list disables stop tokens.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Temperature, top-k, top-p and seed; <c>null</c> (or temperature 0) is greedy decoding, whose output is
    /// token for token what plain greedy decoding gives.</summary>
    public SamplingOptions? Sampling { get; init; }

    /// <summary>Names the conversation this request continues, so the drafters reuse what they indexed for its earlier
    /// turns (see <see cref="DraftRequestOptions.ConversationId"/>); <c>null</c> for a stand-alone request.</summary>
    public string? ConversationId { get; init; }

    /// <summary>Checks the fields that do not need the model: exactly one prompt form, non-negative budgets.</summary>
    /// <exception cref="ArgumentException">No prompt or more than one prompt form, an empty or null stop string, or a
    /// null message.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="MaxNewTokens"/> is below 1, or a token id is negative.</exception>
    public void Validate()
    {
        int forms = (Prompt is null ? 0 : 1) + (PromptTokens is null ? 0 : 1) + (Messages is null ? 0 : 1);
        if (forms != 1)
        {
            throw new ArgumentException(
                $"A request needs exactly one of Prompt, PromptTokens and Messages; this one sets {forms}.");
        }
        if (MaxNewTokens < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be at least 1.");
        }
        if (PromptTokens is not null && PromptTokens.Any(t => t < 0))
        {
            throw new ArgumentOutOfRangeException(nameof(PromptTokens), "Token ids must be non-negative.");
        }
        if (Messages is not null && Messages.Any(m => m is null || m.Role is null || m.Content is null))
        {
            throw new ArgumentException("Every message needs a role and content.", nameof(Messages));
        }
        ArgumentNullException.ThrowIfNull(StopStrings);
        if (StopStrings.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("Stop strings must be non-empty.", nameof(StopStrings));
        }
        if (StopTokenIds is not null && StopTokenIds.Any(t => t < 0))
        {
            throw new ArgumentOutOfRangeException(nameof(StopTokenIds), "Stop token ids must be non-negative.");
        }
    }
}
