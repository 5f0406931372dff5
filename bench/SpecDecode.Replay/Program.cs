using SpecDecode.Replay;

return ReplayCommand.Run(args);
