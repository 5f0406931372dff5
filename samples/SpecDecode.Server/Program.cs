using SpecDecode.Server;

return await ServerCommand.RunAsync(args);
