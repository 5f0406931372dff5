using System.CommandLine;
using System.Globalization;
using Spectre.Console;

namespace SpecDecode.Replay;

/// <summary>The command line of the replay benchmark (System.CommandLine) and what it runs.</summary>
public static class ReplayCommand
{
    /// <summary>Builds the root command.</summary>
    public static RootCommand Build()
    {
        var traces = new Option<string?>("--traces") { Description = "Trace file (.jsonl.gz). Default: ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz from the repository root." };
        var drafters = new Option<string[]>("--drafter")
        {
            Description = $"Drafter to replay; repeat for several ({string.Join(", ", DrafterFactory.Names)}). Default: all.",
            AllowMultipleArgumentsPerToken = false,
        };
        drafters.AcceptOnlyFromAmong([.. DrafterFactory.Names]);
        var first = new Option<int?>("--first") { Description = "Replay only the first N trajectories of the file." };
        var tasks = new Option<string[]>("--task") { Description = "Replay only this task id; repeat for several." };
        var budgets = new Option<string[]>("--budget") { Description = "Draft-token budget per step; repeat or give a comma list (e.g. 4,8,16,32) for a sweep. Default: 32." };
        var depth = new Option<int>("--depth") { Description = "Suffix drafter: deepest match and draft.", DefaultValueFactory = _ => 64 };
        var factor = new Option<float>("--factor") { Description = "Suffix drafter: draft tokens per matched token.", DefaultValueFactory = _ => 1f };
        var offset = new Option<float>("--offset") { Description = "Suffix drafter: draft tokens added to the match allowance.", DefaultValueFactory = _ => 0f };
        var minProb = new Option<float>("--min-prob") { Description = "Suffix drafter: lowest path probability of a draft node.", DefaultValueFactory = _ => 0.1f };
        var mode = new Option<DraftMode>("--mode") { Description = "Suffix drafter: path or tree drafts.", DefaultValueFactory = _ => DraftMode.Path };
        var calibrated = new Option<float>("--calibrated") { Description = "Suffix drafter: calibrated drafting, keeping tokens whose learned acceptance estimate is at least this (0: SuffixDecoding's count-based drafts).", DefaultValueFactory = _ => 0f };
        var merge = new Option<bool>("--merge") { Description = "Suffix drafter with --calibrated: merge the candidates of every match length and of both trees into one tree." };
        var maxResponses = new Option<int>("--max-cached-responses") { Description = "Suffix drafter: responses kept in the global cache (-1: unbounded).", DefaultValueFactory = _ => -1 };
        var maxTokens = new Option<long>("--max-cached-tokens") { Description = "Suffix drafter: tokens kept in the global cache (-1: unbounded).", DefaultValueFactory = _ => -1 };
        var ngramMin = new Option<int>("--ngram-min") { Description = "Prompt lookup: shortest n-gram.", DefaultValueFactory = _ => 1 };
        var ngramMax = new Option<int>("--ngram-max") { Description = "Prompt lookup: longest n-gram.", DefaultValueFactory = _ => 4 };
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
            int[] budgetList;
            try
            {
                budgetList = ParseBudgets(parse.GetValue(budgets));
            }
            catch (FormatException ex)
            {
                AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
                return 2;
            }
            var settings = new DrafterSettings
            {
                Depth = parse.GetValue(depth),
                Factor = parse.GetValue(factor),
                Offset = parse.GetValue(offset),
                MinProbability = parse.GetValue(minProb),
                Mode = parse.GetValue(mode),
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
    /// <returns>The process exit code: 0 on success, 1 on bad input or a drafter failure, 2 on bad arguments.</returns>
    public static int Execute(ReplayRun run, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(run);
        ArgumentNullException.ThrowIfNull(console);
        try
        {
            string? error = run.Validate();
            if (error is not null)
            {
                console.MarkupLine($"[red]error:[/] {Markup.Escape(error)}");
                return 2;
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
        catch (Exception ex) when (ex is TraceFormatException or ReplayException or NotSupportedException or DirectoryNotFoundException)
        {
            console.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
            if (ex.InnerException is { } inner)
            {
                console.MarkupLine($"[grey]{Markup.Escape(inner.GetType().Name + ": " + inner.Message)}[/]");
            }
            return 1;
        }
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
