using Spectre.Console;

namespace SpecDecode.Replay.Tests;

/// <summary>A Spectre console without colours or interaction that writes into a string, for command tests.</summary>
internal static class PlainConsole
{
    public static IAnsiConsole Create(StringWriter writer, int width = 200)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = width;
        return console;
    }
}
