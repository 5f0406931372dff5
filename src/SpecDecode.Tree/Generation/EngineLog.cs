using Microsoft.Extensions.Logging;

namespace SpecDecode.Tree;

/// <summary>The engine's log messages (source-generated <see cref="LoggerMessageAttribute"/> methods: no formatting or
/// boxing unless the level is enabled).</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 1, EventName = "EngineStarted", Level = LogLevel.Information,
        Message = "Speculative engine started: model {Architecture} ({Layers} layers, hidden {Hidden}, vocabulary {Vocabulary}, context {Capacity}), batch {MaxBatch}, drafter {Drafter}, max draft tokens {MaxDraftTokens}, cost model {CostModel}")]
    public static partial void EngineStarted(ILogger logger, string architecture, int layers, int hidden, int vocabulary,
        int capacity, int maxBatch, string drafter, int maxDraftTokens, string costModel);

    [LoggerMessage(EventId = 2, EventName = "EngineStopped", Level = LogLevel.Information,
        Message = "Speculative engine stopped after {Completed} requests, {Batches} steps, mean acceptance length {MeanAcceptanceLength:F2}")]
    public static partial void EngineStopped(ILogger logger, long completed, long batches, double meanAcceptanceLength);

    [LoggerMessage(EventId = 3, EventName = "RequestRefused", Level = LogLevel.Debug,
        Message = "Request refused: {Reason}")]
    public static partial void RequestRefused(ILogger logger, string reason);

    [LoggerMessage(EventId = 4, EventName = "RequestCompleted", Level = LogLevel.Debug,
        Message = "Request {RequestId} finished ({FinishReason}): {PromptTokens} prompt tokens, {GeneratedTokens} generated in {Steps} steps, mean acceptance length {MeanAcceptanceLength:F2}")]
    public static partial void RequestCompleted(ILogger logger, long requestId, FinishReason finishReason, int promptTokens,
        long generatedTokens, long steps, double meanAcceptanceLength);

    [LoggerMessage(EventId = 5, EventName = "RequestCancelled", Level = LogLevel.Debug,
        Message = "Request {RequestId} cancelled after {GeneratedTokens} tokens")]
    public static partial void RequestCancelled(ILogger logger, long requestId, int generatedTokens);

    [LoggerMessage(EventId = 6, EventName = "RequestFailed", Level = LogLevel.Warning,
        Message = "Request {RequestId} failed after {GeneratedTokens} tokens: {Reason}")]
    public static partial void RequestFailed(ILogger logger, long requestId, int generatedTokens, string reason);

    [LoggerMessage(EventId = 7, EventName = "StepFailed", Level = LogLevel.Error,
        Message = "An engine step failed; its {Requests} requests fail with the error and the engine goes on")]
    public static partial void StepFailed(ILogger logger, Exception error, int requests);

    [LoggerMessage(EventId = 8, EventName = "PluginFailed", Level = LogLevel.Warning,
        Message = "The {Plugin} threw from {Operation} for request {RequestId}; the request keeps its outcome and the engine goes on")]
    public static partial void PluginFailed(ILogger logger, Exception error, string plugin, string operation, long requestId);

    [LoggerMessage(EventId = 9, EventName = "CleanupFailed", Level = LogLevel.Warning,
        Message = "Freeing the KV-cache slot of request {RequestId} failed; the slot is not used again")]
    public static partial void CleanupFailed(ILogger logger, Exception error, long requestId);

    [LoggerMessage(EventId = 10, EventName = "MetricsListenerFailed", Level = LogLevel.Warning,
        Message = "A listener of the engine's metrics threw; measurements it throws on are dropped (logged once per engine)")]
    public static partial void MetricsListenerFailed(ILogger logger, Exception error);
}
