using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using OpenAI.Chat;

namespace SpecDecode.Server.Tests;

/// <summary>
/// What the clients' libraries do not cover: a client that disconnects (its slot must be freed at once: the engine's
/// statistics show no active request, and the one-slot server takes the next request), a full server (503), the
/// completions route (the official .NET library offers no public API for it, so a plain HttpClient sends it),
/// malformed bodies, health and the Prometheus scrape.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class HttpBehaviourTests(ServerFixture server)
{
    private static readonly ChatMessage[] Chat = [new UserChatMessage("Explain what the command ls -la prints, in detail.")];

    [Fact]
    public async Task Disconnect_CancelsTheRequest_FreesTheSlot_AndAFullServerSays503()
    {
        ChatClient client = ServerFixture.Client(server.Tight).GetChatClient(ServerFixture.Model);
        using var disconnect = new CancellationTokenSource();
        // a long answer on the one-slot server, read until its first piece arrives
        IAsyncEnumerator<StreamingChatCompletionUpdate> stream = client.CompleteChatStreamingAsync(Chat,
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 1900 }, disconnect.Token).GetAsyncEnumerator(disconnect.Token);
        Assert.True(await stream.MoveNextAsync());
        Assert.Equal(1, server.TightHost.Engine.Statistics.Active);

        // the slot is taken and there is no waiting room: the next request is refused at once
        var full = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync(Chat));
        Assert.Equal(503, full.Status);
        Assert.Contains("server_overloaded", full.Message);

        // the client goes away: its request is cancelled in the engine and the slot is free again
        await disconnect.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => { while (await stream.MoveNextAsync()) { } });
        await stream.DisposeAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (server.TightHost.Engine.Statistics.Active != 0 && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(20);
        }
        Assert.Equal(0, server.TightHost.Engine.Statistics.Active);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the slot was freed {clock.Elapsed.TotalSeconds:F1} s after the disconnect");
        OpenAI.Chat.ChatCompletion next = (await client.CompleteChatAsync(Chat, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 4 })).Value;
        Assert.Equal(ChatFinishReason.Length, next.FinishReason);
    }

    [Fact]
    public async Task Completions_WholeAndStreamed_EqualTheEngine()
    {
        const string prompt = "<|im_start|>user\nShow me the failing test<|im_end|>\n<|im_start|>assistant\n";
        GenerationResult expected = await server.Host.Engine.GenerateAsync(new GenerationRequest { Prompt = prompt, MaxNewTokens = 20 });
        using var http = new HttpClient { BaseAddress = server.Open };

        using HttpResponseMessage whole = await http.PostAsJsonAsync("v1/completions", new { model = "default", prompt, max_tokens = 20, temperature = 0 });
        using JsonDocument body = JsonDocument.Parse(await whole.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, whole.StatusCode);
        Assert.Equal("text_completion", body.RootElement.GetProperty("object").GetString());
        JsonElement choice = body.RootElement.GetProperty("choices")[0];
        Assert.Equal(expected.Text, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(expected.Statistics.GeneratedTokens, body.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt64());

        using HttpResponseMessage streamed = await http.PostAsJsonAsync("v1/completions", new { model = "default", prompt, max_tokens = 20, temperature = 0, stream = true });
        Assert.Equal("text/event-stream", streamed.Content.Headers.ContentType?.MediaType);
        string[] events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var text = new StringBuilder();
        foreach (string e in events[..^1])
        {
            using JsonDocument chunk = JsonDocument.Parse(e["data: ".Length..]);
            text.Append(chunk.RootElement.GetProperty("choices")[0].GetProperty("text").GetString());
        }
        Assert.Equal(expected.Text, text.ToString());
    }

    [Theory]
    [InlineData("v1/chat/completions", "{not json", 400, "not valid JSON")]
    [InlineData("v1/chat/completions", "[1, 2]", 400, "must be a JSON object")]
    [InlineData("v1/chat/completions", """{"messages": []}""", 400, "'messages' must be a non-empty array")]
    [InlineData("v1/chat/completions", """{"messages": [{"role": "tool", "content": "x"}]}""", 400, "tool calls and tool results are not supported")]
    [InlineData("v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "n": 2}""", 400, "'n' must be 1")]
    [InlineData("v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "temperature": 3}""", 400, "'temperature' must lie in [0, 2]")]
    [InlineData("v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}""", 400, "'max_tokens' must be an integer of at least 1")]
    [InlineData("v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "specdecode_benchmark": {"forced_response": "x"}}""", 400, "honoured only by a server started in benchmark mode")]
    [InlineData("v1/completions", """{"prompt": ["a", "b"]}""", 400, "one prompt per request")]
    [InlineData("v1/completions", """{"prompt": "x", "echo": true}""", 400, "'echo' is not supported")]
    [InlineData("v1/embeddings", """{"input": "x"}""", 404, "No route POST /v1/embeddings")]
    public async Task BadRequests_GetOpenAiStyleErrors(string route, string json, int status, string message)
    {
        using var http = new HttpClient { BaseAddress = server.Open };

        using HttpResponseMessage response = await http.PostAsync(route, new StringContent(json, Encoding.UTF8, "application/json"));
        using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(status, (int)response.StatusCode);
        JsonElement error = body.RootElement.GetProperty("error");
        Assert.Contains(message, error.GetProperty("message").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Health_AndTheMetricsScrape_UseVllmNames()
    {
        using var http = new HttpClient { BaseAddress = server.Open };
        ChatClient client = ServerFixture.Client(server.Open).GetChatClient(ServerFixture.Model);
        await client.CompleteChatAsync(Chat, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 });

        using JsonDocument health = JsonDocument.Parse(await http.GetStringAsync("health"));
        string metrics = await http.GetStringAsync("metrics");

        Assert.Equal("ok", health.RootElement.GetProperty("status").GetString());
        foreach (string name in new[]
        {
            "specdecode_spec_decode_num_drafts_total", "specdecode_spec_decode_num_draft_tokens_total", "specdecode_spec_decode_num_accepted_tokens_total",
            "specdecode_generation_tokens_total", "specdecode_prompt_tokens_total", "specdecode_num_requests_running", "specdecode_num_requests_waiting",
            "specdecode_e2e_request_latency_seconds_bucket", "specdecode_requests_total",
        })
        {
            Assert.Contains("\n" + name, metrics);
        }
        long generated = long.Parse(metrics.Split('\n').First(l => l.StartsWith("specdecode_generation_tokens_total", StringComparison.Ordinal)).Split(' ')[^1],
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(generated >= 8, $"generation_tokens_total is {generated} after an 8-token answer");
    }
}
