using Spectre.Console;
using SpecDecode.Generate;

return await GenerateCommand.RunAsync(args, AnsiConsole.Console, Console.In, Console.Error);
