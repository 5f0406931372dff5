using SpecDecode.Replay;

return ReplayCommand.Build().Parse(args).Invoke();
