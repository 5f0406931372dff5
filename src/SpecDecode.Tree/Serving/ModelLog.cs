using Microsoft.Extensions.Logging;

namespace SpecDecode.Tree;

/// <summary>The target model's log messages (source-generated, as <see cref="EngineLog"/>).</summary>
internal static partial class ModelLog
{
    [LoggerMessage(EventId = 20, EventName = "StepPaths", Level = LogLevel.Information,
        Message = "Target model {Architecture} on {Device} ({DType}): {Paths}")]
    public static partial void StepPaths(ILogger logger, string architecture, string device, string dtype, string paths);
}
