using SpecDecode.Router;

return await RouterCommand.RunAsync(args);
