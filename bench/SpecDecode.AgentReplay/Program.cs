using SpecDecode.AgentReplay;

return await AgentReplayCommand.RunAsync(args);
