using SpecDecode.Fleet;
using SpecDecode.Replay;
using SpecDecode.ReplayReplica;
using Xunit.Abstractions;

namespace SpecDecode.Router.Tests;

/// <summary>
/// The fleet end to end, every part a process on loopback: four model-free replicas behind the router, sharing
/// through nats-server, replaying the first trajectories of the SWE-bench trace with four agents at once.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetEndToEndTests(ITestOutputHelper output)
{
    private const int Trajectories = 16, Agents = 4;

    private static readonly Lazy<List<TraceTrajectory>> Slice = new(() =>
        TraceReader.Open(RepoRoot.DefaultTraces(), ProtocolTokenizer.CreateO200kBase(), new TraceSelection { First = Trajectories }).Read().ToList());

    [Fact]
    public async Task Sharing_through_the_broker_matches_one_process_and_isolated_replicas_fall_below()
    {
        List<TraceTrajectory> slice = Slice.Value;
        FleetRun single, shared, isolated;
        await using (FleetHarness one = FleetHarness.Start(replicas: 1, shared: false))
        {
            single = await one.ReplayAsync(slice, Agents);
        }
        await using (FleetHarness fleet = FleetHarness.Start(replicas: 4, shared: true))
        {
            shared = await fleet.ReplayAsync(slice, Agents);
            List<ReplicaStatistics> stats = await fleet.StatisticsAsync();
            Assert.True(stats.Count(s => s.Calls > 0) >= 3, "the router spread the conversations over at least three replicas");
            Assert.All(stats, s => Assert.True(s.Sharing!.Value.Ingested > 0, $"{s.Replica} ingested nothing"));
        }
        await using (FleetHarness fleet = FleetHarness.Start(replicas: 4, shared: false))
        {
            isolated = await fleet.ReplayAsync(slice, Agents);
        }
        output.WriteLine($"tokens per step: one process {single.TokensPerStep:F4}, 4 replicas shared {shared.TokensPerStep:F4}, 4 replicas isolated {isolated.TokensPerStep:F4}");

        long calls = slice.Sum(t => t.Calls.Length);
        Assert.All(new[] { single, shared, isolated }, r => Assert.Equal(calls, r.Calls));
        Assert.True(shared.TokensPerStep >= 0.97 * single.TokensPerStep,
            $"shared {shared.TokensPerStep:F4} is more than 3% below one process {single.TokensPerStep:F4}");
        Assert.True(isolated.TokensPerStep < 0.99 * shared.TokensPerStep,
            $"isolated {isolated.TokensPerStep:F4} is not measurably below shared {shared.TokensPerStep:F4}");
    }

    [Fact]
    public async Task A_replica_and_the_broker_die_and_come_back_and_every_call_completes()
    {
        List<TraceTrajectory> slice = Slice.Value;
        int calls = slice.Sum(t => t.Calls.Length);
        const long bound = 60_000;
        await using FleetHarness fleet = FleetHarness.Start(replicas: 4, shared: true, maxCachedTokens: bound);
        bool brokerDone = false;
        int completed = 0, replicaKill = 0;
        Task? killing = null;
        FleetRun run = await fleet.ReplayAsync(slice, Agents, async done =>
        {
            Volatile.Write(ref completed, done);
            if (!brokerDone && done >= calls / 2)
            {
                brokerDone = true;
                fleet.Nats!.Kill();
                await Task.Delay(1000);
                fleet.Nats.Start();                     // same data folder: the stream survives
                output.WriteLine($"nats-server killed and restarted after {done} calls");
            }
        }, home =>
        {
            // Past a quarter of the run, the first call sent to replica-1 kills it while the call is in flight
            // (SIGKILL): the call breaks, its agent calls again, and the router sends it to another replica.
            if (home == "replica-1" && Volatile.Read(ref completed) >= calls / 4 && Interlocked.Exchange(ref replicaKill, 1) == 0)
            {
                killing = Task.Run(async () =>
                {
                    await Task.Delay(15);
                    fleet.Replicas[1].Kill();
                    output.WriteLine($"replica-1 killed after {Volatile.Read(ref completed)} calls");
                    await Task.Delay(1000);
                    fleet.Replicas[1].Start();      // same port, empty cache: catches up from the stream
                    output.WriteLine("replica-1 restarted");
                });
            }
        });
        Assert.NotNull(killing);
        await killing;
        Assert.Equal(calls, run.Calls);
        output.WriteLine($"tokens per step {run.TokensPerStep:F4}, {run.Retries} calls sent again");

        // Let every publication and delivery settle. The stream keeps only about what a cache can hold (it is bounded
        // from the token bound), but its last sequence counts every response ever stored, once each.
        (long retained, long published) = (0, 0);
        List<ReplicaStatistics> stats = [];
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            (retained, published) = await fleet.StreamStateAsync();
            stats = await fleet.StatisticsAsync();
            if (stats.Where(s => s.Replica != "replica-1").All(s => s.Sharing!.Value.Connected && s.CachedResponses + s.EvictedResponses == published))
            {
                break;
            }
            await Task.Delay(250);
        }
        output.WriteLine($"stream: {published} responses stored, {retained} retained");
        foreach (ReplicaStatistics s in stats)
        {
            SharingStatistics sharing = s.Sharing!.Value;
            output.WriteLine($"{s.Replica}: calls {s.Calls}, cached {s.CachedResponses} responses / {s.CachedResponseTokens} tokens, evicted {s.EvictedResponses}, " +
                $"published {sharing.Published}, received {sharing.Received}, ingested {sharing.Ingested}, duplicates {sharing.Duplicates}, reader restarts {sharing.ReaderRestarts}");
            if (s.Replica == "replica-1")
            {
                // Restarted: it read the stream from the first message retained then, plus its own responses since.
                Assert.InRange(s.CachedResponses + s.EvictedResponses, retained, published);
                Assert.Equal(sharing.Ingested + s.Calls, s.CachedResponses + s.EvictedResponses);
            }
            else
            {
                // Every response ever published entered this replica's cache exactly once (kept, or since evicted).
                Assert.Equal(published, s.CachedResponses + s.EvictedResponses);
            }
            Assert.InRange(s.CachedResponseTokens, 1, bound);
            Assert.Equal(0, sharing.Malformed + sharing.Foreign + sharing.IngestDropped + sharing.PublishDropped);
        }
        Assert.True(published >= calls - Agents, $"the stream stored {published} responses for {calls} calls");
        Assert.Empty(await fleet.CheckIntegrityAsync());
    }
}

/// <summary>Fleet tests start many processes: they run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FleetCollection
{
    public const string Name = "fleet processes";
}
