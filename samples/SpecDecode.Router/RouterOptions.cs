using SpecDecode.CommandLine;

namespace SpecDecode.Router;

/// <summary>The router's settings (command line: <see cref="RouterCommand"/>).</summary>
public sealed class RouterOptions
{
    /// <summary>The header a client sets to name its conversation (an agent's session id).</summary>
    public const string ConversationHeader = "X-SpecDecode-Conversation";

    /// <summary>The response header naming the replica that served the request.</summary>
    public const string ReplicaHeader = "X-SpecDecode-Replica";

    /// <summary>The replicas' base URLs, e.g. <c>http://127.0.0.1:5001/</c>.</summary>
    public List<string> Replicas { get; set; } = [];

    /// <summary>Without the conversation header, the conversation is a hash of this many first messages of the
    /// request's <c>messages</c> array (the system prompt and the task: they do not change along a conversation).</summary>
    public int FirstMessages { get; set; } = 2;

    /// <summary>Largest request body read to find the first messages, in bytes (bigger bodies are routed without a key).</summary>
    public int MaxBodyBytes { get; set; } = 16 << 20;

    /// <summary>The replicas' health endpoint, probed by YARP's active health checks.</summary>
    public string HealthPath { get; set; } = "/health";

    /// <summary>Seconds between health probes.</summary>
    public double HealthIntervalSeconds { get; set; } = 5;

    /// <summary>Seconds a probe may take.</summary>
    public double HealthTimeoutSeconds { get; set; } = 2;

    /// <summary>Seconds a replica that refused a connection stays out before requests may try it again.</summary>
    public double ReactivationSeconds { get; set; } = 10;

    /// <summary>Replicas tried for one request whose replica could not be reached (the request never reached it).</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>Throws when the settings cannot work.</summary>
    /// <exception cref="RouterConfigurationException">No replica, a replica URL that is not absolute http(s), or a bound below 1.</exception>
    public void Validate()
    {
        if (Replicas.Count == 0)
        {
            throw new RouterConfigurationException("Name at least one replica: --replica http://127.0.0.1:8001/ (repeat it for each replica).");
        }
        foreach (string r in Replicas.Where(r => !IsReplicaUrl(r)))
        {
            throw new RouterConfigurationException($"--replica: '{r}' is not an absolute http(s) URL; give one such as http://127.0.0.1:8001/.");
        }
        if (FirstMessages < 1 || MaxAttempts < 1 || MaxBodyBytes < 1 || HealthIntervalSeconds <= 0 || HealthTimeoutSeconds <= 0 || ReactivationSeconds <= 0)
        {
            throw new RouterConfigurationException("FirstMessages, MaxAttempts, MaxBodyBytes and the health timings must be positive.");
        }
    }

    /// <summary>Whether <paramref name="url"/> is an absolute http or https URL.</summary>
    public static bool IsReplicaUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out Uri? uri) && uri.Scheme is "http" or "https";
}

/// <summary>The router's settings cannot work; the message says what to set (the command line exits 2 with it).</summary>
public sealed class RouterConfigurationException(string message) : ToolUsageException(message);
