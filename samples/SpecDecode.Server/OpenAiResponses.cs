using System.Text.Json.Serialization;

namespace SpecDecode.Server;

/// <summary>Usage as OpenAI reports it, with the speculative figures as an extension object (<c>speculative</c>).</summary>
/// <param name="PromptTokens">Prompt tokens.</param>
/// <param name="CompletionTokens">Generated tokens (a final stop token included, as the engine counts them).</param>
/// <param name="TotalTokens">Their sum.</param>
/// <param name="Speculative">The speculative figures of this request.</param>
public sealed record OpenAiUsage(
    [property: JsonPropertyName("prompt_tokens")] long PromptTokens,
    [property: JsonPropertyName("completion_tokens")] long CompletionTokens,
    [property: JsonPropertyName("total_tokens")] long TotalTokens,
    [property: JsonPropertyName("speculative")] SpeculativeUsage Speculative)
{
    /// <summary>The usage of a finished request.</summary>
    public static OpenAiUsage Of(GenerationStatistics s)
    {
        ArgumentNullException.ThrowIfNull(s);
        return new(s.PromptTokens, s.GeneratedTokens, s.PromptTokens + s.GeneratedTokens, new SpeculativeUsage(
            s.Steps, s.Drafts, s.DraftTokens, s.AcceptedTokens, Math.Round(s.MeanTokensPerStep, 4), Math.Round(s.MeanAcceptanceLength, 4), Math.Round(s.AcceptanceRate, 4)));
    }
}

/// <summary>The speculative figures of one request (vLLM's spec-decode names; docs/engine.md).</summary>
/// <param name="Steps">Target forwards (verification steps) the request took.</param>
/// <param name="Drafts">Steps that verified a draft.</param>
/// <param name="DraftTokens">Draft tokens verified.</param>
/// <param name="AcceptedTokens">Draft tokens the target accepted.</param>
/// <param name="TokensPerStep">Generated tokens per step (1.0: no gain).</param>
/// <param name="MeanAcceptanceLength">1 + accepted / drafts.</param>
/// <param name="AcceptanceRate">Accepted / draft tokens.</param>
public sealed record SpeculativeUsage(
    [property: JsonPropertyName("steps")] long Steps,
    [property: JsonPropertyName("drafts")] long Drafts,
    [property: JsonPropertyName("draft_tokens")] long DraftTokens,
    [property: JsonPropertyName("accepted_tokens")] long AcceptedTokens,
    [property: JsonPropertyName("tokens_per_step")] double TokensPerStep,
    [property: JsonPropertyName("mean_acceptance_length")] double MeanAcceptanceLength,
    [property: JsonPropertyName("acceptance_rate")] double AcceptanceRate);

/// <summary>A chat completion or one of its stream chunks (<c>object</c> tells which).</summary>
public sealed record ChatCompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] IReadOnlyList<ChatChoiceResponse> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] OpenAiUsage? Usage);

/// <summary>A chat choice: <see cref="Message"/> in a completion, <see cref="Delta"/> in a chunk.</summary>
public sealed record ChatChoiceResponse(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("message"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ChatMessageBody? Message,
    [property: JsonPropertyName("delta"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] ChatMessageBody? Delta,
    [property: JsonPropertyName("logprobs")] object? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

/// <summary>A message or a delta; absent fields are left out.</summary>
public sealed record ChatMessageBody(
    [property: JsonPropertyName("role"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonPropertyName("content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content);

/// <summary>A text completion or one of its stream chunks.</summary>
public sealed record TextCompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] IReadOnlyList<TextChoiceResponse> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] OpenAiUsage? Usage);

/// <summary>A text choice.</summary>
public sealed record TextChoiceResponse(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("logprobs")] object? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason);

/// <summary>A model of <c>/v1/models</c>.</summary>
public sealed record ModelCard(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy,
    [property: JsonPropertyName("max_model_len")] int MaxModelLength);

/// <summary>The list of <c>/v1/models</c>.</summary>
public sealed record ModelList(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("data")] IReadOnlyList<ModelCard> Data);
