using Xunit.Abstractions;

namespace SpecDecode.Router.Tests;

/// <summary>
/// The two fleet end-to-end scenarios, run with either kind of replica (<see cref="FleetEndToEndTests"/>: the model-free
/// stand-in; <see cref="ServerFleetEndToEndTests"/>: the real server on the embedded model).
/// </summary>
internal static class FleetScenarios
{
    /// <summary>The same calls through one replica seeing everything, four replicas sharing through the broker behind the
    /// router, and four isolated replicas behind the router. Checks that every call completed in each, that the router
    /// spread the conversations and that every sharing replica ingested others' answers; the caller judges the figures.</summary>
    public static async Task<(FleetRun Single, FleetRun Shared, FleetRun Isolated)> CompareAsync(ReplicaKind kind, IFleetCalls calls, int agents,
        ITestOutputHelper output)
    {
        FleetRun single, shared, isolated;
        await using (FleetHarness one = await FleetHarness.StartAsync(kind, replicas: 1, shared: false))
        {
            single = await one.ReplayAsync(calls, agents);
        }
        await using (FleetHarness fleet = await FleetHarness.StartAsync(kind, replicas: 4, shared: true))
        {
            shared = await fleet.ReplayAsync(calls, agents);
            List<ReplicaReport> reports = await fleet.ReportsAsync();
            Assert.True(reports.Count(r => r.Sharing!.Value.Published > 0) >= 3, "the router spread the conversations over at least three replicas");
            Assert.All(reports, r => Assert.True(r.Sharing!.Value.Ingested > 0, $"{r.Replica} ingested nothing"));
        }
        await using (FleetHarness fleet = await FleetHarness.StartAsync(kind, replicas: 4, shared: false))
        {
            isolated = await fleet.ReplayAsync(calls, agents);
        }
        output.WriteLine($"{kind}: tokens per step: one process {single.TokensPerStep:F4} ({single.Tokens} tokens, {single.Steps} steps), " +
            $"4 replicas shared {shared.TokensPerStep:F4} ({shared.Tokens}, {shared.Steps}), 4 replicas isolated {isolated.TokensPerStep:F4} ({isolated.Tokens}, {isolated.Steps})");
        if (single.Answers.Count > 0)
        {
            output.WriteLine($"answers differing from one process's: shared {shared.AnswersDifferingFrom(single)}, isolated {isolated.AnswersDifferingFrom(single)} of {single.Answers.Count}");
        }
        int total = Enumerable.Range(0, calls.Trajectories).Sum(calls.Calls);
        Assert.All(new[] { single, shared, isolated }, r => Assert.Equal(total, r.Calls));
        return (single, shared, isolated);
    }

    /// <summary>
    /// Four replicas sharing behind the router, each cache bounded to <paramref name="bound"/> tokens. Past a quarter of
    /// the calls, the first call sent to replica-1 kills it (SIGKILL) while the call is in flight; it restarts a second
    /// later with an empty cache. Past half, nats-server is killed and restarted on its data. Then: every call completed;
    /// every response the stream ever stored entered each surviving replica's cache exactly once (kept or evicted), and
    /// the restarted one's cache holds what it read from the stream plus its own; nothing malformed, foreign or dropped;
    /// every cache within its bound; CheckIntegrity passes on every replica.
    /// </summary>
    public static async Task FailuresAsync(ReplicaKind kind, IFleetCalls calls, int agents, long bound, ITestOutputHelper output)
    {
        int total = Enumerable.Range(0, calls.Trajectories).Sum(calls.Calls);
        await using FleetHarness fleet = await FleetHarness.StartAsync(kind, replicas: 4, shared: true, maxCachedTokens: bound);
        bool brokerDone = false;
        int completed = 0, replicaKill = 0;
        Task? killing = null;
        FleetRun run = await fleet.ReplayAsync(calls, agents, async done =>
        {
            Volatile.Write(ref completed, done);
            if (!brokerDone && done >= total / 2)
            {
                brokerDone = true;
                fleet.Nats!.Kill();
                await Task.Delay(1000);
                fleet.Nats.Start();                     // same data folder: the stream survives
                output.WriteLine($"nats-server killed and restarted after {done} calls");
            }
        }, home =>
        {
            // the call breaks, its agent calls again, and the router sends it to another replica
            if (home == "replica-1" && Volatile.Read(ref completed) >= total / 4 && Interlocked.Exchange(ref replicaKill, 1) == 0)
            {
                killing = Task.Run(async () =>
                {
                    await Task.Delay(15);
                    fleet.Replicas[1].Kill();
                    output.WriteLine($"replica-1 killed after {Volatile.Read(ref completed)} calls");
                    await Task.Delay(1000);
                    fleet.Replicas[1].Start(TimeSpan.FromSeconds(60));   // same port, empty cache: catches up from the stream
                    output.WriteLine("replica-1 restarted");
                });
            }
        });
        Assert.NotNull(killing);
        await killing;
        Assert.Equal(total, run.Calls);
        output.WriteLine($"{kind}: {run.Calls} calls, tokens per step {run.TokensPerStep:F4}, {run.Retries} calls sent again");

        // Let every publication and delivery settle. The stream keeps only about what a cache can hold (it is bounded
        // from the token bound), but its last sequence counts every response ever stored, once each.
        (long retained, long published) = (0, 0);
        List<ReplicaReport> reports = [];
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (DateTime.UtcNow < deadline)
        {
            (retained, published) = await fleet.StreamStateAsync();
            reports = await fleet.ReportsAsync();
            if (reports.All(r => r.Sharing!.Value.Connected)
                && reports.Where(r => r.Replica != "replica-1").All(r => r.Entered == published)
                && reports.Single(r => r.Replica == "replica-1") is var restarted && restarted.Entered == restarted.Sharing!.Value.Ingested + restarted.Sharing.Value.Published)
            {
                break;
            }
            await Task.Delay(250);
        }
        output.WriteLine($"stream: {published} responses stored, {retained} retained");
        foreach (ReplicaReport r in reports)
        {
            Fleet.SharingStatistics sharing = r.Sharing!.Value;
            output.WriteLine($"{r.Replica}: cached {r.Cache.CachedResponses} responses / {r.Cache.CachedResponseTokens} tokens, evicted {r.Cache.EvictedResponses}, " +
                $"published {sharing.Published}, received {sharing.Received}, ingested {sharing.Ingested}, duplicates {sharing.Duplicates}, reader restarts {sharing.ReaderRestarts}");
            if (r.Replica == "replica-1")
            {
                // restarted: it read the stream from the first message retained then, plus its own responses since
                Assert.InRange(r.Entered, retained, published);
                Assert.Equal(sharing.Ingested + sharing.Published, r.Entered);
            }
            else
            {
                // every response ever published entered this replica's cache exactly once (kept, or since evicted)
                Assert.Equal(published, r.Entered);
            }
            Assert.InRange(r.Cache.CachedResponseTokens, 1, bound);
            Assert.Equal(bound, r.MaxCachedTokens);
            Assert.Equal(0, sharing.Malformed + sharing.Foreign + sharing.IngestDropped + sharing.PublishDropped);
        }
        // the killed replica may lose what it had queued but not yet published (at most its in-flight calls)
        Assert.True(published >= total - agents, $"the stream stored {published} responses for {total} calls");
        Assert.Empty(await fleet.CheckIntegrityAsync());
    }
}
