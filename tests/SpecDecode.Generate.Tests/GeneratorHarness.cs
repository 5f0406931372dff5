using Spectre.Console;

namespace SpecDecode.Generate.Tests;

/// <summary>What one in-process run of the generator gave: its exit code, its standard output and its error output.</summary>
internal sealed record GeneratorOutcome(int ExitCode, string Output, string Error)
{
    /// <summary>The exit code and both outputs together (for tests that look for a line wherever it went).</summary>
    public void Deconstruct(out int exitCode, out string all)
    {
        exitCode = ExitCode;
        all = Output + Error;
    }
}

/// <summary>Runs the generator's command in-process on a non-interactive console over a StringWriter, with its error
/// lines on a second writer.</summary>
internal static class GeneratorHarness
{
    public static async Task<GeneratorOutcome> RunWithInputAsync(string input, params string[] args)
    {
        var writer = new StringWriter();
        var error = new StringWriter();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 200;
        int code = await GenerateCommand.RunAsync(args, console, new StringReader(input), error);
        return new GeneratorOutcome(code, writer.ToString(), error.ToString());
    }

    public static Task<GeneratorOutcome> RunAsync(params string[] args) => RunWithInputAsync(string.Empty, args);
}
