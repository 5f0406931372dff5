using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using SpecDecode.Server;

namespace SpecDecode.AgentReplay;

/// <summary>One LLM call as the agent sees it: how long it took, how many tokens came back, and whether it was refused
/// (a prompt past the context ends the trajectory, as it ends an agent's run).</summary>
/// <param name="Seconds">From sending the request to holding the whole answer.</param>
/// <param name="Tokens">Generated tokens (the server's usage, or the engine's statistics).</param>
/// <param name="Refusal">Why the call was refused, or null.</param>
public sealed record CallOutcome(double Seconds, long Tokens, string? Refusal);

/// <summary>How a call reaches the engine: over HTTP or in-process. Both send the same OpenAI request body.</summary>
public interface IAgentTransport
{
    /// <summary>Sends one call: <paramref name="body"/> is the OpenAI chat request, <paramref name="conversation"/> the
    /// agent's conversation id.</summary>
    Task<CallOutcome> CallAsync(JsonElement body, string conversation, CancellationToken cancellationToken);
}

/// <summary>The agent's way: POST /v1/chat/completions with the conversation header, over one pooled HttpClient.</summary>
public sealed class HttpTransport(HttpClient http) : IAgentTransport
{
    /// <inheritdoc />
    public async Task<CallOutcome> CallAsync(JsonElement body, string conversation, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = new StringContent(body.GetRawText(), Encoding.UTF8, new MediaTypeHeaderValue("application/json")),
        };
        request.Headers.Add(OpenAiRequest.ConversationHeader, conversation);
        using HttpResponseMessage response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        string text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        using JsonDocument json = JsonDocument.Parse(text);
        if (!response.IsSuccessStatusCode)
        {
            return new CallOutcome(seconds, 0, json.RootElement.GetProperty("error").GetProperty("message").GetString());
        }
        return new CallOutcome(seconds, json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt64(), null);
    }
}

/// <summary>The same request mapped as the server maps it (<see cref="OpenAiRequest.Chat"/>) and handed to the engine
/// directly: what the server costs is the difference to <see cref="HttpTransport"/>.</summary>
public sealed class InProcessTransport(ModelHost host) : IAgentTransport
{
    /// <inheritdoc />
    public async Task<CallOutcome> CallAsync(JsonElement body, string conversation, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            OpenAiRequest request = OpenAiRequest.Chat(body, host, conversation);
            GenerationResult result = await host.GenerateAsync(request, cancellationToken).ConfigureAwait(false);
            return new CallOutcome(Stopwatch.GetElapsedTime(start).TotalSeconds, result.Statistics.GeneratedTokens, null);
        }
        catch (RequestRejectedException e)
        {
            return new CallOutcome(Stopwatch.GetElapsedTime(start).TotalSeconds, 0, e.Message);
        }
    }
}
