using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Net;
using SpecDecode.Suffix;

namespace SpecDecode.Fleet;

/// <summary>
/// Shares finished responses between the replicas of one model through a NATS JetStream stream: publishes this
/// replica's responses and adds every other replica's to the local <see cref="SuffixDecodingCache"/>'s global tree.
/// </summary>
/// <remarks>
/// <para><b>Never in the decoding path.</b> <see cref="Publish"/> copies the tokens into a bounded queue and returns;
/// a background publisher sends them. A background reader reads the stream into a bounded ingest queue; a third loop
/// adds responses to the cache (<see cref="SuffixDecodingCache.AddResponse"/>, one write-lock hold per response, the
/// cache's one-writer rule). Full queues drop and count; nothing waits on the broker.</para>
/// <para><b>Catch-up.</b> The reader starts at the first message the stream retains; the stream is bounded in bytes
/// (<see cref="ResponseSharingOptions.MaxStreamBytes"/>, sized from the cache's token bound), so a late or restarted
/// replica reads at most about what its cache can hold, and the cache keeps the newest. The reader remembers the last
/// stream sequence it read and resumes after it when the broker comes back; if the stream was lost and recreated
/// (its last sequence is below the remembered one) it starts again from the first message.</para>
/// <para><b>Exactly once into the cache.</b> The broker drops a retried publication of one message id within its
/// duplicate window; the reader remembers the ids it has seen (and the ids this process published, whose tokens
/// are already in the cache), so a redelivery is counted, never ingested twice.</para>
/// <para><b>Refusals.</b> A message that does not decode is counted as malformed; one of another model or tokenizer as
/// foreign; neither reaches the cache. Each identity has its own subject, so replicas of other models are not even
/// read.</para>
/// <para><b>Broker down.</b> The replica keeps serving from its own cache: publications wait in the queue (oldest
/// dropped when full) and are retried; the reader reconnects every <see cref="ResponseSharingOptions.RetryDelay"/>.
/// A publication whose acknowledgement does not come within <see cref="ResponseSharingOptions.RequestTimeout"/> is
/// sent again under the same message id; when the broker had stored the first, it answers the retry as a duplicate,
/// which counts as published. (It once did not: the retry was treated as a failure and retried for good, and the fleet
/// test saw a replica whose first publication was stored just before the broker was killed hold nine responses behind
/// it.)</para>
/// </remarks>
public sealed class ResponseSharing : IAsyncDisposable
{
    private readonly SuffixDecodingCache _cache;
    private readonly ResponseSharingOptions _options;
    private readonly ILogger _logger;
    private readonly NatsClient _client;
    private readonly INatsJSContext _js;
    private readonly string _subject;
    private readonly long _maxStreamBytes;
    private readonly Channel<SharedResponse> _publishQueue;
    private readonly Channel<SharedResponse> _ingestQueue;
    private readonly MessageIdWindow _seen;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _publisher, _reader, _ingester;
    private long _published, _publishRetries, _publishDropped, _received, _ingested, _duplicates, _malformed, _foreign,
        _ingestDropped, _notKept, _readerRestarts, _pendingPublishes;
    private ulong _lastSequence;
    private int _disposed, _brokerFailing;

    private ResponseSharing(SuffixDecodingCache cache, ResponseSharingOptions options, ILogger logger)
    {
        _cache = cache;
        _options = options;
        _logger = logger;
        _subject = SubjectFor(options.SubjectPrefix, options.Identity);
        long cacheTokens = cache.Options.MaxCachedTokens;
        _maxStreamBytes = options.MaxStreamBytes > 0 ? options.MaxStreamBytes
            : cacheTokens > 0 ? cacheTokens * 4 + cacheTokens * 4 / 10 : 1L << 30;
        _seen = new MessageIdWindow(options.RememberedMessageIds);
        _publishQueue = Channel.CreateBounded<SharedResponse>(
            new BoundedChannelOptions(options.PublishQueueCapacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true },
            _ => { Interlocked.Increment(ref _publishDropped); Interlocked.Decrement(ref _pendingPublishes); });
        _ingestQueue = Channel.CreateBounded<SharedResponse>(
            new BoundedChannelOptions(options.IngestQueueCapacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
        _client = new NatsClient(new NatsOpts
        {
            Url = options.Url,
            Name = "specdecode-" + options.ReplicaId,
            MaxReconnectRetry = -1,
            ReconnectWaitMin = TimeSpan.FromMilliseconds(100),
            ReconnectWaitMax = TimeSpan.FromSeconds(2),
            RetryOnInitialConnect = true,
            RequestTimeout = options.RequestTimeout,
        });
        _js = _client.CreateJetStreamContext();
        _publisher = Task.Run(PublishLoopAsync);
        _reader = Task.Run(ReadLoopAsync);
        _ingester = Task.Run(IngestLoopAsync);
    }

    /// <summary>
    /// Starts sharing for <paramref name="cache"/>: returns at once; the broker connection, the stream and the
    /// catch-up happen in the background (a broker that is down is retried, and the replica serves meanwhile).
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid; the message says which.</exception>
    public static ResponseSharing Start(SuffixDecodingCache cache, ResponseSharingOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new ResponseSharing(cache, options, logger ?? NullLogger.Instance);
    }

    /// <summary>The cache this sharing feeds.</summary>
    public SuffixDecodingCache Cache => _cache;

    /// <summary>The subject this replica's identity publishes to and reads from.</summary>
    public string Subject => _subject;

    /// <summary>Queues a finished response for publication and returns at once (the tokens are copied). An empty
    /// response is not published.</summary>
    /// <returns>The message id it carries.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A token is negative.</exception>
    /// <exception cref="ObjectDisposedException">Sharing was disposed.</exception>
    public Guid Publish(ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        foreach (int t in tokens)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(t, nameof(tokens));
        }
        var response = new SharedResponse(Guid.NewGuid(), _options.ReplicaId, _options.Identity, tokens.ToArray());
        if (tokens.IsEmpty)
        {
            return response.MessageId;
        }
        // Our own tokens are already in the local cache: when the stream delivers them back they are duplicates.
        _seen.Add(response.MessageId);
        Interlocked.Increment(ref _pendingPublishes);
        _publishQueue.Writer.TryWrite(response);   // never waits: DropOldest
        return response.MessageId;
    }

    /// <summary>Counters so far.</summary>
    public SharingStatistics GetStatistics() => new(
        Interlocked.Read(ref _published), Interlocked.Read(ref _publishRetries), Interlocked.Read(ref _publishDropped),
        Interlocked.Read(ref _received), Interlocked.Read(ref _ingested), Interlocked.Read(ref _duplicates),
        Interlocked.Read(ref _malformed), Interlocked.Read(ref _foreign), Interlocked.Read(ref _ingestDropped),
        Interlocked.Read(ref _notKept), Interlocked.Read(ref _readerRestarts), Volatile.Read(ref _lastSequence),
        _client.Connection.ConnectionState == NatsConnectionState.Open);

    /// <summary>Waits until every queued response is published (or dropped), or the timeout passes.</summary>
    /// <returns>True when nothing is left to publish.</returns>
    public async Task<bool> FlushAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (Interlocked.Read(ref _pendingPublishes) > 0)
        {
            try
            {
                await Task.Delay(10, cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The subject of an identity: the prefix and the first 16 hex digits of SHA-256 over model and tokenizer.</summary>
    public static string SubjectFor(string prefix, FleetIdentity identity)
    {
        ArgumentNullException.ThrowIfNull(identity);
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(identity.Model + "\n" + identity.Tokenizer));
        return prefix + "." + Convert.ToHexStringLower(hash.AsSpan(0, 8));
    }

    /// <summary>Stops the loops (publications still queued are dropped) and closes the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _stop.Cancel();
        _publishQueue.Writer.TryComplete();
        _ingestQueue.Writer.TryComplete();
        try
        {
            await Task.WhenAll(_publisher, _reader, _ingester).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await _client.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    // ------------------------------------------------------------------------------------------------ loops

    private async Task PublishLoopAsync()
    {
        CancellationToken stop = _stop.Token;
        try
        {
            await foreach (SharedResponse response in _publishQueue.Reader.ReadAllAsync(stop).ConfigureAwait(false))
            {
                byte[] body = SharedResponseCodec.Encode(response);
                string id = response.MessageId.ToString("N");
                while (true)
                {
                    try
                    {
                        await EnsureStreamAsync(stop).ConfigureAwait(false);
                        PubAckResponse ack = await _js.PublishAsync(_subject, body, opts: new NatsJSPubOpts { MsgId = id }, cancellationToken: stop)
                            .ConfigureAwait(false);
                        if (!ack.Duplicate)
                        {
                            ack.EnsureSuccess();
                        }
                        // A duplicate is an earlier attempt of this message id that the broker stored but whose
                        // acknowledgement was lost: published. (EnsureSuccess throws on it.)
                        Interlocked.Increment(ref _published);
                        BrokerAnswered();
                        break;
                    }
                    catch (NatsPayloadTooLargeException ex)
                    {
                        // it will never fit: retrying would hold every later response behind it
                        Interlocked.Increment(ref _publishDropped);
                        _logger.LogWarning("Sharing: response {Id} ({Tokens} tokens) is too large for the broker and was not shared: {Error}",
                            id, response.Tokens.Length, ex.Message);
                        break;
                    }
                    catch (Exception ex) when (!stop.IsCancellationRequested)
                    {
                        // a failure, or no acknowledgement within RequestTimeout (it may have died with the broker):
                        // the same message id again, which the broker answers as a duplicate if it stored the first
                        Interlocked.Increment(ref _publishRetries);
                        BrokerFailed(ex, $"publishing response {id}");
                        _streamReady = false;
                        await Task.Delay(_options.RetryDelay, stop).ConfigureAwait(false);
                    }
                }
                Interlocked.Decrement(ref _pendingPublishes);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task ReadLoopAsync()
    {
        CancellationToken stop = _stop.Token;
        bool first = true;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                if (!first)
                {
                    Interlocked.Increment(ref _readerRestarts);
                }
                first = false;
                INatsJSStream stream = await EnsureStreamAsync(stop).ConfigureAwait(false);
                ulong resumeAfter = Volatile.Read(ref _lastSequence);
                if (stream.Info.State.LastSeq < resumeAfter)
                {
                    _logger.LogWarning("Stream {Stream} ends at {Last}, before the remembered offset {Offset}: it was recreated; reading it from the start.",
                        _options.StreamName, stream.Info.State.LastSeq, resumeAfter);
                    resumeAfter = 0;
                }
                var opts = new NatsJSOrderedConsumerOpts
                {
                    FilterSubjects = [_subject],
                    DeliverPolicy = resumeAfter == 0 ? ConsumerConfigDeliverPolicy.All : ConsumerConfigDeliverPolicy.ByStartSequence,
                    OptStartSeq = resumeAfter == 0 ? 0 : resumeAfter + 1,
                };
                INatsJSConsumer consumer = await _js.CreateOrderedConsumerAsync(_options.StreamName, opts, stop).ConfigureAwait(false);
                BrokerAnswered();
                await foreach (NatsJSMsg<byte[]> msg in consumer.ConsumeAsync<byte[]>(cancellationToken: stop).ConfigureAwait(false))
                {
                    if (msg.Metadata is { } meta)
                    {
                        Volatile.Write(ref _lastSequence, meta.Sequence.Stream);
                    }
                    Interlocked.Increment(ref _received);
                    Accept(msg.Data);
                }
            }
            catch (Exception ex) when (!stop.IsCancellationRequested)
            {
                BrokerFailed(ex, $"reading {_options.StreamName}");
                _streamReady = false;
                try
                {
                    await Task.Delay(_options.RetryDelay, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Logs a broker failure: a warning for the first since the broker last answered, then debug lines only,
    /// so a broker that stays down for hours does not fill the log with a line per retry.</summary>
    private void BrokerFailed(Exception ex, string what)
    {
        if (Interlocked.Exchange(ref _brokerFailing, 1) == 0)
        {
            _logger.LogWarning("Sharing: {What} failed ({Error}); serving from the local cache and retrying every {Delay} (further failures are logged at debug level).",
                what, ex.Message, _options.RetryDelay);
        }
        else
        {
            _logger.LogDebug("Sharing: {What} failed again ({Error}).", what, ex.Message);
        }
    }

    /// <summary>Notes that the broker answered; logs the recovery after failures.</summary>
    private void BrokerAnswered()
    {
        if (Interlocked.Exchange(ref _brokerFailing, 0) == 1)
        {
            _logger.LogInformation("Sharing: the broker answers again; resuming.");
        }
    }

    /// <summary>Checks a message and queues it for the cache; refusals and drops are counted.</summary>
    internal void Accept(byte[]? data)
    {
        SharedResponse? response = null;
        string? error = "empty message";
        if (data is null || !SharedResponseCodec.TryDecode(data, out response, out error))
        {
            Interlocked.Increment(ref _malformed);
            _logger.LogDebug("Refused a malformed message: {Error}", error);
            return;
        }
        if (response!.Identity != _options.Identity)
        {
            Interlocked.Increment(ref _foreign);
            return;
        }
        if (!_seen.Add(response.MessageId))
        {
            Interlocked.Increment(ref _duplicates);
            return;
        }
        if (!_ingestQueue.Writer.TryWrite(response) && _disposed == 0)
        {
            Interlocked.Increment(ref _ingestDropped);
        }
    }

    private async Task IngestLoopAsync()
    {
        try
        {
            await foreach (SharedResponse response in _ingestQueue.Reader.ReadAllAsync(_stop.Token).ConfigureAwait(false))
            {
                try
                {
                    if (_cache.AddResponse(response.Tokens))
                    {
                        Interlocked.Increment(ref _ingested);
                    }
                    else
                    {
                        Interlocked.Increment(ref _notKept);
                    }
                }
                catch (ObjectDisposedException)
                {
                    return;   // the cache went away first: nothing left to feed
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private volatile bool _streamReady;
    private INatsJSStream? _stream;

    /// <summary>Gets the stream, creating it (bounded in bytes, file storage, duplicate window) when missing.</summary>
    private async Task<INatsJSStream> EnsureStreamAsync(CancellationToken cancel)
    {
        if (_streamReady && _stream is not null)
        {
            return _stream;
        }
        INatsJSStream stream;
        try
        {
            stream = await _js.GetStreamAsync(_options.StreamName, cancellationToken: cancel).ConfigureAwait(false);
        }
        catch (NatsJSApiException ex) when (ex.Error.Code == 404)
        {
            try
            {
                stream = await _js.CreateStreamAsync(new StreamConfig(_options.StreamName, [_options.SubjectPrefix + ".>"])
                {
                    Storage = StreamConfigStorage.File,
                    MaxBytes = _maxStreamBytes,
                    Discard = StreamConfigDiscard.Old,
                    DuplicateWindow = _options.DuplicateWindow,
                }, cancel).ConfigureAwait(false);
                _logger.LogInformation("Created stream {Stream} ({Bytes} bytes kept).", _options.StreamName, _maxStreamBytes);
            }
            catch (NatsJSApiException race) when (race.Error.ErrCode == 10058)
            {
                // another replica created it first
                stream = await _js.GetStreamAsync(_options.StreamName, cancellationToken: cancel).ConfigureAwait(false);
            }
        }
        _stream = stream;
        _streamReady = true;
        return stream;
    }
}
