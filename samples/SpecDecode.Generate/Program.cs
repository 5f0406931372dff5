using Spectre.Console;
using SpecDecode.Generate;

return await GenerateCommand.Create(AnsiConsole.Console, Console.In).Parse(args).InvokeAsync();
