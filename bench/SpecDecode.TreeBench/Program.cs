using SpecDecode.TreeBench;

return VerifyCostCommand.Build().Parse(args).Invoke();
