using System.CommandLine;
using SpecDecode.CommandLine;
using Xunit;

namespace SpecDecode.Tests.Shared;

/// <summary>The tools' command-line convention as an assertion (README, "Command-line tools"): the error output is one
/// line that starts with <c>error: </c> and says <paramref name="message"/>, with no stack trace. Linked into the test
/// projects of the tools (one source file, compiled into each).</summary>
internal static class ToolAssert
{
    /// <summary>Asserts one error line holding <paramref name="message"/> and returns it.</summary>
    public static string OneErrorLine(string error, string message)
    {
        string line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries)).TrimEnd('\r');
        Assert.StartsWith("error: ", line);
        Assert.Contains(message, line);
        Assert.DoesNotContain("   at ", error);
        return line;
    }

    /// <summary>Runs <paramref name="command"/> by the tools' runner on <paramref name="args"/> and asserts that it was
    /// refused as bad usage (exit 2) with one error line holding <paramref name="message"/> and nothing on stdout.</summary>
    public static void Refused(Command command, IReadOnlyList<string> args, string message)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        int code = ToolRunner.Run(command, args, output, error);

        Assert.True(code == ToolExitCodes.Usage, $"exit {code}, not {ToolExitCodes.Usage}: {error}");
        OneErrorLine(error.ToString(), message);
        Assert.Equal("", output.ToString());
    }
}
