using System.ClientModel;
using System.Text.Json;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;

namespace SpecDecode.Server.Tests;

/// <summary>
/// The server driven by the official OpenAI .NET library (2.15): plain and streamed chat, stop strings, seeds, usage with
/// the speculative extension, models, 16 concurrent clients against their solo runs, and the errors it must refuse with.
/// Every expected text is the in-process engine's own answer to the same messages (greedy), so the HTTP layer must add
/// and lose nothing.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAiClientTests(ServerFixture server)
{
    private static readonly ChatMessage[] Chat =
    [
        new SystemChatMessage("You are a helpful assistant that can interact with a computer shell."),
        new UserChatMessage("The test tests/test_parsing.py fails. Find out why."),
    ];

    private static readonly PromptMessage[] Prompt =
    [
        PromptMessage.System("You are a helpful assistant that can interact with a computer shell."),
        PromptMessage.User("The test tests/test_parsing.py fails. Find out why."),
    ];

    private ChatClient Client() => ServerFixture.Client(server.Open).GetChatClient(ServerFixture.Model);

    private Task<GenerationResult> InProcess(IReadOnlyList<PromptMessage> messages, int maxTokens, IReadOnlyList<string>? stops = null) =>
        server.Host.Engine.GenerateAsync(new GenerationRequest { Messages = messages, MaxNewTokens = maxTokens, StopStrings = stops ?? [] });

    [Fact]
    public async Task Chat_Greedy_EqualsTheEngine_WithUsageAndTheSpeculativeExtension()
    {
        GenerationResult expected = await InProcess(Prompt, 32);

        ClientResult<ChatCompletion> result = await Client().CompleteChatAsync(Chat,
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32 });
        ChatCompletion completion = result.Value;

        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(ServerFixture.Model, completion.Model);
        Assert.Equal(expected.Statistics.PromptTokens, completion.Usage.InputTokenCount);
        Assert.Equal(expected.Statistics.GeneratedTokens, completion.Usage.OutputTokenCount);
        Assert.Equal(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount, completion.Usage.TotalTokenCount);

        // the extension object, read from the raw response the client received
        using JsonDocument raw = JsonDocument.Parse(result.GetRawResponse().Content);
        JsonElement speculative = raw.RootElement.GetProperty("usage").GetProperty("speculative");
        long steps = speculative.GetProperty("steps").GetInt64();
        Assert.InRange(steps, 1, completion.Usage.OutputTokenCount);
        Assert.Equal((double)completion.Usage.OutputTokenCount / steps, speculative.GetProperty("tokens_per_step").GetDouble(), 3);
        Assert.True(speculative.GetProperty("accepted_tokens").GetInt64() <= speculative.GetProperty("draft_tokens").GetInt64());
        Assert.Equal(completion.Usage.OutputTokenCount, steps + speculative.GetProperty("accepted_tokens").GetInt64());
    }

    [Fact]
    public async Task Chat_Streamed_EqualsTheEngine_AndEndsWithFinishReasonAndUsage()
    {
        GenerationResult expected = await InProcess(Prompt, 32);
        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        ChatTokenUsage? usage = null;
        int updates = 0;

        await foreach (StreamingChatCompletionUpdate update in Client().CompleteChatStreamingAsync(Chat,
            new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32 }))
        {
            updates++;
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }
            finish ??= update.FinishReason;
            usage ??= update.Usage;
        }

        Assert.Equal(expected.Text, text.ToString());
        Assert.True(updates > 3, $"{updates} updates: the answer should arrive in pieces");
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage);   // the library asks for stream_options.include_usage
        Assert.Equal(expected.Statistics.GeneratedTokens, usage!.OutputTokenCount);
        Assert.Equal(expected.Statistics.PromptTokens, usage.InputTokenCount);
    }

    [Fact]
    public async Task StopStrings_CutTheTextBeforeTheStop_WithFinishReasonStop()
    {
        GenerationResult free = await InProcess(Prompt, 48);
        Assert.True(free.Text.Length > 12, $"the model's answer is too short for the test: '{free.Text}'");
        string stop = free.Text.Substring(free.Text.Length / 2, 3);
        GenerationResult expected = await InProcess(Prompt, 48, [stop]);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 48 };
        options.StopSequences.Add(stop);

        ChatCompletion completion = (await Client().CompleteChatAsync(Chat, options)).Value;

        Assert.Equal(expected.Text, completion.Content[0].Text);
        Assert.DoesNotContain(stop, completion.Content[0].Text);
        Assert.StartsWith(completion.Content[0].Text, free.Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
    }

    [Fact]
    public async Task Seed_RepeatsASampledAnswer_AndAnotherSeedDrawsAnother()
    {
        async Task<string> Sample(long seed)
        {
#pragma warning disable OPENAI001 // Seed is marked experimental in the library
            var options = new ChatCompletionOptions { Temperature = 1.0f, MaxOutputTokenCount = 32, Seed = seed };
#pragma warning restore OPENAI001
            return (await Client().CompleteChatAsync(Chat, options)).Value.Content[0].Text;
        }

        string first = await Sample(7);
        string again = await Sample(7);
        string[] others = [await Sample(8), await Sample(9), await Sample(10)];

        Assert.Equal(first, again);
        Assert.Contains(others, o => o != first);
    }

    [Fact]
    public async Task SixteenConcurrentClients_GetTheirSoloGreedyAnswers()
    {
        string[] tasks = Enumerable.Range(0, 16).Select(i => $"Task {i}: the function parse_line{i} in utils/io_{i % 5}.py returns None for empty lines. Fix it.").ToArray();
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };
        ChatClient client = Client();
        var solo = new List<string>();
        foreach (string task in tasks)
        {
            solo.Add((await client.CompleteChatAsync([new UserChatMessage(task)], options)).Value.Content[0].Text);
        }

        // 16 clients at once, each with its own connection pool
        string[] together = await Task.WhenAll(tasks.Select(async task =>
            (await ServerFixture.Client(server.Open).GetChatClient(ServerFixture.Model).CompleteChatAsync([new UserChatMessage(task)], options)).Value.Content[0].Text));

        Assert.Equal(solo, together);
        Assert.True(solo.Distinct().Count() > 1, "the tasks should not all get one answer");
    }

    [Fact]
    public async Task Models_ListTheServedModel()
    {
        OpenAIModelClient models = ServerFixture.Client(server.Open).GetOpenAIModelClient();

        OpenAIModelCollection list = (await models.GetModelsAsync()).Value;
        OpenAIModel one = (await models.GetModelAsync(ServerFixture.Model)).Value;

        Assert.Equal([ServerFixture.Model], list.Select(m => m.Id));
        Assert.Equal(ServerFixture.Model, one.Id);
        Assert.Equal("specdecode", one.OwnedBy);
    }

    [Fact]
    public async Task ConversationHeader_IsAccepted_AndMappedToTheConversation()
    {
        ChatClient client = ServerFixture.Client(server.Open, header: (OpenAiRequest.ConversationHeader, "task-17")).GetChatClient(ServerFixture.Model);
        GenerationResult expected = await InProcess(Prompt, 16);

        ChatCompletion completion = (await client.CompleteChatAsync(Chat, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 })).Value;

        Assert.Equal(expected.Text, completion.Content[0].Text);
        using JsonDocument body = JsonDocument.Parse("""{"messages": [{"role": "user", "content": "hi"}]}""");
        Assert.Equal("task-17", OpenAiRequest.Chat(body.RootElement, server.Host, "task-17").Generation.ConversationId);
        Assert.Null(OpenAiRequest.Chat(body.RootElement, server.Host, " ").Generation.ConversationId);
    }

    // ---------- what the server refuses ----------

    [Fact]
    public async Task UnknownModel_Is404_ModelNotFound()
    {
        ChatClient client = ServerFixture.Client(server.Open).GetChatClient("gpt-4o");

        var e = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync(Chat));

        Assert.Equal(404, e.Status);
        Assert.Contains("model_not_found", e.Message);
        Assert.Contains("this server serves 'default'", e.Message);
    }

    [Fact]
    public async Task MissingOrWrongApiKey_Is401_AndTheRightOneWorks()
    {
        foreach (string key in new[] { "sk-wrong", "unused" })
        {
            var e = await Assert.ThrowsAsync<ClientResultException>(() =>
                ServerFixture.Client(server.Keyed, key).GetChatClient(ServerFixture.Model).CompleteChatAsync(Chat));
            Assert.Equal(401, e.Status);
            Assert.Contains("invalid_api_key", e.Message);
        }
        ChatCompletion ok = (await ServerFixture.Client(server.Keyed, ServerFixture.ApiKey).GetChatClient(ServerFixture.Model)
            .CompleteChatAsync(Chat, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 4 })).Value;
        Assert.Equal(ChatFinishReason.Length, ok.FinishReason);
    }

    [Fact]
    public async Task PromptOverTheContext_Is400_ContextLengthExceeded()
    {
        string huge = string.Concat(Enumerable.Repeat("def parse(line): return line.split(',') ", 400));

        var e = await Assert.ThrowsAsync<ClientResultException>(() => Client().CompleteChatAsync([new UserChatMessage(huge)]));

        Assert.Equal(400, e.Status);
        Assert.Contains("context_length_exceeded", e.Message);
        Assert.Contains("1024", e.Message);
    }

    [Fact]
    public async Task ToolsAndImages_Are400_SayingWhatIsSupported()
    {
        var options = new ChatCompletionOptions();
        options.Tools.Add(ChatTool.CreateFunctionTool("run_bash", "Runs a command"));
        var tools = await Assert.ThrowsAsync<ClientResultException>(() => Client().CompleteChatAsync(Chat, options));
        Assert.Equal(400, tools.Status);
        Assert.Contains("'tools' is not supported", tools.Message);

        var image = new UserChatMessage(ChatMessageContentPart.CreateTextPart("what is this?"),
            ChatMessageContentPart.CreateImagePart(new Uri("http://127.0.0.1/x.png")));
        var images = await Assert.ThrowsAsync<ClientResultException>(() => Client().CompleteChatAsync([image]));
        Assert.Equal(400, images.Status);
        Assert.Contains("only text parts", images.Message);
    }
}
