using System.Net.Http.Json;
using NATS.Client.JetStream;
using NATS.Net;
using SpecDecode.LocalServers;

namespace SpecDecode.Router.Tests;

/// <summary>Which program a fleet's replicas run.</summary>
internal enum ReplicaKind
{
    /// <summary>tests/SpecDecode.ReplayReplica: model-free, replays recorded calls through its suffix drafter.</summary>
    StandIn,

    /// <summary>samples/SpecDecode.Server on the embedded model (models/default) on the CPU.</summary>
    Server,
}

/// <summary>
/// A fleet on loopback, every part its own process: optionally nats-server, N replicas (the model-free stand-in or the
/// real server), and, for more than one replica, the router in front. Agents replay calls through it
/// (<see cref="ReplayAsync"/>); every replica answers the same admin routes (<c>GET /admin/cache</c>, <c>POST
/// /admin/cache/check</c>).
/// </summary>
internal sealed class FleetHarness : IAsyncDisposable
{
    /// <summary>The real server's settings in a fleet test: a context for the cut conversations (<see cref="ChatCalls"/>),
    /// four slots, and no start-up measurement of the verification cost (adaptive speculation off: greedy outputs do not
    /// depend on it, and the measurement would take most of a start on a shared CPU).</summary>
    private static readonly string[] ServerArguments = ["--max-context", "2048", "--max-batch", "4", "--no-adaptive"];

    private FleetHarness() { }

    public NatsServer? Nats { get; private set; }

    public List<DotnetApp> Replicas { get; } = [];

    public DotnetApp? Router { get; private set; }

    /// <summary>Where clients send requests: the router, or the only replica when there is no router.</summary>
    public string Entry => Router?.Url ?? Replicas[0].Url;

    /// <summary>Starts the broker (when sharing), the replicas (at once) and, for more than one replica, the router.</summary>
    public static async Task<FleetHarness> StartAsync(ReplicaKind kind, int replicas, bool shared, long maxCachedTokens = -1)
    {
        var fleet = new FleetHarness();
        try
        {
            if (shared)
            {
                fleet.Nats = NatsServer.StartNew();
            }
            DotnetApp[] started = await Task.WhenAll(Enumerable.Range(0, replicas).Select(i =>
                Task.Run(() => DotnetApp.StartNew(Project(kind), Arguments(kind, "replica-" + i, fleet.Nats?.Url, maxCachedTokens)))));
            fleet.Replicas.AddRange(started);
            if (replicas > 1)
            {
                var args = new List<string> { "--health-interval", "0.5", "--health-timeout", "2", "--reactivation", "1" };
                args.AddRange(fleet.Replicas.SelectMany(r => new[] { "--replica", r.Url + "/" }));
                fleet.Router = DotnetApp.StartNew("samples/SpecDecode.Router", [.. args]);
            }
            return fleet;
        }
        catch
        {
            await fleet.DisposeAsync();
            throw;
        }
    }

    private static string Project(ReplicaKind kind) => kind == ReplicaKind.Server ? "samples/SpecDecode.Server" : "tests/SpecDecode.ReplayReplica";

    private static string[] Arguments(ReplicaKind kind, string id, string? nats, long maxCachedTokens)
    {
        if (kind == ReplicaKind.StandIn)
        {
            return [$"--Replica:Id={id}", $"--Replica:MaxCachedTokens={maxCachedTokens}", .. nats is null ? Array.Empty<string>() : [$"--Replica:Nats={nats}"]];
        }
        return [.. ServerArguments, "--max-cached-tokens", maxCachedTokens.ToString(System.Globalization.CultureInfo.InvariantCulture),
            .. nats is null ? Array.Empty<string>() : ["--fleet-nats", nats, "--replica-id", id]];
    }

    /// <summary>
    /// Replays <paramref name="calls"/> with <paramref name="agents"/> agents at once (each takes the next trajectory and
    /// sends its calls one after the other, naming its conversation in the router's header). A call that fails (its
    /// replica died under it) is sent again, as an agent would; <paramref name="afterCall"/> runs after every completed
    /// call with the number completed so far; <paramref name="beforeCall"/> runs before each call is sent, with the
    /// replica that served the conversation's previous call (null for its first call).
    /// </summary>
    public async Task<FleetRun> ReplayAsync(IFleetCalls calls, int agents, Func<int, Task>? afterCall = null, Action<string?>? beforeCall = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        int next = -1, completed = 0, retries = 0;
        long steps = 0, tokens = 0, drafted = 0, accepted = 0;
        var answers = new System.Collections.Concurrent.ConcurrentDictionary<(int, int), string>();
        var gate = new SemaphoreSlim(1, 1);
        async Task Agent()
        {
            int t;
            while ((t = Interlocked.Increment(ref next)) < calls.Trajectories)
            {
                string? home = null;
                for (int call = 0; call < calls.Calls(t); call++)
                {
                    beforeCall?.Invoke(home);
                    for (int attempt = 1; ; attempt++)
                    {
                        try
                        {
                            using HttpRequestMessage request = calls.Request(Entry, t, call);
                            request.Headers.Add(RouterOptions.ConversationHeader, calls.Conversation(t));
                            using HttpResponseMessage response = await http.SendAsync(request);
                            if (!response.IsSuccessStatusCode)
                            {
                                // a 5xx from a replica that is going down is retried like a broken connection; anything else is a bug
                                Assert.True((int)response.StatusCode >= 500, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                                throw new HttpRequestException($"status {(int)response.StatusCode}");
                            }
                            home = response.Headers.TryGetValues(RouterOptions.ReplicaHeader, out var served) ? served.First() : null;
                            CallMeasure m = await calls.ReadAsync(response, t, call);
                            Interlocked.Add(ref steps, m.Steps);
                            Interlocked.Add(ref tokens, m.Tokens);
                            Interlocked.Add(ref drafted, m.DraftedTokens);
                            Interlocked.Add(ref accepted, m.AcceptedTokens);
                            if (m.Answer is not null)
                            {
                                answers[(t, call)] = m.Answer;
                            }
                            break;
                        }
                        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && attempt < 20)
                        {
                            Interlocked.Increment(ref retries);
                            await Task.Delay(200);
                        }
                    }
                    int done = Interlocked.Increment(ref completed);
                    if (afterCall is not null)
                    {
                        await gate.WaitAsync();
                        try
                        {
                            await afterCall(done);
                        }
                        finally
                        {
                            gate.Release();
                        }
                    }
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, agents).Select(_ => Task.Run(Agent)));
        return new FleetRun(completed, steps, tokens, drafted, accepted, retries, answers);
    }

    /// <summary>Every replica's cache and sharing counters.</summary>
    public async Task<List<ReplicaReport>> ReportsAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var all = new List<ReplicaReport>();
        foreach (DotnetApp r in Replicas)
        {
            all.Add((await http.GetFromJsonAsync<ReplicaReport>(r.Url + "/admin/cache", ReplicaReport.Json))!);
        }
        return all;
    }

    /// <summary>Runs CheckIntegrity on every replica; the problems found, empty when none.</summary>
    public async Task<List<string>> CheckIntegrityAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        var problems = new List<string>();
        foreach (DotnetApp r in Replicas)
        {
            using HttpResponseMessage response = await http.PostAsync(r.Url + "/admin/cache/check", null);
            if (!response.IsSuccessStatusCode)
            {
                problems.Add($"{r.Url}: {await response.Content.ReadAsStringAsync()}");
            }
        }
        return problems;
    }

    /// <summary>Messages the broker's stream retains now, and its last sequence (every message ever stored, once each).</summary>
    public async Task<(long Retained, long LastSequence)> StreamStateAsync()
    {
        await using var client = new NatsClient(Nats!.Url);
        INatsJSStream stream = await client.CreateJetStreamContext().GetStreamAsync("SPECDECODE_RESPONSES");
        return ((long)stream.Info.State.Messages, (long)stream.Info.State.LastSeq);
    }

    public async ValueTask DisposeAsync()
    {
        Router?.Dispose();
        foreach (DotnetApp r in Replicas)
        {
            r.Dispose();
        }
        Nats?.Dispose();
        await Task.CompletedTask;
    }
}

/// <summary>What one replay through the fleet measured, with the generated answers by (trajectory, call) where the
/// replicas generate them.</summary>
internal sealed record FleetRun(int Calls, long Steps, long Tokens, long DraftedTokens, long AcceptedTokens, int Retries,
    IReadOnlyDictionary<(int Trajectory, int Call), string> Answers)
{
    public double TokensPerStep => (double)Tokens / Steps;

    /// <summary>Calls whose generated answer differs from <paramref name="other"/>'s.</summary>
    public int AnswersDifferingFrom(FleetRun other) => Answers.Count(a => !other.Answers.TryGetValue(a.Key, out string? o) || o != a.Value);
}
