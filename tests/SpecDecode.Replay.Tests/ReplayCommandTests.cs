using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tests.Shared;
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
    public void Missing_trace_file_is_bad_input_named_on_stderr()
    {
        var (code, output, error) = RunCommand("--traces", "/nonexistent/x.jsonl.gz", "--first", "1");
        Assert.Equal(ToolExitCodes.Usage, code);
        ToolAssert.OneErrorLine(error, "/nonexistent/x.jsonl.gz");
        Assert.DoesNotContain("error", output);
    }

    /// <summary>The tools' convention on the replay's command line: every bad value is refused while parsing with one
    /// line on stderr that names the option, exit 2, no stack trace.</summary>
    [Theory]
    [InlineData("--first", "abc", "--first: 'abc' is not a whole number; give one of 1 or more")]
    [InlineData("--first", "0", "--first: 0 is too small")]
    [InlineData("--depth", "1e3", "--depth: '1e3' is not written as a whole number")]
    [InlineData("--factor", "-1", "--factor: -1 is out of range; give a number of 0 or more")]
    [InlineData("--min-prob", "abc", "--min-prob: 'abc' is not a number; give one in [0, 1]")]
    [InlineData("--calibrated", "1", "--calibrated: 1 is out of range; give a number in [0, 1)")]
    [InlineData("--mode", "bush", "--mode: 'bush' is not one of path, tree")]
    [InlineData("--drafter", "eagle", "--drafter: 'eagle' is not one of")]
    [InlineData("--budget", "x", "--budget: 'x' is not a non-negative integer")]
    [InlineData("--max-cached-tokens", "lots", "--max-cached-tokens: 'lots' is not a whole number; give one of -1 or more")]
    [InlineData("--bogus", "1", "Unrecognized command or argument '--bogus'")]
    public void Bad_values_are_refused_naming_the_option(string option, string value, string message)
    {
        string[] first = option == "--first" ? [] : ["--first", "1"];
        var (code, output, error) = RunCommand(["--traces", TraceFixture.Path, .. first, option, value]);
        Assert.Equal(ToolExitCodes.Usage, code);
        ToolAssert.OneErrorLine(error, message);
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public void Malformed_trace_file_is_bad_input()
    {
        string path = Path.Combine(Path.GetTempPath(), "replay-bad-" + Guid.NewGuid().ToString("N") + ".jsonl");
        File.WriteAllText(path, "{not json\n");
        try
        {
            var (code, _, error) = RunCommand("--traces", path, "--drafter", DrafterFactory.PromptLookup);
            Assert.Equal(ToolExitCodes.Usage, code);
            ToolAssert.OneErrorLine(error, path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static (int Code, string Output, string Error) RunCommand(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = ReplayCommand.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
