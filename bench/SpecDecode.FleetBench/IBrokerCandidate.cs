namespace SpecDecode.FleetBench;

/// <summary>What the comparison asks of each broker: publish a response durably, read the stream from an offset.</summary>
internal interface IBrokerCandidate : IAsyncDisposable
{
    /// <summary>Name for the report.</summary>
    string Name { get; }

    /// <summary>Creates the stream, bounded to <paramref name="maxBytes"/> (NATS) or <paramref name="maxMessages"/> (Redis).</summary>
    Task CreateStreamAsync(long maxBytes, long maxMessages);

    /// <summary>Publishes one message and waits for the broker's acknowledgement.</summary>
    Task PublishAsync(byte[] message, string messageId);

    /// <summary>Reads from the first retained message on, calling <paramref name="received"/> for each, until cancelled.</summary>
    Task ReadAsync(Action<byte[]> received, CancellationToken cancel);

    /// <summary>Messages and bytes the stream retains now.</summary>
    Task<(long Messages, long Bytes)> StreamSizeAsync();

    /// <summary>The server's resident memory.</summary>
    long ServerResidentBytes();
}
