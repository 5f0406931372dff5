using System.CommandLine;
using SpecDecode.CommandLine;
using SpecDecode.TreeBench;

RootCommand root = VerifyCostCommand.Build();
root.Subcommands.Add(GraphProbeCommand.Build());
root.Subcommands.Add(DecodeGraphsCommand.Build());
root.Subcommands.Add(TreeKernelsCommand.Build());
return ToolRunner.Run(root, args);
