namespace SpecDecode.Server;

/// <summary>What the server's command line decided (<see cref="ServerCommand"/>).</summary>
public sealed record ServerSettings
{
    /// <summary>The checkpoint folder, or null for the embedded default model.</summary>
    public string? ModelFolder { get; init; }

    /// <summary>The name clients use in <c>model</c>; null for the checkpoint folder's name.</summary>
    public string? ServedModelName { get; init; }

    /// <summary>"cpu", "cuda" or null for libtorch's default.</summary>
    public string? Device { get; init; }

    /// <summary>"float32", "float16", "bfloat16" or null for the device's default.</summary>
    public string? DType { get; init; }

    /// <summary>Tokens of context per sequence; null for the model's (at most 4096).</summary>
    public int? MaxContext { get; init; }

    /// <summary>Requests decoded at once (the KV cache's slots).</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>Requests that may wait for a slot beyond <see cref="MaxBatch"/>; more are refused with 503.</summary>
    public int MaxWaiting { get; init; } = 64;

    /// <summary>The drafter: none, suffix or prompt-lookup.</summary>
    public string Draft { get; init; } = "suffix";

    /// <summary>Draft tokens per request per step at most; null for 32 (below the context).</summary>
    public int? Budget { get; init; }

    /// <summary>Adaptive speculation (SpeculativeEngineOptions.AdaptiveSpeculation).</summary>
    public bool Adaptive { get; init; } = true;

    /// <summary>On CUDA, plain single-sequence steps as CUDA graphs of the decode-step kernels.</summary>
    public bool CudaGraphs { get; init; } = true;

    /// <summary>The API key clients must send as <c>Authorization: Bearer</c>; null accepts every request.</summary>
    public string? ApiKey { get; init; }

    /// <summary>The URLs to listen on (Kestrel), e.g. http://127.0.0.1:8000.</summary>
    public IReadOnlyList<string> Urls { get; init; } = ["http://127.0.0.1:8000"];

    /// <summary>The suffix drafter's global tree keeps at most this many response tokens (oldest responses evicted
    /// first); -1 keeps every response. With sharing, every replica holds the whole fleet's responses, so bound it.</summary>
    public long MaxCachedTokens { get; init; } = -1;

    /// <summary>The NATS server (JetStream on) through which the replicas of a fleet share finished responses, e.g.
    /// nats://10.0.0.5:4222; null: no sharing (docs/fleet.md).</summary>
    public string? FleetNats { get; init; }

    /// <summary>This replica's name in the fleet; null for the machine's name and the process id.</summary>
    public string? ReplicaId { get; init; }

    /// <summary>The model part of the fleet identity; null derives it from the checkpoint's files
    /// (<see cref="CheckpointIdentity"/>).</summary>
    public string? FleetModel { get; init; }

    /// <summary>The tokenizer part of the fleet identity; null derives it from the checkpoint's tokenizer files.</summary>
    public string? FleetTokenizer { get; init; }

    /// <summary>Benchmark mode: a config.json whose shape the server builds with random weights, and whose requests may
    /// carry recorded answers that force acceptance (<see cref="BenchmarkMode"/>). Null in production.</summary>
    public string? BenchmarkRandomWeights { get; init; }
}
