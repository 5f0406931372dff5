namespace SpecDecode.Soak;

/// <summary>What a soak run does: how many clients, rounds and requests, the engine's size, and how often faults are
/// injected. The defaults are the full run of bench/RESULTS.md; <see cref="Quick"/> is the CI slice.</summary>
public sealed record SoakSettings
{
    /// <summary>The checkpoint folder; null for the repository's embedded default model (models/default).</summary>
    public string? ModelFolder { get; init; }

    /// <summary>Concurrent clients.</summary>
    public int Clients { get; init; } = 64;

    /// <summary>Rounds; memory is measured after each.</summary>
    public int Rounds { get; init; } = 8;

    /// <summary>Requests each client sends per round, one after the other.</summary>
    public int RequestsPerClient { get; init; } = 4;

    /// <summary>Requests the engine serves at once (the model's KV-cache slots).</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>Tokens per KV-cache slot.</summary>
    public int MaxContext { get; init; } = 512;

    /// <summary>Distinct prompts; each has a solo greedy reference.</summary>
    public int Prompts { get; init; } = 32;

    /// <summary>The largest MaxNewTokens of a prompt (each draws 4 .. this).</summary>
    public int MaxNewTokens { get; init; } = 24;

    /// <summary>Probability that a drafter call throws (and, half as often, that Propose returns a draft with a token
    /// outside the vocabulary).</summary>
    public double DrafterFaultRate { get; init; } = 0.004;

    /// <summary>Probability that a logger call throws.</summary>
    public double LoggerFaultRate { get; init; } = 0.2;

    /// <summary>Probability that a metrics listener callback throws.</summary>
    public double MetricsFaultRate { get; init; } = 0.05;

    /// <summary>Every this many rounds the engine is disposed while the round runs, and a new one is created on the same
    /// model; 0 never.</summary>
    public int DisposeEveryRounds { get; init; } = 3;

    /// <summary>End with the model disposed under a running engine (its requests must end with ObjectDisposedException).</summary>
    public bool DisposeModelAtEnd { get; init; } = true;

    /// <summary>How long one request may take before it counts as stranded.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(3);

    /// <summary>Seeds the workload and the faults.</summary>
    public int Seed { get; init; } = 16;

    /// <summary>The slice CI runs (a few seconds).</summary>
    public static SoakSettings Quick { get; } = new()
    {
        Clients = 8,
        Rounds = 3,
        RequestsPerClient = 2,
        MaxBatch = 4,
        Prompts = 6,
        MaxNewTokens = 10,
        DisposeEveryRounds = 2,
        DrafterFaultRate = 0.02,
    };

    /// <summary>Requests the clients send in all (the model-disposal burst at the end not counted).</summary>
    public int TotalRequests => Clients * Rounds * RequestsPerClient;
}
