using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using SpecDecode.CommandLine;

namespace SpecDecode.Server.Tests;

/// <summary>The benchmark mode behind <c>--benchmark-random-weights</c> (random weights of a config's shape, recorded answers
/// forcing acceptance), and the server's command line by the tools' convention.</summary>
public sealed class BenchmarkModeTests
{
    private static string TinyConfig() => ServerFixture.SharedFile("fixtures", "hf-tiny", "llama-gqa", "config.json");

    [Fact]
    public async Task ForcedAnswers_AreReplayed_AndTheSuffixDrafterLearnsThemAcrossCalls()
    {
        var settings = new ServerSettings { BenchmarkRandomWeights = TinyConfig(), MaxBatch = 2, MaxContext = 512, Adaptive = false, Urls = ["http://127.0.0.1:0"] };
        using ModelHost host = ModelHost.Load(settings);
        await using WebApplication app = ServerApp.Build(settings, host);
        await app.StartAsync();
        string address = app.BoundAddress();
        using var http = new HttpClient { BaseAddress = new Uri(address) };
        const string answer = "THOUGHT: run the tests.\n\n```bash\npython -m pytest tests/test_parsing.py -x\n```";
        object Request() => new
        {
            model = host.ServedModelName,
            messages = new[] { new { role = "system", content = "You are an agent." }, new { role = "user", content = "Fix the parser." } },
            specdecode_benchmark = new { forced_response = answer },
        };
        int forcedLength = host.Benchmark!.EncodeResponse(answer).Length;

        JsonElement first = await PostAsync(http, Request());
        JsonElement second = await PostAsync(http, Request());   // the suffix drafter saw the first answer

        Assert.StartsWith("benchmark-", host.ServedModelName);
        Assert.Equal(forcedLength, first.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(forcedLength, second.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        double firstRate = first.GetProperty("usage").GetProperty("speculative").GetProperty("tokens_per_step").GetDouble();
        double secondRate = second.GetProperty("usage").GetProperty("speculative").GetProperty("tokens_per_step").GetDouble();
        Assert.True(secondRate > 2 * firstRate, $"tokens per step {firstRate} then {secondRate}: the repeated answer should be drafted whole");
    }

    private static async Task<JsonElement> PostAsync(HttpClient http, object request)
    {
        using HttpResponseMessage response = await http.PostAsJsonAsync("v1/chat/completions", request);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Theory]
    [InlineData(new[] { "--max-batch", "abc" }, "--max-batch: 'abc' is not a whole number")]
    [InlineData(new[] { "--max-context", "4096" }, "--max-context 4096 is past the model's context of 2048 tokens")]
    [InlineData(new[] { "--benchmark-random-weights", "/nonexistent/config.json" }, "--benchmark-random-weights: /nonexistent/config.json does not exist")]
    [InlineData(new[] { "--draft", "eagle" }, "--draft: 'eagle' is not one of suffix, prompt-lookup, none")]
    public void CommandLineMistakes_AreOneLine_Exit2(string[] args, string message)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        int code = ToolRunner.Run(ServerCommand.Build(), args, output, error);

        Assert.Equal(ToolExitCodes.Usage, code);
        SpecDecode.Tests.Shared.ToolAssert.OneErrorLine(error.ToString(), message);
    }
}
