using SpecDecode.Replay;
using Xunit.Abstractions;

namespace SpecDecode.Router.Tests;

/// <summary>
/// The fleet end to end with the model-free stand-in replicas (tests/SpecDecode.ReplayReplica), every part a process on
/// loopback: four replicas behind the router, sharing through nats-server, replaying the first 16 trajectories of the
/// SWE-bench trace (their recorded calls, whole) with four agents at once. The stand-in accepts drafts against the
/// recorded answers, so the three configurations answer identically and their tokens per step differ only by what each
/// replica's cache knew. The answers are a real model's (the trace's), which is why this comparison is kept beside the
/// real server's (<see cref="ServerFleetEndToEndTests"/>), whose small model repeats itself across tasks.
/// </summary>
[Collection(FleetCollection.Name)]
public sealed class FleetEndToEndTests(ITestOutputHelper output)
{
    private const int Trajectories = 16, Agents = 4;

    private static readonly Lazy<RecordedCalls> Calls = new(() => new RecordedCalls(
        TraceReader.Open(RepoRoot.DefaultTraces(), ProtocolTokenizer.CreateO200kBase(), new TraceSelection { First = Trajectories }).Read().ToList()));

    [Fact]
    public async Task Sharing_through_the_broker_matches_one_process_and_isolated_replicas_fall_below()
    {
        (FleetRun single, FleetRun shared, FleetRun isolated) = await FleetScenarios.CompareAsync(ReplicaKind.StandIn, Calls.Value, Agents, output);
        Assert.True(shared.TokensPerStep >= 0.97 * single.TokensPerStep,
            $"shared {shared.TokensPerStep:F4} is more than 3% below one process {single.TokensPerStep:F4}");
        Assert.True(isolated.TokensPerStep < 0.99 * shared.TokensPerStep,
            $"isolated {isolated.TokensPerStep:F4} is not measurably below shared {shared.TokensPerStep:F4}");
    }

    [Fact]
    public Task A_replica_and_the_broker_die_and_come_back_and_every_call_completes() =>
        FleetScenarios.FailuresAsync(ReplicaKind.StandIn, Calls.Value, Agents, bound: 60_000, output);
}

/// <summary>Fleet tests start many processes: they run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FleetCollection
{
    public const string Name = "fleet processes";
}
