using System.CommandLine;
using System.Globalization;
using SpecDecode.CommandLine;
using Spectre.Console;

namespace SpecDecode.Replay;

/// <summary>The command line of the replay benchmark (System.CommandLine) and what it runs.</summary>
public static class ReplayCommand
{
    /// <summary>Runs the command line by the tools' convention (<see cref="ToolRunner"/>): errors as one line on stderr,
    /// exit 2 for bad usage or input (a bad option, a missing or malformed trace file), 1 when a drafter fails.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="output">Where help goes (null: the console); the table goes to the console.</param>
    /// <param name="error">Where error lines go (null: stderr).</param>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null) =>
        ToolRunner.Run(Build(), args, output, error, Classify);

    /// <summary>The replay's own failures: a trace file that is missing or malformed is bad input (2), a drafter that
    /// fails or breaks its contract a failed run (1).</summary>
    public static int? Classify(Exception e) => e switch
    {
        TraceFormatException => ToolExitCodes.Usage,
        ReplayException => ToolExitCodes.Failed,
        _ => null,
    };

    /// <summary>Builds the root command.</summary>
    public static RootCommand Build()
    {
        var traces = new Option<string?>("--traces") { Description = "Trace file (.jsonl.gz). Default: ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz from the repository root." };
        var drafters = ToolOptions.Choices("--drafter", $"Drafter to replay; repeat for several ({string.Join(", ", DrafterFactory.Names)}). Default: all.", [.. DrafterFactory.Names]);
        var first = ToolOptions.OptionalInt("--first", "Replay only the first N trajectories of the file.", 1);
        var tasks = new Option<string[]>("--task") { Description = "Replay only this task id; repeat for several." };
        var budgets = new Option<string[]>("--budget") { Description = "Draft-token budget per step; repeat or give a comma list (e.g. 4,8,16,32) for a sweep. Default: 32." };
        var depth = ToolOptions.Int("--depth", "Suffix drafter: deepest match and draft.", 64, 1);
        var factor = ToolOptions.Float("--factor", "Suffix drafter: draft tokens per matched token.", 1f, NumberRange.AtLeast(0));
        var offset = ToolOptions.Float("--offset", "Suffix drafter: draft tokens added to the match allowance.", 0f, new NumberRange(double.NegativeInfinity, double.PositiveInfinity));
        var minProb = ToolOptions.Float("--min-prob", "Suffix drafter: lowest path probability of a draft node.", 0.1f, new NumberRange(0, 1));
        var mode = ToolOptions.Choice("--mode", "Suffix drafter: path or tree drafts.", "path", ["path", "tree"]);
        var calibrated = ToolOptions.Float("--calibrated", "Suffix drafter: calibrated drafting, keeping tokens whose learned acceptance estimate is at least this (0: SuffixDecoding's count-based drafts).", 0f, new NumberRange(0, 1, MaxExclusive: true));
        var merge = new Option<bool>("--merge") { Description = "Suffix drafter with --calibrated: merge the candidates of every match length and of both trees into one tree." };
        var maxResponses = ToolOptions.Int("--max-cached-responses", "Suffix drafter: responses kept in the global cache (-1: unbounded).", -1, -1);
        var maxTokens = ToolOptions.Long("--max-cached-tokens", "Suffix drafter: tokens kept in the global cache (-1: unbounded).", -1, -1);
        var ngramMin = ToolOptions.Int("--ngram-min", "Prompt lookup: shortest n-gram.", 1, 1);
        var ngramMax = ToolOptions.Int("--ngram-max", "Prompt lookup: longest n-gram.", 4, 1);
        var output = new Option<string?>("--out") { Description = "JSON results file. Default: bench/out/replay.json under the repository root." };
        var plot = new Option<string?>("--plot") { Description = "PNG plot file. Default: bench/out/replay.png under the repository root." };
        var skipBad = new Option<bool>("--skip-bad") { Description = "Skip bad trace lines and report how many, instead of failing." };

        var root = new RootCommand("Replays SWE-bench agent traces through model-free drafters and reports tokens per verification step.")
        {
            traces, drafters, first, tasks, budgets, depth, factor, offset, minProb, mode, calibrated, merge, maxResponses, maxTokens, ngramMin, ngramMax,
            output, plot, skipBad, FleetCommand.Build(),
        };
        root.SetAction(parse =>
        {
            int[] budgetList = ParseBudgets(parse.GetValue(budgets));
            var settings = new DrafterSettings
            {
                Depth = parse.GetValue(depth),
                Factor = parse.GetValue(factor),
                Offset = parse.GetValue(offset),
                MinProbability = parse.GetValue(minProb),
                Mode = parse.GetValue(mode) == "tree" ? DraftMode.Tree : DraftMode.Path,
                CalibratedThreshold = parse.GetValue(calibrated),
                MergeCandidates = parse.GetValue(merge),
                MaxCachedResponses = parse.GetValue(maxResponses),
                MaxCachedTokens = parse.GetValue(maxTokens),
                NgramMin = parse.GetValue(ngramMin),
                NgramMax = parse.GetValue(ngramMax),
            };
            var run = new ReplayRun
            {
                Traces = parse.GetValue(traces),
                Drafters = parse.GetValue(drafters) is { Length: > 0 } d ? d.Distinct().ToArray() : [.. DrafterFactory.Names],
                Selection = new TraceSelection
                {
                    First = parse.GetValue(first),
                    TaskIds = parse.GetValue(tasks) is { Length: > 0 } t ? new HashSet<string>(t, StringComparer.Ordinal) : null,
                },
                Budgets = budgetList,
                DrafterSettings = settings,
                OutputPath = parse.GetValue(output),
                PlotPath = parse.GetValue(plot),
                SkipBad = parse.GetValue(skipBad),
            };
            if (Console.IsOutputRedirected)
            {
                // Logs and files are not limited to 80 columns: keep the table on one line per row.
                AnsiConsole.Profile.Width = 200;
            }
            return Execute(run, AnsiConsole.Console);
        });
        return root;
    }

    /// <summary>Parses repeated and comma-separated budgets; default 32.</summary>
    /// <exception cref="FormatException">A budget is not a non-negative integer.</exception>
    public static int[] ParseBudgets(IEnumerable<string>? values)
    {
        var budgets = new List<int>();
        foreach (string value in values ?? [])
        {
            foreach (string part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b))
                {
                    throw new FormatException($"--budget: '{part}' is not a non-negative integer.");
                }
                budgets.Add(b);
            }
        }
        return budgets.Count == 0 ? [32] : [.. budgets.Distinct()];
    }

    /// <summary>Runs the replays, prints the table and writes the JSON and the plot.</summary>
    /// <returns>0 (failures are thrown).</returns>
    /// <exception cref="ToolUsageException">A setting is out of range.</exception>
    /// <exception cref="TraceFormatException">The trace file is missing or malformed.</exception>
    /// <exception cref="ReplayException">A drafter failed.</exception>
    public static int Execute(ReplayRun run, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(run);
        ArgumentNullException.ThrowIfNull(console);
        if (run.Validate() is string error)
        {
            throw new ToolUsageException(error);
        }
        ReplayReport report = ReplayRunner.Run(run, console);
        console.Write(ResultTable.Build(report.Results));
        if (!report.Complete)
        {
            console.MarkupLine(
                $"[yellow]warning:[/] {report.SkippedLines.Count} bad line(s) skipped (--skip-bad): the figures cover {report.Trajectories} trajectories, not every selected line. See skipped_lines in the JSON.");
        }
        string root = report.Results.Count > 0 ? RepoRootOrCurrent() : Directory.GetCurrentDirectory();
        string jsonPath = Path.GetFullPath(run.OutputPath ?? Path.Combine(root, "bench", "out", "replay.json"));
        report.Write(jsonPath);
        console.MarkupLine($"results: [link]{Markup.Escape(jsonPath)}[/]");
        string plotPath = Path.GetFullPath(run.PlotPath ?? Path.Combine(root, "bench", "out", "replay.png"));
        PlotWriter.Write(plotPath, report.Results);
        console.MarkupLine($"plot:    [link]{Markup.Escape(plotPath)}[/]");
        console.MarkupLine(string.Create(CultureInfo.InvariantCulture,
            $"process peak memory: {ResultTable.Bytes(ProcessMemory.PeakBytes())}"));
        return 0;
    }

    private static string RepoRootOrCurrent()
    {
        try
        {
            return RepoRoot.Find();
        }
        catch (DirectoryNotFoundException)
        {
            return Directory.GetCurrentDirectory();
        }
    }
}
