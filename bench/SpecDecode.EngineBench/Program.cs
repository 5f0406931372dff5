using System.CommandLine;
using SpecDecode.CommandLine;
using SpecDecode.EngineBench;

var root = new RootCommand("Speculative engine on SWE-bench traces: tokens per second against plain decoding, by batch size.")
{
    BenchCommand.Build(),
    PlotCommand.Build(),
    BatchPlotCommand.Build(),
    StepsCommand.Build(),
    AgentsCommand.Build(),
};
return ToolRunner.Run(root, args);
