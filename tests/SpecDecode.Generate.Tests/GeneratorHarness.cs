using Spectre.Console;

namespace SpecDecode.Generate.Tests;

/// <summary>Runs the generator's command in-process on a non-interactive console over a StringWriter.</summary>
internal static class GeneratorHarness
{
    public static async Task<(int ExitCode, string Output)> RunWithInputAsync(string input, params string[] args)
    {
        var writer = new StringWriter();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 200;
        int code = await GenerateCommand.RunAsync(args, console, new StringReader(input), writer);
        return (code, writer.ToString());
    }

    public static Task<(int ExitCode, string Output)> RunAsync(params string[] args) => RunWithInputAsync(string.Empty, args);
}
