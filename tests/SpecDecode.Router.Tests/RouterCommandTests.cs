using SpecDecode.Tests.Shared;

namespace SpecDecode.Router.Tests;

/// <summary>The router's command line follows the tools' convention: a bad value or a missing replica is one line on
/// stderr that names the option and what to give, exit 2, before anything listens.</summary>
public sealed class RouterCommandTests
{
    [Theory]
    [InlineData(new[] { "--replica", "127.0.0.1:8001" }, "--replica: '127.0.0.1:8001' is not an absolute http(s) URL")]
    [InlineData(new[] { "--replica", "http://127.0.0.1:8001/", "--health-interval", "0" }, "--health-interval: 0 is out of range")]
    [InlineData(new[] { "--replica", "http://127.0.0.1:8001/", "--max-attempts", "x" }, "--max-attempts: 'x' is not a whole number")]
    [InlineData(new[] { "--replica", "http://127.0.0.1:8001/", "--first-messages", "0" }, "--first-messages: 0 is too small")]
    [InlineData(new string[0], "Name at least one replica: --replica http://")]
    public void Bad_settings_are_one_line_and_exit_2(string[] args, string message) =>
        ToolAssert.Refused(RouterCommand.Build(), args, message);
}
