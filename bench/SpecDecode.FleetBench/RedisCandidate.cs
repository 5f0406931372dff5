using SpecDecode.LocalServers;
using StackExchange.Redis;

namespace SpecDecode.FleetBench;

/// <summary>
/// Redis Streams: XADD with an approximate MAXLEN bound, read with XREAD from the last id. StackExchange.Redis has no
/// blocking XREAD (its connections are multiplexed), so the reader polls, pausing 1 ms when the stream has nothing new.
/// </summary>
internal sealed class RedisCandidate(RedisServer server) : IBrokerCandidate
{
    private const string Key = "bench:responses";
    private readonly ConnectionMultiplexer _connection = ConnectionMultiplexer.Connect(server.Configuration);
    private long _maxMessages;

    public string Name => "Redis Streams (redis-server 7.0.15, StackExchange.Redis 3.4.35)";

    public Task CreateStreamAsync(long maxBytes, long maxMessages)
    {
        _maxMessages = maxMessages;
        return Task.CompletedTask;
    }

    public async Task PublishAsync(byte[] message, string messageId)
    {
        await _connection.GetDatabase().StreamAddAsync(Key,
            [new NameValueEntry("id", messageId), new NameValueEntry("body", message)],
            maxLength: _maxMessages > 0 ? (int)_maxMessages : null, useApproximateMaxLength: true);
    }

    public async Task ReadAsync(Action<byte[]> received, CancellationToken cancel)
    {
        IDatabase db = _connection.GetDatabase();
        RedisValue last = "0-0";
        while (!cancel.IsCancellationRequested)
        {
            StreamEntry[] entries = await db.StreamReadAsync(Key, last, count: 512);
            if (entries.Length == 0)
            {
                try
                {
                    await Task.Delay(1, cancel);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                continue;
            }
            foreach (StreamEntry e in entries)
            {
                received((byte[])e["body"]!);
                last = e.Id;
            }
        }
    }

    public async Task<(long Messages, long Bytes)> StreamSizeAsync()
    {
        IDatabase db = _connection.GetDatabase();
        long length = await db.StreamLengthAsync(Key);
        RedisResult usage = await db.ExecuteAsync("MEMORY", "USAGE", Key, "SAMPLES", "0");
        return (length, usage.IsNull ? -1 : (long)usage);
    }

    public long ServerResidentBytes() => server.ResidentBytes();

    public ValueTask DisposeAsync()
    {
        _connection.Dispose();
        return ValueTask.CompletedTask;
    }
}
