using System.CommandLine;
using Spectre.Console;

namespace SpecDecode.Generate;

/// <summary>The generator's command line (work in progress).</summary>
public static class GenerateCommand
{
    /// <summary>The root command, writing to <paramref name="console"/> and reading chat input from <paramref name="input"/>.</summary>
    public static RootCommand Create(IAnsiConsole console, TextReader input)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(input);
        return new RootCommand("Generate text with speculative decoding.");
    }
}
