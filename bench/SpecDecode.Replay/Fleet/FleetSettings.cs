using System.Text.Json.Serialization;

namespace SpecDecode.Replay;

/// <summary>One configuration of the fleet simulation (<see cref="FleetSimulator"/>).</summary>
public sealed record FleetSettings
{
    /// <summary>Server replicas, each with its own suffix drafter (one drafter in all for <see cref="FleetMode.Pooled"/>).</summary>
    [JsonPropertyName("replicas")] public int Replicas { get; init; } = 1;

    /// <summary>Trajectories (agents) a replica serves at once; each takes the next trajectory in file order when its
    /// current one ends, and keeps a trajectory to its end (conversation affinity).</summary>
    [JsonPropertyName("agents_per_replica")] public int AgentsPerReplica { get; init; } = 1;

    /// <summary>How finished responses travel between replicas.</summary>
    [JsonPropertyName("mode")] public FleetMode Mode { get; init; } = FleetMode.Isolated;

    /// <summary>Shared mode: a response reaches the other replicas only once this many more calls have finished fleet-wide.</summary>
    [JsonPropertyName("delay_calls")] public int DelayCalls { get; init; }

    /// <summary>Shared mode: a response reaches the other replicas this many simulated seconds after it finished.</summary>
    [JsonPropertyName("delay_seconds")] public double DelaySeconds { get; init; }

    /// <summary>Simulated time a response token takes, in ms: a call lasts response tokens × this, whatever the drafts
    /// (so the schedule, and what each replica could know when, is the same in every mode).</summary>
    [JsonPropertyName("token_ms")] public double TokenMilliseconds { get; init; } = 10;

    /// <summary>Simulated time between the end of a call and the start of the trajectory's next one, in s (tool runs).</summary>
    [JsonPropertyName("gap_seconds")] public double GapSeconds { get; init; }

    /// <summary>Draft-token budget per step.</summary>
    [JsonPropertyName("budget")] public int Budget { get; init; } = 32;

    /// <summary>The drafter (a suffix drafter name of <see cref="DrafterFactory"/>).</summary>
    [JsonPropertyName("drafter")] public string Drafter { get; init; } = DrafterFactory.Suffix;

    /// <summary>Drafter settings (bounds of the cache included).</summary>
    [JsonPropertyName("drafter_settings")] public DrafterSettings DrafterSettings { get; init; } = new();

    /// <summary>Test hook: called when a call starts, with the replica and its cache, before the request starts.</summary>
    [JsonIgnore] internal Action<FleetCallStart>? OnCallStart { get; init; }

    /// <summary>A short label for tables and plots, e.g. <c>shared 30s</c>.</summary>
    [JsonIgnore]
    public string Label => Mode switch
    {
        FleetMode.Shared when DelayCalls > 0 && DelaySeconds > 0 => $"shared {DelayCalls}c+{DelaySeconds:0.###}s",
        FleetMode.Shared when DelayCalls > 0 => $"shared {DelayCalls} calls",
        FleetMode.Shared when DelaySeconds > 0 => $"shared {DelaySeconds:0.###}s",
        FleetMode.Shared => "shared",
        FleetMode.Pooled => "one process",
        _ => "isolated",
    };

    /// <summary>The first problem with the settings, or null when they are fine.</summary>
    public string? Validate()
    {
        if (Replicas < 1 || AgentsPerReplica < 1)
        {
            return "--replicas and --agents-per-replica must be at least 1.";
        }
        if (DelayCalls < 0 || !(DelaySeconds >= 0) || double.IsInfinity(DelaySeconds))
        {
            return "Delays must be finite and >= 0.";
        }
        if (!(TokenMilliseconds > 0) || double.IsInfinity(TokenMilliseconds) || !(GapSeconds >= 0) || double.IsInfinity(GapSeconds))
        {
            return "--token-ms must be > 0 and --gap-seconds >= 0 (both finite).";
        }
        if (Budget < 0)
        {
            return "--budget must be >= 0.";
        }
        if (Drafter is not (DrafterFactory.Suffix or DrafterFactory.SuffixCalibrated))
        {
            return $"The fleet simulation needs a suffix drafter ({DrafterFactory.Suffix} or {DrafterFactory.SuffixCalibrated}), not '{Drafter}'.";
        }
        return null;
    }
}

/// <summary>What <see cref="FleetSettings.OnCallStart"/> sees.</summary>
/// <param name="Replica">The replica serving the call.</param>
/// <param name="TaskId">The trajectory.</param>
/// <param name="Call">The call's index in its trajectory.</param>
/// <param name="Cache">The replica's suffix cache.</param>
internal readonly record struct FleetCallStart(int Replica, string TaskId, int Call, SpecDecode.Suffix.SuffixDecodingCache Cache);
