using System.CommandLine;
using SpecDecode.CommandLine;
using SpecDecode.TreeBench;

RootCommand root = VerifyCostCommand.Build();
root.Subcommands.Add(GraphProbeCommand.Build());
root.Subcommands.Add(DecodeGraphsCommand.Build());
root.Subcommands.Add(TreeKernelsCommand.Build());
root.Subcommands.Add(BatchKernelsCommand.Build());
root.Subcommands.Add(TensorParallelCommand.Build());
root.Subcommands.Add(PrefillAttentionCommand.Build());
root.Subcommands.Add(DraftForwardCommand.Build());
return ToolRunner.Run(root, args);
