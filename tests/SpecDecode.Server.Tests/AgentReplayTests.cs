using SpecDecode.AgentReplay;
using SpecDecode.Replay;

namespace SpecDecode.Server.Tests;

/// <summary>The agent-loop replay client (bench/SpecDecode.AgentReplay) on real SWE-bench trajectories: over HTTP and
/// in-process the same calls give the same tokens, a call past the context ends its trajectory as it ends an agent's
/// run, and the report states the overhead and speedup lines it is read for.</summary>
[Collection(ServerCollection.Name)]
public sealed class AgentReplayTests(ServerFixture server)
{
    private static string Traces() => ServerFixture.SharedFile("data", "swebench", "gemini3pro-minisweagent.jsonl.gz");

    [Fact]
    public async Task HttpAndInProcess_GiveTheSameTokens_AndContextEndsATrajectory()
    {
        IReadOnlyList<AgentTrajectory> trajectories = AgentTrajectory.Read(Traces(), skip: 0, take: 2);
        using var http = new HttpClient { BaseAddress = new Uri(server.Tight.GetLeftPart(UriPartial.Authority)) };

        var (overHttp, _) = await AgentLoop.RunAsync(trajectories, new HttpTransport(http), agents: 1, maxCalls: 3, ServerFixture.Model, maxTokens: 6, forced: false);
        var (inProcess, _) = await AgentLoop.RunAsync(trajectories, new InProcessTransport(server.TightHost), agents: 1, maxCalls: 3, ServerFixture.Model, maxTokens: 6, forced: false);

        Assert.Equal(overHttp.Select(r => (r.TaskId, r.Calls, r.Tokens)), inProcess.Select(r => (r.TaskId, r.Calls, r.Tokens)));
        Assert.All(overHttp, r => Assert.True(r.Calls >= 1, $"{r.TaskId}: no call fitted the context"));
        Assert.All(overHttp.Where(r => r.Calls < 3), r => Assert.Contains("context", r.StoppedBecause));
        Assert.All(overHttp, r => Assert.Equal(6L * r.Calls, r.Tokens));

        var report = new AgentReplayReport("today", ServerFixture.Model, "cpu", false, 2048, 0, 6,
        [
            new PhaseResult("http", 1, 2, overHttp.Sum(r => r.Calls), overHttp.Sum(r => r.Tokens), 2.0, 1.0, 2.0, 6, 0, overHttp),
            new PhaseResult("in-process", 1, 2, inProcess.Sum(r => r.Calls), inProcess.Sum(r => r.Tokens), 1.9, 0.95, 1.9, 6, 0, inProcess),
            new PhaseResult("http-plain", 1, 2, overHttp.Sum(r => r.Calls), overHttp.Sum(r => r.Tokens), 3.0, 1.5, 3.0, 4, 0, overHttp),
        ]);
        string markdown = AgentReplayCommand.Markdown(report);
        Assert.Contains("1 agent(s): HTTP overhead 5.0 % of end-to-end time", markdown);
        Assert.Contains("speculative over plain decoding through HTTP 1.50x", markdown);
    }

    [Fact]
    public void Rounds_AlternateThePhaseOrder_AndTheOverheadIsOverAllRounds()
    {
        Assert.Equal(
            [("http", 0), ("in-process", 0), ("in-process", 1), ("http", 1), ("http", 2), ("in-process", 2)],
            AgentReplayCommand.PhaseOrder(["http", "in-process"], 3).ToArray());

        // the first phase of the process is slow in either order: round 0 says 10 % HTTP overhead, round 1 says -10 %;
        // over both the HTTP layer costs 0.2 s of 20.1 s
        PhaseResult Phase(string phase, int round, double seconds) => new(phase, 1, 2, 8, 800, seconds, seconds / 2, seconds, 80, 0, [], round);
        var report = new AgentReplayReport("today", ServerFixture.Model, "cuda", true, 8192, 40, null,
            [Phase("http", 0, 11.0), Phase("in-process", 0, 9.9), Phase("in-process", 1, 10.0), Phase("http", 1, 9.1)]);
        string markdown = AgentReplayCommand.Markdown(report);
        Assert.Contains("1 agent(s): HTTP overhead 1.0 % of end-to-end time (20.10 s over HTTP, 19.90 s in-process, 2 rounds each; calls 16 and 16; by round 10.0 %, -9.9 %)", markdown);
        Assert.Contains("| 1 | 1 | http | 2 | 8 | 800 |", markdown);
    }
}
