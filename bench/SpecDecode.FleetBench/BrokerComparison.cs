using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using SpecDecode.Fleet;
using SpecDecode.LocalServers;
using SpecDecode.Replay;

namespace SpecDecode.FleetBench;

/// <summary>
/// The broker comparison: the trace's real responses published to NATS JetStream and Redis Streams on loopback, each
/// run durably (file storage; append-only file), measuring publish-to-ingest latency, throughput, catch-up time and
/// server memory, unbounded and bounded (bench/RESULTS.md, "Broker choice").
/// </summary>
internal static class BrokerComparison
{
    /// <summary>Runs the comparison and prints the figures.</summary>
    /// <param name="first">Trajectories of the trace whose responses are published.</param>
    /// <param name="latencyMessages">Messages sent one at a time, 2 ms apart, for the latency figure.</param>
    /// <param name="only">"nats" or "redis" to measure one broker, null for both.</param>
    public static async Task RunAsync(int first, int latencyMessages, string? only)
    {
        var sw = Stopwatch.StartNew();
        TraceReader reader = TraceReader.Open(RepoRoot.DefaultTraces(), ProtocolTokenizer.CreateO200kBase(), new TraceSelection { First = first });
        var identity = new FleetIdentity("gemini-3-pro-preview (trace)", "o200k_base");
        List<byte[]> messages = reader.Read()
            .SelectMany(t => t.Calls.Select(c => SharedResponseCodec.Encode(new SharedResponse(Guid.NewGuid(), "replica-0", identity, c.Response.ToArray()))))
            .ToList();
        long totalBytes = messages.Sum(m => (long)m.Length);
        int[] sizes = messages.Select(m => m.Length).Order().ToArray();
        Console.WriteLine(F($"{messages.Count} real responses as messages: {totalBytes / 1048576.0:F1} MiB, size p50 {sizes[sizes.Length / 2]} B, p99 {sizes[(int)(sizes.Length * 0.99)]} B, max {sizes[^1]} B (read in {sw.Elapsed.TotalSeconds:F1} s)"));
        Console.WriteLine(F($"load average at start: {File.ReadAllText("/proc/loadavg").Trim()}"));

        foreach (string broker in new[] { "nats", "redis" }.Where(b => only is null || only == b))
        {
            Console.WriteLine();
            await Measure(broker, bounded: false, messages, totalBytes, latencyMessages);
            await Measure(broker, bounded: true, messages, totalBytes, latencyMessages);
        }
    }

    private static async Task Measure(string broker, bool bounded, List<byte[]> messages, long totalBytes, int latencyMessages)
    {
        using LocalServer server = broker == "nats" ? NatsServer.StartNew() : RedisServer.StartNew();
        long idle = server.ResidentBytes();
        await using IBrokerCandidate candidate = broker == "nats" ? new NatsCandidate((NatsServer)server) : new RedisCandidate((RedisServer)server);
        const long boundBytes = 8L << 20;
        long boundMessages = boundBytes / (totalBytes / messages.Count);
        await candidate.CreateStreamAsync(bounded ? boundBytes : -1, bounded ? boundMessages : -1);
        Console.WriteLine($"== {candidate.Name}{(bounded ? F($", bounded to {boundBytes >> 20} MiB (NATS MaxBytes) / ~{boundMessages} messages (Redis MAXLEN ~)") : ", unbounded")}");

        if (!bounded)
        {
            // Publish -> ingest latency: one live reader decodes each message; messages published one at a time, 2 ms apart.
            var published = new long[latencyMessages];
            var latencies = new ConcurrentBag<double>();
            var byId = new Dictionary<Guid, int>();
            for (int i = 0; i < latencyMessages; i++)
            {
                SharedResponseCodec.TryDecode(messages[i], out SharedResponse? r, out _);
                byId[r!.MessageId] = i;
            }
            using var stop = new CancellationTokenSource();
            int seen = 0;
            Task live = candidate.ReadAsync(m =>
            {
                long now = Stopwatch.GetTimestamp();
                SharedResponseCodec.TryDecode(m, out SharedResponse? r, out _);
                latencies.Add(Stopwatch.GetElapsedTime(published[byId[r!.MessageId]], now).TotalMilliseconds);
                Interlocked.Increment(ref seen);
            }, stop.Token);
            await Task.Delay(200);
            for (int i = 0; i < latencyMessages; i++)
            {
                published[i] = Stopwatch.GetTimestamp();
                await candidate.PublishAsync(messages[i], MessageId(i));
                await Task.Delay(2);
            }
            await WaitFor(() => Volatile.Read(ref seen) >= latencyMessages);
            stop.Cancel();
            await live;
            double[] l = latencies.Order().ToArray();
            Console.WriteLine(F($"publish->ingest latency over {l.Length} paced messages: p50 {P(l, 0.5):F3} ms, p99 {P(l, 0.99):F3} ms, max {l[^1]:F3} ms"));
        }

        // Throughput: every response published with 32 acknowledgements outstanding.
        int start = bounded ? 0 : latencyMessages;
        var watch = Stopwatch.StartNew();
        var inFlight = new List<Task>(32);
        for (int i = start; i < messages.Count; i++)
        {
            inFlight.Add(candidate.PublishAsync(messages[i], MessageId(i)));
            if (inFlight.Count == 32)
            {
                await Task.WhenAll(inFlight);
                inFlight.Clear();
            }
        }
        await Task.WhenAll(inFlight);
        double seconds = watch.Elapsed.TotalSeconds;
        int count = messages.Count - start;
        long bytes = messages.Skip(start).Sum(m => (long)m.Length);
        Console.WriteLine(F($"publish throughput: {count} messages in {seconds:F2} s = {count / seconds:F0} msg/s, {bytes / 1048576.0 / seconds:F1} MiB/s"));
        await Task.Delay(1200);   // Redis fsyncs its append-only file every second
        (long retained, long retainedBytes) = await candidate.StreamSizeAsync();
        Console.WriteLine(F($"stream: {retained} messages, {retainedBytes / 1048576.0:F1} MiB by the broker's count; server RSS {idle / 1048576.0:F1} MiB idle -> {server.ResidentBytes() / 1048576.0:F1} MiB"));

        // Catch-up: a fresh reader reads the whole retained stream from its first message.
        using var stopCatchUp = new CancellationTokenSource();
        int caught = 0;
        watch.Restart();
        Task reading = candidate.ReadAsync(m =>
        {
            SharedResponseCodec.TryDecode(m, out _, out _);
            Interlocked.Increment(ref caught);
        }, stopCatchUp.Token);
        await WaitFor(() => Volatile.Read(ref caught) >= retained);
        seconds = watch.Elapsed.TotalSeconds;
        stopCatchUp.Cancel();
        await reading;
        Console.WriteLine(F($"catch-up from the first retained message: {caught} messages in {seconds:F2} s = {caught / seconds:F0} msg/s; server RSS after {server.ResidentBytes() / 1048576.0:F1} MiB"));
    }

    private static string MessageId(int i) => "m" + i.ToString(CultureInfo.InvariantCulture);

    private static async Task WaitFor(Func<bool> condition)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > TimeSpan.FromMinutes(3))
            {
                throw new TimeoutException("the reader did not receive every message within 3 minutes");
            }
            await Task.Delay(1);
        }
    }

    private static double P(double[] sorted, double q) => sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
