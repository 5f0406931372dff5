using System.CommandLine;
using SpecDecode.CommandLine;
using SpecDecode.EngineBench;
using SpecDecode.Tests.Shared;
using SpecDecode.TreeBench;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The benchmark tools follow the command-line convention every SpecDecode tool follows (README, "Command-line tools"):
/// a bad value is refused while parsing with one line on stderr that names the option and what to give, exit 2, no
/// stack trace; a failure inside the run is one line too, 1 for a failed run, 2 for bad input.
/// </summary>
public sealed class ToolConventionTests
{
    [Theory]
    [InlineData("--repeat", "abc", "--repeat: 'abc' is not a whole number; give one of 1 or more")]
    [InlineData("--warmup", "-1", "--warmup: -1 is too small")]
    [InlineData("--dtype", "int8", "--dtype: 'int8' is not one of bfloat16, float16, float32")]
    [InlineData("--chunk", "1e3", "--chunk: '1e3' is not written as a whole number")]
    public void TreeBench_BadValues_NameTheOption(string option, string value, string message) =>
        AssertRefused(VerifyCostCommand.Build(), [option, value], message);

    [Theory]
    [InlineData("--budget", "abc", "--budget: 'abc' is not a whole number")]
    [InlineData("--max-context", "0", "--max-context: 0 is too small")]
    [InlineData("--dtype", "fp8", "--dtype: 'fp8' is not one of bfloat16, float16, float32")]
    public void EngineBench_BadValues_NameTheOption(string option, string value, string message) =>
        AssertRefused(BenchCommand.Build(), [option, value], message);

    /// <summary>The list options EngineBench parses itself (in the action, after System.CommandLine): a malformed value is
    /// bad usage with the option's name, as for the options the parser checks.</summary>
    [Theory]
    [InlineData("--calls", "1=x", "--calls: '1=x' is not a batch=calls pair of positive whole numbers")]
    [InlineData("--calls", "8", "--calls: '8' is not a batch=calls pair")]
    [InlineData("--temperatures", "3", "--temperatures: '3' is not a temperature from 0 (greedy) to 2")]
    [InlineData("--temperatures", "0,warm", "--temperatures: 'warm' is not a temperature")]
    [InlineData("--temperatures", ",", "--temperatures: no temperature given")]
    public void EngineBench_MalformedLists_AreBadUsage(string option, string value, string message)
    {
        Action parse = option == "--calls" ? () => BenchCommand.ParseCalls(value) : () => BenchCommand.ParseTemperatures(value);
        using var error = new StringWriter();
        var e = Assert.Throws<ToolUsageException>(parse);
        Assert.Equal(ToolExitCodes.Usage, ToolRunner.Report(e, error));
        Assert.Contains(message, error.ToString());
    }


    [Fact]
    public void EngineBench_Temperatures_AreParsedInvariantly() =>
        Assert.Equal([0f, 0.7f], BenchCommand.ParseTemperatures("0, 0.7"));

    [Fact]
    public void Runner_UnexpectedFailure_IsOneLineWithItsType_AndExit1()
    {
        var command = new RootCommand("fails");
        command.SetAction(new Func<ParseResult, int>(_ => throw new InvalidOperationException("first line\n  native frame #0\n  native frame #1")));
        using var error = new StringWriter();

        int code = ToolRunner.Run(command, [], TextWriter.Null, error);

        Assert.Equal(ToolExitCodes.Failed, code);
        string line = Assert.Single(error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal($"error: InvalidOperationException: first line (set {ToolRunner.DebugVariable}=1 to see where)", line.TrimEnd('\r'));
    }

    [Fact]
    public void Runner_BadInputExceptions_AreExit2_AndChecksExit1()
    {
        using var error = new StringWriter();
        Assert.Equal(ToolExitCodes.Usage, ToolRunner.Report(new FileNotFoundException("no such file: x.json"), error));
        Assert.Equal(ToolExitCodes.Usage, ToolRunner.Report(new ArgumentOutOfRangeException("MaxContext", 5, "MaxContext must be at least 16."), error));
        Assert.Equal(ToolExitCodes.Failed, ToolRunner.Report(new ToolCheckFailedException("outputs differ"), error));
        Assert.Equal(ToolRunner.Cancelled, ToolRunner.Report(new OperationCanceledException(), error));
        string[] lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.All(lines, l => Assert.StartsWith("error: ", l));
        Assert.DoesNotContain("Actual value", error.ToString());   // ArgumentOutOfRangeException's second line is cut
    }

    private static void AssertRefused(Command command, string[] args, string message) => ToolAssert.Refused(command, args, message);
}
