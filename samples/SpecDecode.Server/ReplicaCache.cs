using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using SpecDecode.Fleet;
using SpecDecode.Suffix;

namespace SpecDecode.Server;

/// <summary>
/// This replica's suffix cache (the suffix drafter's global tree of earlier responses) and, when a broker is configured
/// (<see cref="ServerSettings.FleetNats"/>), its sharing with the other replicas of the fleet: the engine drafts with a
/// <see cref="SharingDrafter"/> around the <see cref="SuffixDrafter"/>, whose finished responses
/// <see cref="ResponseSharing"/> publishes, and the others' responses enter the global tree in the background
/// (docs/fleet.md). The admin endpoints read its counters and check its integrity.
/// </summary>
public sealed class ReplicaCache : IDisposable
{
    /// <summary>How long shutting down waits for queued responses to reach the broker.</summary>
    private static readonly TimeSpan FlushOnShutdown = TimeSpan.FromSeconds(5);

    private ReplicaCache(SuffixDrafter suffix, ResponseSharing? sharing, FleetIdentity? identity, string replicaId, string? broker,
        double identitySeconds = 0)
    {
        IdentitySeconds = identitySeconds;
        Suffix = suffix;
        Sharing = sharing;
        Identity = identity;
        ReplicaId = replicaId;
        Broker = broker;
        Drafter = sharing is null ? suffix : new SharingDrafter(suffix, sharing);
    }

    /// <summary>The suffix drafter whose cache this is.</summary>
    public SuffixDrafter Suffix { get; }

    /// <summary>The drafter the engine drafts with: the suffix drafter, wrapped in a <see cref="SharingDrafter"/> when
    /// sharing is on.</summary>
    public IDrafter Drafter { get; }

    /// <summary>The sharing with the fleet, or null when no broker is configured.</summary>
    public ResponseSharing? Sharing { get; }

    /// <summary>The model and tokenizer identity responses are shared under, or null when sharing is off.</summary>
    public FleetIdentity? Identity { get; }

    /// <summary>This replica's name in the fleet (carried as the origin of its responses).</summary>
    public string ReplicaId { get; }

    /// <summary>The broker's URL, or null when sharing is off.</summary>
    public string? Broker { get; }

    /// <summary>Seconds spent deriving the identity from the checkpoint's files (0 when not derived).</summary>
    public double IdentitySeconds { get; }

    /// <summary>Creates the suffix drafter with <paramref name="settings"/>' token bound and, when
    /// <see cref="ServerSettings.FleetNats"/> is set, starts sharing it. Starting never waits for the broker: one that is
    /// down is retried in the background while the replica serves from its own cache.</summary>
    /// <param name="settings">The server's settings.</param>
    /// <param name="identity">The checkpoint's identity, computed only when sharing is on and
    /// <see cref="ServerSettings.FleetModel"/> or <see cref="ServerSettings.FleetTokenizer"/> is not given.</param>
    /// <param name="loggers">Where sharing logs broker failures, or null for nowhere.</param>
    public static ReplicaCache Start(ServerSettings settings, Func<FleetIdentity> identity, ILoggerFactory? loggers = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(identity);
        string replicaId = settings.ReplicaId ?? $"{Environment.MachineName}-{Environment.ProcessId}";
        var suffix = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedTokens = settings.MaxCachedTokens });
        if (settings.FleetNats is not { } url)
        {
            return new ReplicaCache(suffix, null, null, replicaId, null);
        }
        try
        {
            long start = Stopwatch.GetTimestamp();
            FleetIdentity derived = settings.FleetModel is { } m && settings.FleetTokenizer is { } t ? new FleetIdentity(m, t) : identity();
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var fleet = new FleetIdentity(settings.FleetModel ?? derived.Model, settings.FleetTokenizer ?? derived.Tokenizer);
            ResponseSharing sharing = ResponseSharing.Start(suffix.Cache, new ResponseSharingOptions
            {
                Url = url,
                ReplicaId = replicaId,
                Identity = fleet,
            }, loggers?.CreateLogger<ResponseSharing>());
            return new ReplicaCache(suffix, sharing, fleet, replicaId, url, seconds);
        }
        catch
        {
            suffix.Dispose();
            throw;
        }
    }

    /// <summary>The cache's and the sharing's counters now.</summary>
    public CacheReport Report() => new(
        ReplicaId,
        Drafter.Name,
        Suffix.Cache.Options.MaxCachedTokens,
        Suffix.Cache.GetStatistics(),
        Identity is null ? null : new FleetReport(Broker!, Sharing!.Subject, Identity.Model, Identity.Tokenizer),
        Sharing?.GetStatistics());

    /// <summary>Checks every tree of the cache and its bounds (<see cref="SuffixDecodingCache.CheckIntegrity"/>).</summary>
    public IntegrityReport CheckIntegrity()
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            Suffix.Cache.CheckIntegrity();
            return new IntegrityReport(true, null, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        catch (SuffixTreeIntegrityException e)
        {
            return new IntegrityReport(false, e.Message, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
    }

    /// <summary>Gives queued responses up to 5 s to reach the broker, stops sharing, then frees the cache. Call after
    /// the engine stopped (its last requests' responses are then queued).</summary>
    public void Dispose()
    {
        if (Sharing is { } sharing)
        {
            // Sync over async on purpose: the host's Dispose has no context to deadlock on, and the loops need no thread of ours.
            sharing.FlushAsync(FlushOnShutdown).GetAwaiter().GetResult();
            sharing.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
        Suffix.Dispose();
    }

    /// <summary>The admin endpoints' JSON: snake_case names throughout, as the OpenAI routes.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}

/// <summary>What <c>GET /admin/cache</c> answers.</summary>
/// <param name="Replica">The replica's id.</param>
/// <param name="Drafter">The engine's drafter (<c>suffix</c>, or <c>suffix-shared</c> with sharing on).</param>
/// <param name="MaxCachedTokens">The global tree's token bound (-1: none).</param>
/// <param name="Cache">The suffix cache's counters.</param>
/// <param name="Fleet">Where and under which identity responses are shared, or null when sharing is off.</param>
/// <param name="Sharing">The sharing's counters, or null when sharing is off.</param>
public sealed record CacheReport(string Replica, string Drafter, long MaxCachedTokens, SuffixCacheStatistics Cache, FleetReport? Fleet,
    SharingStatistics? Sharing);

/// <summary>Where and under which identity a replica shares its responses.</summary>
/// <param name="Broker">The NATS URL.</param>
/// <param name="Subject">The identity's subject in the stream.</param>
/// <param name="Model">The model part of the identity.</param>
/// <param name="Tokenizer">The tokenizer part of the identity.</param>
public sealed record FleetReport(string Broker, string Subject, string Model, string Tokenizer);

/// <summary>What <c>POST /admin/cache/check</c> answers.</summary>
/// <param name="Ok">Whether every invariant held.</param>
/// <param name="Error">The broken invariant, or null.</param>
/// <param name="Seconds">How long the check took (it holds the global tree's read lock meanwhile).</param>
public sealed record IntegrityReport(bool Ok, string? Error, double Seconds);
