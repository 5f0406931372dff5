using System.Text.Json;
using Spectre.Console;

namespace SpecDecode.Replay.Tests;

public sealed class ReplayCommandTests
{
    [Theory]
    [InlineData(new string[0], new[] { 32 })]
    [InlineData(new[] { "8" }, new[] { 8 })]
    [InlineData(new[] { "4,8, 16", "32" }, new[] { 4, 8, 16, 32 })]
    [InlineData(new[] { "8,8" }, new[] { 8 })]
    public void Budgets_come_repeated_or_as_comma_lists(string[] values, int[] expected) =>
        Assert.Equal(expected, ReplayCommand.ParseBudgets(values));

    [Theory]
    [InlineData("-1")]
    [InlineData("x")]
    [InlineData("1.5")]
    public void Bad_budget_is_a_format_error(string value) =>
        Assert.Throws<FormatException>(() => ReplayCommand.ParseBudgets([value]));

    [Fact]
    public void Bad_arguments_are_rejected_before_running()
    {
        Assert.NotNull(new ReplayRun { Selection = new TraceSelection { First = 0 } }.Validate());
        Assert.NotNull(new ReplayRun { DrafterSettings = new DrafterSettings { NgramMin = 3, NgramMax = 2 } }.Validate());
        Assert.NotNull(new ReplayRun { DrafterSettings = new DrafterSettings { MinProbability = 2 } }.Validate());
        Assert.NotNull(new ReplayRun { Drafters = ["eagle"] }.Validate());
        Assert.Null(new ReplayRun().Validate());
    }

    [Fact]
    public void Command_writes_table_json_and_plot()
    {
        string folder = Directory.CreateTempSubdirectory("replay-cli-").FullName;
        try
        {
            var writer = new StringWriter();
            IAnsiConsole console = PlainConsole.Create(writer, 200);
            var run = new ReplayRun
            {
                Traces = TraceFixture.Path,
                Drafters = [DrafterFactory.PromptLookup],
                Selection = new TraceSelection { First = 1 },
                Budgets = [4, 16],
                OutputPath = Path.Combine(folder, "r.json"),
                PlotPath = Path.Combine(folder, "r.png"),
            };

            int code = ReplayCommand.Execute(run, console);

            string output = writer.ToString();
            Assert.True(code == 0, output);
            Assert.Contains("mean accepted tokens/step", output);
            Assert.Contains("prompt-lookup b=16", output);
            using JsonDocument json = JsonDocument.Parse(File.ReadAllText(run.OutputPath));
            JsonElement results = json.RootElement.GetProperty("results");
            Assert.Equal(2, results.GetArrayLength());
            Assert.True(json.RootElement.GetProperty("complete").GetBoolean());
            foreach (string field in new[] { "mean_accepted_tokens_per_step", "acceptance_rate", "drafted_tokens_per_step",
                         "accepted_per_position", "drafting_time_per_step_us", "cache_update_time_per_token_us", "request_start_ms",
                         "wall_seconds", "drafter_memory_bytes", "process_peak_memory_bytes" })
            {
                Assert.True(results[0].TryGetProperty(field, out _), field);
            }
            byte[] png = File.ReadAllBytes(run.PlotPath);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Missing_trace_file_exits_with_an_error_naming_it()
    {
        var writer = new StringWriter();
        IAnsiConsole console = PlainConsole.Create(writer, 400);
        int code = ReplayCommand.Execute(new ReplayRun { Traces = "/nonexistent/x.jsonl.gz" }, console);
        Assert.Equal(1, code);
        Assert.Contains("/nonexistent/x.jsonl.gz", writer.ToString());
        Assert.Contains("MissingFile", writer.ToString());
    }
}
