namespace SpecDecode.Generate.Tests;

public sealed class GenerateCommandTests
{
    [Fact]
    public void CommandIsCreated() =>
        Assert.NotNull(GenerateCommand.Create(Spectre.Console.AnsiConsole.Console, TextReader.Null));
}
