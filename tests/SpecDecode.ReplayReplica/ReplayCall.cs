using System.Text.Json.Serialization;

namespace SpecDecode.ReplayReplica;

/// <summary>One recorded LLM call to replay: the prompt's token ids and the response the target produced.</summary>
public sealed record ReplayCallRequest
{
    /// <summary>The conversation (the agent's trajectory), for the drafter's conversation tree.</summary>
    [JsonPropertyName("conversation")] public string? Conversation { get; init; }

    /// <summary>The prompt's token ids.</summary>
    [JsonPropertyName("prompt")] public int[] Prompt { get; init; } = [];

    /// <summary>The recorded response's token ids (what a greedy target emits).</summary>
    [JsonPropertyName("response")] public int[] Response { get; init; } = [];

    /// <summary>Draft-token budget per step.</summary>
    [JsonPropertyName("budget")] public int Budget { get; init; } = 32;
}

/// <summary>What replaying one call measured.</summary>
/// <param name="Replica">The replica that served it.</param>
/// <param name="Steps">Verification steps.</param>
/// <param name="DraftedTokens">Draft tokens proposed.</param>
/// <param name="AcceptedTokens">Draft tokens accepted.</param>
/// <param name="Tokens">Response tokens emitted.</param>
public sealed record ReplayCallResult(
    [property: JsonPropertyName("replica")] string Replica,
    [property: JsonPropertyName("steps")] int Steps,
    [property: JsonPropertyName("drafted_tokens")] long DraftedTokens,
    [property: JsonPropertyName("accepted_tokens")] long AcceptedTokens,
    [property: JsonPropertyName("tokens")] int Tokens);
