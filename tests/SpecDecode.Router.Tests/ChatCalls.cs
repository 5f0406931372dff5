using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpecDecode.Replay;

namespace SpecDecode.Router.Tests;

/// <summary>
/// Trajectories of the trace as an agent sends them to the real server (<c>POST /v1/chat/completions</c>, greedy): call
/// k carries the conversation so far, the recorded messages before the trace's k-th answer, and the server's model
/// answers it. The embedded model has 2,048 positions and most tasks alone are longer, so every message is cut to a
/// prefix (the system prompt whole, the task to <see cref="TaskChars"/>, the rest to <see cref="MessageChars"/>): the
/// conversation still grows call by call, as an agent's does, and stays within the context.
/// </summary>
internal sealed class ChatCalls(IReadOnlyList<AgentTrajectory> trajectories, int callsPerTrajectory, int maxTokens) : IFleetCalls
{
    /// <summary>Characters kept of the task (the first user message).</summary>
    public const int TaskChars = 800;

    /// <summary>Characters kept of every later message.</summary>
    public const int MessageChars = 300;

    public int Trajectories => trajectories.Count;

    public int Calls(int trajectory) => Math.Min(callsPerTrajectory, trajectories[trajectory].Calls);

    public string Conversation(int trajectory) => trajectories[trajectory].TaskId;

    public HttpRequestMessage Request(string entry, int trajectory, int call)
    {
        IReadOnlyList<PromptMessage> messages = trajectories[trajectory].Prompt(call);
        var body = new JsonObject
        {
            ["model"] = "default",
            ["messages"] = new JsonArray([.. messages.Select((m, i) => (JsonNode)new JsonObject
            {
                ["role"] = m.Role,
                ["content"] = i == 0 ? m.Content : Cut(m.Content, i == 1 ? TaskChars : MessageChars),
            })]),
            ["temperature"] = 0,
            ["max_tokens"] = maxTokens,
        };
        return new HttpRequestMessage(HttpMethod.Post, entry + "/v1/chat/completions") { Content = JsonContent.Create(body) };
    }

    public async Task<CallMeasure> ReadAsync(HttpResponseMessage response, int trajectory, int call)
    {
        using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        JsonElement usage = json.RootElement.GetProperty("usage");
        JsonElement speculative = usage.GetProperty("speculative");
        long tokens = usage.GetProperty("completion_tokens").GetInt64();
        Assert.InRange(tokens, 1, maxTokens);
        return new CallMeasure(speculative.GetProperty("steps").GetInt64(), tokens,
            speculative.GetProperty("draft_tokens").GetInt64(), speculative.GetProperty("accepted_tokens").GetInt64(),
            json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    private static string Cut(string text, int chars) =>
        text.Length <= chars ? text : text[..(char.IsHighSurrogate(text[chars - 1]) ? chars - 1 : chars)];
}
