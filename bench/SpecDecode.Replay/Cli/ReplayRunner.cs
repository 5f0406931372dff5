using Spectre.Console;

namespace SpecDecode.Replay;

/// <summary>
/// Runs every drafter at every budget of a <see cref="ReplayRun"/> over the selected trajectories, each with a fresh
/// drafter, and collects the report. The trace is streamed anew for each run (tokenizing all 20,120 calls takes a few
/// seconds, reported apart as <c>trace_read_seconds</c>), so memory stays bounded by one trajectory plus the drafter.
/// </summary>
public static class ReplayRunner
{
    /// <summary>Replays the first selected trajectory with a throwaway drafter so that JIT compilation stays out of the timings.</summary>
    private static void WarmUp(string name, int budget, DrafterSettings settings, TraceReader reader)
    {
        DrafterHandle handle = DrafterFactory.Create(name, settings);
        using (handle.Drafter)
        {
            ReplayDriver.Run(handle.Drafter, reader.Read().Take(1), new ReplaySettings { Budget = budget, MeasureHeap = false });
        }
    }

    /// <summary>Runs the replays with progress shown on <paramref name="console"/>.</summary>
    /// <exception cref="TraceFormatException">Bad input (without --skip-bad), a missing file or a missing task.</exception>
    /// <exception cref="ReplayException">A drafter failed, or a replay covered other calls than the scan counted.</exception>
    public static ReplayReport Run(ReplayRun run, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(run);
        ArgumentNullException.ThrowIfNull(console);
        DateTime started = DateTime.UtcNow;
        string traces = run.Traces ?? RepoRoot.DefaultTraces();
        ProtocolTokenizer tokenizer = ProtocolTokenizer.CreateO200kBase();
        TraceReader reader = TraceReader.Open(traces, tokenizer, run.Selection, run.SkipBad);

        TraceScan scan = reader.Scan();
        console.MarkupLine(Markup.Escape(
            $"{reader.Path}: {scan.Trajectories} trajectories, {scan.Calls} calls selected ({run.Selection})" +
            (scan.Skipped.Count > 0 ? $", {scan.Skipped.Count} bad line(s) skipped" : "")));
        if (scan.Trajectories == 0 || scan.Calls == 0)
        {
            throw new TraceFormatException(TraceErrorKind.MissingField, reader.Path, 0, "The selection holds no call to replay.");
        }

        var combos = new List<(string Drafter, int Budget)>();
        foreach (string drafter in run.Drafters)
        {
            foreach (int budget in run.Budgets)
            {
                combos.Add((drafter, budget));
            }
        }
        var results = new ReplayResult[combos.Count];
        bool interactive = console.Profile.Capabilities.Interactive && !Console.IsOutputRedirected;
        ReplayProgress.Run(console, interactive, combos.Select(c => $"{c.Drafter} b={c.Budget}").ToList(), scan.Calls, (i, tick) =>
        {
            (string name, int budget) = combos[i];
            WarmUp(name, budget, run.DrafterSettings, reader);
            DrafterHandle handle = DrafterFactory.Create(name, run.DrafterSettings);
            using (handle.Drafter)
            {
                var settings = new ReplaySettings { Budget = budget, Label = handle.Label, DrafterMemoryBytes = handle.MemoryBytes };
                results[i] = ReplayDriver.Run(handle.Drafter, reader.Read(), settings, tick);
            }
            if (results[i].Calls != scan.Calls || reader.Skipped.Count != scan.Skipped.Count)
            {
                throw new ReplayException(
                    $"The {name} b={budget} replay covered {results[i].Calls} calls and skipped {reader.Skipped.Count} lines, " +
                    $"but the scan counted {scan.Calls} calls and {scan.Skipped.Count} skipped lines: the trace changed during the run?");
            }
        });

        return new ReplayReport
        {
            WarmUp = "each run is preceded by an unmeasured replay of the first selected trajectory with a throwaway drafter (JIT warm-up)",
            Traces = reader.Path,
            Selection = run.Selection.ToString(),
            SkipBad = run.SkipBad,
            SkippedLines = scan.Skipped,
            Trajectories = scan.Trajectories,
            Calls = scan.Calls,
            DrafterSettings = run.DrafterSettings,
            Machine = MachineInfo.Current(),
            StartedUtc = started,
            Results = results,
        };
    }
}
