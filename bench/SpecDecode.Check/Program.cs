using SpecDecode.Check;

return CheckCommand.Run(args);
