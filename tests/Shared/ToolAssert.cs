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
}
