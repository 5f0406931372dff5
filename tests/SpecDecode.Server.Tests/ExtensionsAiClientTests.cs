using Microsoft.Extensions.AI;

namespace SpecDecode.Server.Tests;

/// <summary>The server driven by Microsoft.Extensions.AI's OpenAI <see cref="IChatClient"/> (Microsoft.Extensions.AI.OpenAI
/// over the official OpenAI library): the answers equal the in-process engine's, whole and streamed.</summary>
[Collection(ServerCollection.Name)]
public sealed class ExtensionsAiClientTests(ServerFixture server)
{
    private static readonly ChatMessage[] Chat =
    [
        new(ChatRole.System, "You are a helpful assistant that can interact with a computer shell."),
        new(ChatRole.User, "Run the failing test in tests/test_parsing.py"),
    ];

    private static readonly PromptMessage[] Prompt =
    [
        PromptMessage.System("You are a helpful assistant that can interact with a computer shell."),
        PromptMessage.User("Run the failing test in tests/test_parsing.py"),
    ];

    private IChatClient Client() => ServerFixture.Client(server.Open).GetChatClient(ServerFixture.Model).AsIChatClient();

    [Fact]
    public async Task Response_AndStreamedUpdates_EqualTheEngine()
    {
        GenerationResult expected = await server.Host.Engine.GenerateAsync(new GenerationRequest { Messages = Prompt, MaxNewTokens = 24 });
        using IChatClient client = Client();
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };

        ChatResponse response = await client.GetResponseAsync(Chat, options);
        List<ChatResponseUpdate> updates = [];
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Chat, options))
        {
            updates.Add(update);
        }
        ChatResponse combined = updates.ToChatResponse();

        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(expected.Statistics.GeneratedTokens, response.Usage?.OutputTokenCount);
        Assert.Equal(expected.Statistics.PromptTokens, response.Usage?.InputTokenCount);
        Assert.Equal(expected.Text, combined.Text);
        Assert.Equal(ChatFinishReason.Length, combined.FinishReason);
        Assert.Equal(expected.Statistics.GeneratedTokens, combined.Usage?.OutputTokenCount);
    }

    [Fact]
    public async Task StopSequences_AndSeed_Map()
    {
        using IChatClient client = Client();
        string free = (await client.GetResponseAsync(Chat, new ChatOptions { Temperature = 0, MaxOutputTokens = 40 })).Text;
        Assert.True(free.Length > 12, $"the model's answer is too short for the test: '{free}'");
        string stop = free.Substring(free.Length / 2, 3);

        ChatResponse stopped = await client.GetResponseAsync(Chat, new ChatOptions { Temperature = 0, MaxOutputTokens = 40, StopSequences = [stop] });
        ChatResponse seeded = await client.GetResponseAsync(Chat, new ChatOptions { Temperature = 1, MaxOutputTokens = 24, Seed = 11 });
        ChatResponse again = await client.GetResponseAsync(Chat, new ChatOptions { Temperature = 1, MaxOutputTokens = 24, Seed = 11 });

        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
        Assert.StartsWith(stopped.Text, free);
        Assert.DoesNotContain(stop, stopped.Text);
        Assert.Equal(seeded.Text, again.Text);
    }
}
