using Microsoft.Extensions.Logging;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Net;
using SpecDecode.LocalServers;
using SpecDecode.Suffix;

namespace SpecDecode.Fleet.Tests;

/// <summary>Sharing between replicas through a real nats-server on loopback (started per test).</summary>
public sealed class ResponseSharingTests : IDisposable
{
    private static readonly FleetIdentity Identity = new("test-model@1", "test-tokenizer@1");
    private readonly NatsServer _nats = NatsServer.StartNew();

    public void Dispose() => _nats.Dispose();

    private ResponseSharingOptions Options(string replica) => new()
    {
        Url = _nats.Url,
        ReplicaId = replica,
        Identity = Identity,
        RetryDelay = TimeSpan.FromMilliseconds(100),
    };

    private static int[] Tokens(int seed, int length = 200)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => rng.Next(100_000)).ToArray();
    }

    private static async Task Until(Func<bool> condition, string what, int seconds = 20, ListLogger? log = null)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what} {(log is null ? "" : string.Join(" | ", log.Lines.Take(8)))}");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_response_finished_on_one_replica_drafts_on_the_other()
    {
        using var draftersA = new SuffixDrafter();
        using var draftersB = new SuffixDrafter();
        await using ResponseSharing a = ResponseSharing.Start(draftersA.Cache, Options("a"));
        await using ResponseSharing b = ResponseSharing.Start(draftersB.Cache, Options("b"));
        using var sharingA = new SharingDrafter(draftersA, a);

        int[] response = Tokens(1);
        var r1 = new RequestId(1);
        sharingA.StartRequest(r1, [1, 2, 3], null);
        sharingA.Observe(r1, response.AsSpan(0, 120));
        sharingA.Observe(r1, response.AsSpan(120));
        sharingA.EndRequest(r1);

        await Until(() => b.GetStatistics().Ingested == 1, "B to ingest A's response");
        await Until(() => a.GetStatistics().Duplicates == 1, "A to see its own response come back");
        Assert.Equal(1, a.GetStatistics().Published);
        Assert.Equal(0, a.GetStatistics().Ingested);

        // B never generated it, yet drafts it.
        draftersB.StartRequest(r1, [9, .. response[50..70]], null);
        Assert.Equal(response[70..86], draftersB.Propose(r1, 16).Tokens.ToArray());
        draftersB.EndRequest(r1);
        draftersB.Cache.CheckIntegrity();
        draftersA.Cache.CheckIntegrity();
        Assert.Equal(response.Length, draftersA.Cache.GetStatistics().CachedResponseTokens);   // not twice
    }

    [Fact]
    public async Task A_late_replica_catches_up_within_its_cache_bound()
    {
        using var cacheA = new SuffixDecodingCache();
        await using ResponseSharing a = ResponseSharing.Start(cacheA, Options("a"));
        for (int i = 0; i < 40; i++)
        {
            a.Publish(Tokens(i, 100));
        }
        Assert.True(await a.FlushAsync(TimeSpan.FromSeconds(20)));

        using var late = new SuffixDecodingCache(new SuffixCacheOptions { MaxCachedTokens = 1_000 });
        await using ResponseSharing b = ResponseSharing.Start(late, Options("late"));
        await Until(() => b.GetStatistics().Ingested == 40, "the late replica to read the whole stream");
        SuffixCacheStatistics stats = late.GetStatistics();
        Assert.Equal(1_000, stats.CachedResponseTokens);          // the newest ten responses
        Assert.Equal(10, stats.CachedResponses);
        Assert.Equal(40UL, b.GetStatistics().LastSequence);
        late.CheckIntegrity();
    }

    [Fact]
    public async Task Duplicates_malformed_and_foreign_messages_are_counted_never_ingested()
    {
        using var cache = new SuffixDecodingCache();
        await using ResponseSharing b = ResponseSharing.Start(cache, Options("b"));
        await using var raw = new NatsClient(_nats.Url);
        INatsJSContext js = raw.CreateJetStreamContext();
        await Until(() => b.GetStatistics().Connected, "B to connect");
        await Until(() => StreamExists(js).Result, "B to create the stream");

        var one = new SharedResponse(Guid.NewGuid(), "x", Identity, Tokens(3, 50));
        byte[] body = SharedResponseCodec.Encode(one);
        // The same response twice under two broker message ids (so the broker's own filter lets both through).
        await js.PublishAsync(b.Subject, body, opts: new NatsJSPubOpts { MsgId = "dup-1" });
        await js.PublishAsync(b.Subject, body, opts: new NatsJSPubOpts { MsgId = "dup-2" });
        // A retried publication under one broker id: the broker drops it.
        await js.PublishAsync(b.Subject, body, opts: new NatsJSPubOpts { MsgId = "dup-1" });
        await js.PublishAsync(b.Subject, new byte[] { 1, 2, 3 });
        await js.PublishAsync(b.Subject, SharedResponseCodec.Encode(one with { MessageId = Guid.NewGuid(), Identity = Identity with { Tokenizer = "other" } }));
        await js.PublishAsync(b.Subject, SharedResponseCodec.Encode(one with { MessageId = Guid.NewGuid() }));

        await Until(() => b.GetStatistics().Received == 5, "five messages to arrive");
        await Until(() => b.GetStatistics().Ingested == 2, "two distinct responses to be ingested");
        SharingStatistics s = b.GetStatistics();
        Assert.Equal(1, s.Duplicates);
        Assert.Equal(1, s.Malformed);
        Assert.Equal(1, s.Foreign);
        Assert.Equal(100, cache.GetStatistics().CachedResponseTokens);
        cache.CheckIntegrity();
    }

    [Fact]
    public async Task With_the_broker_down_publishing_never_blocks_and_sharing_resumes_when_it_returns()
    {
        using var cacheA = new SuffixDecodingCache();
        using var cacheB = new SuffixDecodingCache();
        await using ResponseSharing a = ResponseSharing.Start(cacheA, Options("a"));
        await using ResponseSharing b = ResponseSharing.Start(cacheB, Options("b"));
        a.Publish(Tokens(100));
        await Until(() => b.GetStatistics().Ingested == 1, "the first response before the outage");

        _nats.Kill();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < 20; i++)
        {
            a.Publish(Tokens(200 + i));
        }
        Assert.True(watch.ElapsedMilliseconds < 500, $"20 publications with the broker down took {watch.ElapsedMilliseconds} ms");
        await Task.Delay(600);
        Assert.Equal(1, a.GetStatistics().Published);
        Assert.False(b.GetStatistics().Connected);

        _nats.Start();   // same port, same data folder: the stream and its sequence survive
        await Until(() => b.GetStatistics().Ingested == 21, "every response after the broker came back", 40);
        Assert.True(await a.FlushAsync(TimeSpan.FromSeconds(20)));
        SharingStatistics sa = a.GetStatistics(), sb = b.GetStatistics();
        Assert.Equal(21, sa.Published);
        // (NATS.Net holds a publication while the connection is down, so a short outage needs no retry of ours.)
        Assert.Equal(21UL, sb.LastSequence);          // resumed after its offset: nothing read twice
        Assert.Equal(21, sb.Received);
        Assert.Equal(21 * 200, cacheB.GetStatistics().CachedResponseTokens);
        cacheB.CheckIntegrity();
    }

    /// <summary>A publication whose acknowledgement does not come (the broker frozen with the message sent) is sent
    /// again after <see cref="ResponseSharingOptions.RequestTimeout"/> under its message id; once the broker answers,
    /// the retry of the stored message is a duplicate that counts as published, the queue behind it moves, and the
    /// stream holds each message once.</summary>
    [Fact]
    public async Task A_publication_whose_acknowledgement_never_comes_is_retried_and_stored_once()
    {
        using var cache = new SuffixDecodingCache();
        var log = new ListLogger();
        await using ResponseSharing a = ResponseSharing.Start(cache, Options("a") with { RequestTimeout = TimeSpan.FromMilliseconds(300) }, log);
        a.Publish(Tokens(600));
        await Until(() => a.GetStatistics().Published == 1, "the first publication", log: log);

        _nats.Freeze();
        try
        {
            a.Publish(Tokens(601));
            a.Publish(Tokens(602));
            // within 4 s: the option's 300 ms, not NATS.Net's default 5 s, bounds the wait
            await Until(() => a.GetStatistics().PublishRetries >= 2, "retries while the broker does not answer", 4);
            Assert.Equal(1, a.GetStatistics().Published);
        }
        finally
        {
            _nats.Thaw();
        }
        bool drained = await a.FlushAsync(TimeSpan.FromSeconds(20));
        Assert.True(drained, $"the queue drained once the broker answered: {a.GetStatistics()} {string.Join(" | ", log.Lines.TakeLast(5))}");
        Assert.Equal(3, a.GetStatistics().Published);
        await using var admin = new NatsClient(_nats.Url);
        INatsJSStream stream = await admin.CreateJetStreamContext().GetStreamAsync("SPECDECODE_RESPONSES");
        Assert.Equal(3L, stream.Info.State.Messages);   // the retries of one message id were dropped as duplicates
    }

    /// <summary>A response larger than the broker takes can never be published: it is dropped and counted, with a
    /// warning, and the responses behind it are published; retrying it would hold them for good.</summary>
    [Fact]
    public async Task A_response_too_large_for_the_broker_is_dropped_and_the_queue_moves_on()
    {
        using var small = NatsServer.StartNew(maxPayload: 4096);
        var log = new ListLogger();
        using var cache = new SuffixDecodingCache();
        await using ResponseSharing a = ResponseSharing.Start(cache, Options("a") with { Url = small.Url }, log);
        a.Publish(Tokens(700, length: 100));
        a.Publish(Tokens(701, length: 5_000));   // about 20 KB encoded
        a.Publish(Tokens(702, length: 100));
        Assert.True(await a.FlushAsync(TimeSpan.FromSeconds(20)), $"the queue drained: {a.GetStatistics()} {string.Join(" | ", log.Lines)}");
        SharingStatistics stats = a.GetStatistics();
        Assert.Equal(2, stats.Published);
        Assert.Equal(1, stats.PublishDropped);
        Assert.Contains(log.Lines, l => l.Contains("too large", StringComparison.Ordinal));
    }

    /// <summary>A failure that persists (here a stream of the same name that does not take our subjects, so every
    /// publication and every consumer is refused) is one warning, then debug lines, and one line when it ends; not a
    /// warning per retry. (A broker that is merely down raises nothing: NATS.Net holds the calls until it is back.)</summary>
    [Fact]
    public async Task A_persistent_broker_failure_is_logged_once_not_at_every_retry()
    {
        await using (var admin = new NatsClient(_nats.Url))
        {
            await admin.CreateJetStreamContext().CreateStreamAsync(new StreamConfig("SPECDECODE_RESPONSES", ["someone-else.>"]));
        }
        var log = new ListLogger();
        using var cache = new SuffixDecodingCache();
        await using ResponseSharing a = ResponseSharing.Start(cache, Options("a") with { RetryDelay = TimeSpan.FromMilliseconds(50) }, log);
        a.Publish(Tokens(500));
        await Until(() => a.GetStatistics().PublishRetries + a.GetStatistics().ReaderRestarts >= 6, "several refused attempts", 40);
        Assert.Equal(1, log.Count(LogLevel.Warning));
        Assert.True(log.Count(LogLevel.Debug) >= 4, $"later failures at debug level: {string.Join(" | ", log.Lines)}");
        Assert.Equal(0, a.GetStatistics().Published);

        await using (var admin = new NatsClient(_nats.Url))
        {
            await admin.CreateJetStreamContext().DeleteStreamAsync("SPECDECODE_RESPONSES");
        }
        await Until(() => a.GetStatistics().Published == 1, "the publication once the stream was fixed", 40);
        Assert.Contains(log.Lines, l => l.Contains("answers again", StringComparison.Ordinal));
        Assert.Equal(1, log.Count(LogLevel.Warning));
    }

    /// <summary>A logger that keeps its lines.</summary>
    private sealed class ListLogger : ILogger
    {
        private readonly List<(LogLevel Level, string Line)> _entries = [];

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_entries)
                {
                    return _entries.Select(e => e.Line).ToArray();
                }
            }
        }

        public int Count(LogLevel level)
        {
            lock (_entries)
            {
                return _entries.Count(e => e.Level == level);
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_entries)
            {
                _entries.Add((logLevel, formatter(state, exception)));
            }
        }
    }

    [Fact]
    public async Task A_recreated_stream_is_read_from_its_start()
    {
        using var cacheA = new SuffixDecodingCache();
        using var cacheB = new SuffixDecodingCache();
        await using ResponseSharing a = ResponseSharing.Start(cacheA, Options("a"));
        await using ResponseSharing b = ResponseSharing.Start(cacheB, Options("b"));
        for (int i = 0; i < 5; i++)
        {
            a.Publish(Tokens(300 + i));
        }
        await Until(() => b.GetStatistics().Ingested == 5, "five responses");

        // The broker loses its data (a new machine): the stream starts again at sequence 1.
        _nats.Kill();
        foreach (string entry in Directory.EnumerateFileSystemEntries(_nats.DataFolder))
        {
            if (Directory.Exists(entry)) Directory.Delete(entry, recursive: true); else File.Delete(entry);
        }
        _nats.Start();
        await Until(() => a.GetStatistics().Connected && b.GetStatistics().Connected, "both to reconnect", 40);
        a.Publish(Tokens(400));
        await Until(() => b.GetStatistics().Ingested == 6, "the response published into the new stream", 40);
        Assert.Equal(1UL, b.GetStatistics().LastSequence);
        cacheB.CheckIntegrity();
    }

    [Fact]
    public async Task A_full_ingest_queue_drops_and_counts_instead_of_waiting()
    {
        using var cache = new SuffixDecodingCache();
        await using ResponseSharing b = ResponseSharing.Start(cache, Options("b") with { IngestQueueCapacity = 1 });
        byte[][] messages = Enumerable.Range(0, 300)
            .Select(i => SharedResponseCodec.Encode(new SharedResponse(Guid.NewGuid(), "x", Identity, Tokens(i, 20_000)))).ToArray();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        foreach (byte[] m in messages)
        {
            b.Accept(m);
        }
        long acceptMs = watch.ElapsedMilliseconds;
        await Until(() => b.GetStatistics().Ingested + b.GetStatistics().IngestDropped == 300, "every message to be ingested or dropped", 60);
        Assert.True(b.GetStatistics().IngestDropped > 0, "300 responses of 20k tokens fit a queue of one");
        Assert.True(acceptMs < 5_000, $"accepting took {acceptMs} ms");
        cache.CheckIntegrity();
    }

    [Fact]
    public void Options_are_checked_up_front()
    {
        using var cache = new SuffixDecodingCache();
        Assert.Throws<ArgumentException>(() => ResponseSharing.Start(cache, Options("a") with { Url = "not a url" }));
        Assert.Throws<ArgumentException>(() => ResponseSharing.Start(cache, Options(" ")));
        Assert.Throws<ArgumentOutOfRangeException>(() => ResponseSharing.Start(cache, Options("a") with { IngestQueueCapacity = 0 }));
        Assert.Throws<ArgumentException>(() => ResponseSharing.Start(cache, Options("a") with { Identity = new FleetIdentity("m", "") }));
    }

    [Fact]
    public async Task The_sharing_drafter_needs_the_sharing_of_its_own_cache()
    {
        using var drafter = new SuffixDrafter();
        using var other = new SuffixDecodingCache();
        await using ResponseSharing sharing = ResponseSharing.Start(other, Options("a"));
        Assert.Throws<ArgumentException>(() => new SharingDrafter(drafter, sharing));
    }

    private static async Task<bool> StreamExists(INatsJSContext js)
    {
        try
        {
            await js.GetStreamAsync("SPECDECODE_RESPONSES");
            return true;
        }
        catch (NatsJSApiException)
        {
            return false;
        }
    }
}
