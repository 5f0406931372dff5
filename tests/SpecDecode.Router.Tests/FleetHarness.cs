using System.Net.Http.Json;
using NATS.Client.JetStream;
using NATS.Net;
using SpecDecode.LocalServers;
using SpecDecode.Replay;
using SpecDecode.ReplayReplica;

namespace SpecDecode.Router.Tests;

/// <summary>
/// A fleet on loopback, every part its own process: optionally nats-server, N replicas
/// (tests/SpecDecode.ReplayReplica, model-free: they replay recorded calls through their suffix drafters), and the
/// router in front. When the OpenAI-compatible server exists, a replica here becomes that server with the embedded
/// model, and <see cref="ReplayAsync"/> sends chat completions instead of recorded calls.
/// </summary>
internal sealed class FleetHarness : IAsyncDisposable
{
    private readonly List<string[]> _replicaArgs = [];

    private FleetHarness() { }

    public NatsServer? Nats { get; private set; }

    public List<DotnetApp> Replicas { get; } = [];

    public DotnetApp? Router { get; private set; }

    /// <summary>Where clients send requests: the router, or the only replica when there is no router.</summary>
    public string Entry => Router?.Url ?? Replicas[0].Url;

    /// <summary>Starts the broker (when sharing), the replicas and (for more than one replica) the router.</summary>
    public static FleetHarness Start(int replicas, bool shared, long maxCachedTokens = -1)
    {
        var fleet = new FleetHarness();
        try
        {
            if (shared)
            {
                fleet.Nats = NatsServer.StartNew();
            }
            for (int i = 0; i < replicas; i++)
            {
                var args = new List<string> { $"--Replica:Id=replica-{i}", $"--Replica:MaxCachedTokens={maxCachedTokens}" };
                if (fleet.Nats is not null)
                {
                    args.Add($"--Replica:Nats={fleet.Nats.Url}");
                }
                fleet._replicaArgs.Add([.. args]);
                fleet.Replicas.Add(DotnetApp.StartNew("tests/SpecDecode.ReplayReplica", [.. args]));
            }
            if (replicas > 1)
            {
                var args = new List<string> { "--health-interval", "0.5", "--health-timeout", "1", "--reactivation", "1" };
                args.AddRange(fleet.Replicas.SelectMany(r => new[] { "--replica", r.Url + "/" }));
                fleet.Router = DotnetApp.StartNew("samples/SpecDecode.Router", [.. args]);
            }
            return fleet;
        }
        catch
        {
            fleet.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>
    /// Replays <paramref name="trajectories"/> with <paramref name="agents"/> agents at once (each takes the next
    /// trajectory and sends its calls one after the other, naming its conversation in the router's header). A call
    /// that fails (its replica died under it) is sent again, as an agent would; <paramref name="afterCall"/> runs after
    /// every completed call with the number completed so far; <paramref name="beforeCall"/> runs before each call is
    /// sent, with the replica that served the conversation's previous call (null for its first call).
    /// </summary>
    public async Task<FleetRun> ReplayAsync(IReadOnlyList<TraceTrajectory> trajectories, int agents, Func<int, Task>? afterCall = null,
        Action<string?>? beforeCall = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        int next = -1, completed = 0, retries = 0;
        long steps = 0, tokens = 0, drafted = 0, accepted = 0;
        var gate = new SemaphoreSlim(1, 1);
        async Task Agent()
        {
            int t;
            while ((t = Interlocked.Increment(ref next)) < trajectories.Count)
            {
                TraceTrajectory trajectory = trajectories[t];
                string? home = null;
                foreach (TraceCall call in trajectory.Calls)
                {
                    beforeCall?.Invoke(home);
                    var body = new ReplayCallRequest { Conversation = trajectory.TaskId, Prompt = call.Prompt.ToArray(), Response = call.Response.ToArray(), Budget = 32 };
                    for (int attempt = 1; ; attempt++)
                    {
                        try
                        {
                            using var request = new HttpRequestMessage(HttpMethod.Post, Entry + "/v1/replay") { Content = JsonContent.Create(body) };
                            request.Headers.Add("X-SpecDecode-Conversation", trajectory.TaskId);
                            using HttpResponseMessage response = await http.SendAsync(request);
                            response.EnsureSuccessStatusCode();
                            home = response.Headers.TryGetValues("X-SpecDecode-Replica", out var served) ? served.First() : null;
                            ReplayCallResult r = (await response.Content.ReadFromJsonAsync<ReplayCallResult>())!;
                            Assert.Equal(call.ResponseLength, r.Tokens);
                            Interlocked.Add(ref steps, r.Steps);
                            Interlocked.Add(ref tokens, r.Tokens);
                            Interlocked.Add(ref drafted, r.DraftedTokens);
                            Interlocked.Add(ref accepted, r.AcceptedTokens);
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
        return new FleetRun(completed, steps, tokens, drafted, accepted, retries);
    }

    /// <summary>Every replica's counters.</summary>
    public async Task<List<ReplicaStatistics>> StatisticsAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var all = new List<ReplicaStatistics>();
        foreach (DotnetApp r in Replicas)
        {
            all.Add((await http.GetFromJsonAsync<ReplicaStatistics>(r.Url + "/fleet/stats"))!);
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
            using HttpResponseMessage response = await http.PostAsync(r.Url + "/fleet/check", null);
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

/// <summary>What one replay through the fleet measured.</summary>
internal sealed record FleetRun(int Calls, long Steps, long Tokens, long DraftedTokens, long AcceptedTokens, int Retries)
{
    public double TokensPerStep => (double)Tokens / Steps;
}
