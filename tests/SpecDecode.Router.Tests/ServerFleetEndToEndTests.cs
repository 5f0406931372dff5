using SpecDecode.Replay;
using Xunit.Abstractions;

namespace SpecDecode.Router.Tests;

/// <summary>
/// The fleet end to end with the real OpenAI-compatible server (samples/SpecDecode.Server on the embedded model, CPU)
/// as the replicas, every part a process on loopback: nats-server, four servers sharing through it, the router, and
/// agents replaying the first trajectories of the SWE-bench trace as chat completions (<see cref="ChatCalls"/>: the
/// conversation so far, cut to fit the model's context; greedy; the model's own answers, 48 calls).
/// </summary>
/// <remarks>The comparison with one server and with isolated servers is meaningful here because the answers are the same
/// in every configuration (greedy decoding, and the engine's batches do not change a row's result; the test checks every
/// answer), so tokens per step differ only by what each server's suffix cache held when a call came. The size of the
/// effect is the embedded model's: its answers repeat across tasks ("THOUGHT: The issue is ...") far more than a large
/// model's, so isolated servers lose more here (about 10% at four) than the trace's recorded answers lose
/// (<see cref="FleetEndToEndTests"/>; 2.7% at four replicas in the simulation of all 499 trajectories).</remarks>
[Collection(FleetCollection.Name)]
public sealed class ServerFleetEndToEndTests(ITestOutputHelper output)
{
    private const int Trajectories = 12, CallsPerTrajectory = 4, Agents = 4, MaxTokens = 48;

    private static readonly Lazy<ChatCalls> Calls = new(() => new ChatCalls(
        AgentTrajectory.Read(RepoRoot.DefaultTraces(), skip: 0, take: Trajectories), CallsPerTrajectory, MaxTokens));

    [Fact]
    public Task A_server_replica_and_the_broker_die_and_come_back_and_every_call_completes() =>
        FleetScenarios.FailuresAsync(ReplicaKind.Server, Calls.Value, Agents, bound: 1_500, output);

    [Fact]
    public async Task Servers_sharing_answers_match_one_server_and_isolated_servers_fall_below()
    {
        (FleetRun single, FleetRun shared, FleetRun isolated) = await FleetScenarios.CompareAsync(ReplicaKind.Server, Calls.Value, Agents, output);
        Assert.Equal(Trajectories * CallsPerTrajectory, single.Answers.Count);
        Assert.Equal(0, shared.AnswersDifferingFrom(single));
        Assert.Equal(0, isolated.AnswersDifferingFrom(single));
        Assert.True(shared.TokensPerStep >= 0.97 * single.TokensPerStep,
            $"shared {shared.TokensPerStep:F4} is more than 3% below one server {single.TokensPerStep:F4}");
        Assert.True(isolated.TokensPerStep < 0.97 * shared.TokensPerStep,
            $"isolated {isolated.TokensPerStep:F4} is not 3% below shared {shared.TokensPerStep:F4}");
    }
}
