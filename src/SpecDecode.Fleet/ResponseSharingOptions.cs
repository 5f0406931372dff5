namespace SpecDecode.Fleet;

/// <summary>Settings of a <see cref="ResponseSharing"/>: where the broker is, who this replica is, and the bounds.</summary>
public sealed record ResponseSharingOptions
{
    /// <summary>The NATS server, e.g. <c>nats://127.0.0.1:4222</c> (JetStream enabled: <c>nats-server -js</c>).</summary>
    public required string Url { get; init; }

    /// <summary>This replica's name, carried as each response's origin (for logs; ingestion keys on message ids).</summary>
    public required string ReplicaId { get; init; }

    /// <summary>The model and tokenizer of this replica; responses of any other identity are refused.</summary>
    public required FleetIdentity Identity { get; init; }

    /// <summary>The JetStream stream holding every model's responses (created when missing).</summary>
    public string StreamName { get; init; } = "SPECDECODE_RESPONSES";

    /// <summary>Subject prefix: responses of one identity go to <c>prefix.&lt;identity hash&gt;</c>.</summary>
    public string SubjectPrefix { get; init; } = "specdecode.responses";

    /// <summary>
    /// Bytes the stream keeps (oldest dropped first) when this replica creates it; 0 sizes it from the cache's token
    /// bound (4 bytes a token plus a tenth), or 1 GiB when the cache is unbounded. This is what bounds a late or
    /// restarted replica's catch-up.
    /// </summary>
    public long MaxStreamBytes { get; init; }

    /// <summary>How long the broker drops a second publication of one message id (a publisher's retry).</summary>
    public TimeSpan DuplicateWindow { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Finished responses waiting to be published; when full the oldest is dropped and counted.</summary>
    public int PublishQueueCapacity { get; init; } = 1024;

    /// <summary>Received responses waiting to enter the cache; when full the newest is dropped and counted.</summary>
    public int IngestQueueCapacity { get; init; } = 1024;

    /// <summary>Message ids remembered to make a repeated delivery idempotent (oldest forgotten first).</summary>
    public int RememberedMessageIds { get; init; } = 1 << 20;

    /// <summary>Pause before reconnecting the reader or retrying a publication after the broker failed.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// How long the broker may take to answer one request (a publication's acknowledgement, a stream lookup, a
    /// consumer's creation) before the attempt counts as failed and is tried again; a publication is retried under its
    /// message id, so the broker stores it once. NATS.Net's default is 5 seconds.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(Url) || !Uri.TryCreate(Url, UriKind.Absolute, out _))
        {
            throw new ArgumentException($"Url '{Url}' is not a broker URL such as nats://127.0.0.1:4222.", nameof(Url));
        }
        ArgumentException.ThrowIfNullOrWhiteSpace(ReplicaId);
        ArgumentNullException.ThrowIfNull(Identity);
        Identity.Validate();
        ArgumentException.ThrowIfNullOrWhiteSpace(StreamName);
        ArgumentException.ThrowIfNullOrWhiteSpace(SubjectPrefix);
        ArgumentOutOfRangeException.ThrowIfNegative(MaxStreamBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(PublishQueueCapacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(IngestQueueCapacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(RememberedMessageIds, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(RetryDelay, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(DuplicateWindow, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero);
    }
}

/// <summary>Counters of a <see cref="ResponseSharing"/> (<see cref="ResponseSharing.GetStatistics"/>).</summary>
/// <param name="Published">Responses the broker acknowledged.</param>
/// <param name="PublishRetries">Publications that failed (broker down) and were tried again.</param>
/// <param name="PublishDropped">Responses dropped unpublished: the publish queue was full, or one was larger than the
/// broker's largest message (its <c>max_payload</c>, 1 MB by default: about 250,000 tokens).</param>
/// <param name="Received">Messages read from the stream.</param>
/// <param name="Ingested">Responses added to the cache's global tree.</param>
/// <param name="Duplicates">Messages already seen (a redelivery, or this process's own publication).</param>
/// <param name="Malformed">Messages that are not well-formed responses (refused).</param>
/// <param name="Foreign">Well-formed responses of another model or tokenizer (refused).</param>
/// <param name="IngestDropped">Responses dropped because the ingest queue was full.</param>
/// <param name="NotKept">Responses the cache did not keep (empty, or longer than its whole token bound).</param>
/// <param name="ReaderRestarts">Times the reader reconnected after the broker failed.</param>
/// <param name="LastSequence">Stream sequence of the last message read: the offset a reconnect resumes after.</param>
/// <param name="Connected">Whether the broker connection is open now.</param>
public readonly record struct SharingStatistics(
    long Published, long PublishRetries, long PublishDropped, long Received, long Ingested, long Duplicates, long Malformed,
    long Foreign, long IngestDropped, long NotKept, long ReaderRestarts, ulong LastSequence, bool Connected);
