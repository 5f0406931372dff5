using System.Net.Http.Json;
using SpecDecode.Replay;
using SpecDecode.ReplayReplica;

namespace SpecDecode.Router.Tests;

/// <summary>The trace's calls as the model-free stand-in replays them: prompt and recorded response as token ids
/// (<c>POST /v1/replay</c>); the stand-in accepts drafts greedily against the recorded response.</summary>
internal sealed class RecordedCalls(IReadOnlyList<TraceTrajectory> trajectories) : IFleetCalls
{
    public int Trajectories => trajectories.Count;

    public int Calls(int trajectory) => trajectories[trajectory].Calls.Length;

    public string Conversation(int trajectory) => trajectories[trajectory].TaskId;

    public HttpRequestMessage Request(string entry, int trajectory, int call)
    {
        TraceTrajectory t = trajectories[trajectory];
        TraceCall c = t.Calls[call];
        var body = new ReplayCallRequest { Conversation = t.TaskId, Prompt = c.Prompt.ToArray(), Response = c.Response.ToArray(), Budget = 32 };
        return new HttpRequestMessage(HttpMethod.Post, entry + "/v1/replay") { Content = JsonContent.Create(body) };
    }

    public async Task<CallMeasure> ReadAsync(HttpResponseMessage response, int trajectory, int call)
    {
        ReplayCallResult r = (await response.Content.ReadFromJsonAsync<ReplayCallResult>())!;
        Assert.Equal(trajectories[trajectory].Calls[call].ResponseLength, r.Tokens);
        return new CallMeasure(r.Steps, r.Tokens, r.DraftedTokens, r.AcceptedTokens);
    }
}
