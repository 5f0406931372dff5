using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpecDecode.Replay;
using SpecDecode.Server;

namespace SpecDecode.AgentReplay;

/// <summary>One trajectory's run: the calls made, the tokens generated, the end-to-end time the agent waited for the
/// model (the sum of its calls; the agent's own tool time is not replayed), and why it stopped early, if it did.</summary>
public sealed record TrajectoryRun(string TaskId, int Calls, long Tokens, double Seconds, string? StoppedBecause);

/// <summary>
/// Agents replaying trajectories: each agent takes the next trajectory and makes its calls one after another, each call
/// carrying the whole conversation so far (the recorded messages, so every run sends the same prompts); the agents run at
/// once, so the engine batches their calls as it would a fleet of agents.
/// </summary>
public static class AgentLoop
{
    /// <summary>The OpenAI request body of call <paramref name="call"/>: the conversation so far, greedy, at most
    /// <paramref name="maxTokens"/> tokens (null: the server's default), and in benchmark mode the recorded answer.</summary>
    public static JsonElement Body(AgentTrajectory trajectory, int call, string model, int? maxTokens, bool forced)
    {
        ArgumentNullException.ThrowIfNull(trajectory);
        var body = new JsonObject
        {
            ["model"] = model,
            ["messages"] = new JsonArray([.. trajectory.Prompt(call).Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content })]),
            ["temperature"] = 0,
        };
        if (maxTokens is int max)
        {
            body["max_tokens"] = max;
        }
        if (forced)
        {
            body[BenchmarkMode.Field] = new JsonObject { ["forced_response"] = trajectory.RecordedAnswer(call) };
        }
        return JsonSerializer.SerializeToElement(body);
    }

    /// <summary>Runs <paramref name="trajectories"/> with <paramref name="agents"/> agents through
    /// <paramref name="transport"/>; at most <paramref name="maxCalls"/> calls per trajectory.</summary>
    public static async Task<(IReadOnlyList<TrajectoryRun> Runs, double WallSeconds)> RunAsync(IReadOnlyList<AgentTrajectory> trajectories,
        IAgentTransport transport, int agents, int maxCalls, string model, int? maxTokens, bool forced)
    {
        ArgumentNullException.ThrowIfNull(trajectories);
        ArgumentNullException.ThrowIfNull(transport);
        // the request bodies are built before the clock starts: both transports get the same bytes
        JsonElement[][] bodies = trajectories.Select(t => Enumerable.Range(0, Math.Min(maxCalls, t.Calls))
            .Select(k => Body(t, k, model, maxTokens, forced)).ToArray()).ToArray();
        // one untimed call first: JIT, libtorch's first kernels and the connection pool are then warm in every phase
        if (bodies.Length > 0 && bodies[0].Length > 0)
        {
            await transport.CallAsync(Body(trajectories[0], 0, model, 1, forced: false), "warm-up", CancellationToken.None).ConfigureAwait(false);
        }
        var queue = new ConcurrentQueue<int>(Enumerable.Range(0, trajectories.Count));
        var runs = new TrajectoryRun[trajectories.Count];
        long start = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, agents).Select(_ => Task.Run(async () =>
        {
            while (queue.TryDequeue(out int i))
            {
                AgentTrajectory t = trajectories[i];
                int calls = 0;
                long tokens = 0;
                double seconds = 0;
                string? stopped = null;
                foreach (JsonElement body in bodies[i])
                {
                    CallOutcome outcome = await transport.CallAsync(body, t.TaskId, CancellationToken.None).ConfigureAwait(false);
                    if (outcome.Refusal is not null)
                    {
                        stopped = $"call {calls}: {outcome.Refusal}";
                        break;
                    }
                    calls++;
                    tokens += outcome.Tokens;
                    seconds += outcome.Seconds;
                }
                runs[i] = new TrajectoryRun(t.TaskId, calls, tokens, seconds, stopped);
            }
        }))).ConfigureAwait(false);
        return (runs, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }
}
