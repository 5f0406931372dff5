using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using NATS.Net;
using SpecDecode.LocalServers;

namespace SpecDecode.FleetBench;

/// <summary>NATS JetStream: a file-backed stream, messages deduplicated by id, read by an ordered consumer (push-style, no polling).</summary>
internal sealed class NatsCandidate(NatsServer server) : IBrokerCandidate
{
    private const string Stream = "BENCH";
    private const string Subject = "bench.responses";
    private readonly NatsClient _client = new(server.Url);
    private INatsJSContext Js => _client.CreateJetStreamContext();

    public string Name => "NATS JetStream (nats-server 2.9.10, NATS.Net 3.3.2)";

    public async Task CreateStreamAsync(long maxBytes, long maxMessages)
    {
        await Js.CreateStreamAsync(new StreamConfig(Stream, [Subject])
        {
            Storage = StreamConfigStorage.File,
            MaxBytes = maxBytes,
            Discard = StreamConfigDiscard.Old,
            DuplicateWindow = TimeSpan.FromMinutes(2),
        });
    }

    public async Task PublishAsync(byte[] message, string messageId)
    {
        PubAckResponse ack = await Js.PublishAsync(Subject, message, opts: new NatsJSPubOpts { MsgId = messageId });
        ack.EnsureSuccess();
    }

    public async Task ReadAsync(Action<byte[]> received, CancellationToken cancel)
    {
        INatsJSConsumer consumer = await Js.CreateOrderedConsumerAsync(Stream, new NatsJSOrderedConsumerOpts { DeliverPolicy = ConsumerConfigDeliverPolicy.All }, cancel);
        try
        {
            await foreach (NatsJSMsg<byte[]> msg in consumer.ConsumeAsync<byte[]>(cancellationToken: cancel))
            {
                received(msg.Data!);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async Task<(long Messages, long Bytes)> StreamSizeAsync()
    {
        INatsJSStream stream = await Js.GetStreamAsync(Stream);
        return (stream.Info.State.Messages, stream.Info.State.Bytes);
    }

    public long ServerResidentBytes() => server.ResidentBytes();

    public async ValueTask DisposeAsync() => await _client.DisposeAsync();
}
