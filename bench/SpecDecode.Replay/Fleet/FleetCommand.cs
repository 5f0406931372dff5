using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SpecDecode.CommandLine;
using Spectre.Console;

namespace SpecDecode.Replay;

/// <summary>The <c>fleet</c> subcommand: the fleet simulation over replica counts and sharing modes.</summary>
public static class FleetCommand
{
    /// <summary>Builds the subcommand. It runs under the replay's command line and so by the tools' convention
    /// (<see cref="ToolRunner"/>): a bad value is refused while parsing, naming the option; bad input exits 2, a drafter
    /// that fails 1.</summary>
    public static Command Build()
    {
        var traces = new Option<string?>("--traces") { Description = "Trace file (.jsonl.gz). Default: ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz from the repository root." };
        var first = ToolOptions.OptionalInt("--first", "Simulate only the first N trajectories.", 1);
        var replicas = new Option<string[]>("--replicas") { Description = "Replica counts; repeat or comma list. Default: 1,2,4,8,16." };
        var modes = new Option<string[]>("--modes") { Description = "isolated, shared, pooled (one process seeing everything); repeat or comma list. Default: all three." };
        var delays = new Option<string[]>("--delay") { Description = "Shared mode's delivery delays: seconds with 's' (30s) or calls finished fleet-wide with 'c' (100c), a bare number is seconds; one shared run per delay. Default: 0." };
        var agents = ToolOptions.Int("--agents-per-replica", "Trajectories each replica serves at once.", 1, 1);
        var tokenMs = ToolOptions.Double("--token-ms", "Simulated ms per response token (sets when calls start and end).", 10, NumberRange.Above(0));
        var gap = ToolOptions.Double("--gap-seconds", "Simulated seconds between a trajectory's calls (tool runs).", 0, NumberRange.AtLeast(0));
        var drafter = ToolOptions.Choice("--drafter", "The replicas' drafter.", DrafterFactory.Suffix, [DrafterFactory.Suffix, DrafterFactory.SuffixCalibrated]);
        var budget = ToolOptions.Int("--budget", "Draft-token budget per step.", 32, 0);
        var maxTokens = ToolOptions.Long("--max-cached-tokens", "Each replica's global-tree token bound (-1: unbounded).", -1, -1);
        var parallel = ToolOptions.Int("--parallel", "Configurations run at once (each on its own core).", 1, 1);
        var output = new Option<string?>("--out") { Description = "JSON results file. Default: bench/out/fleet.json." };
        var plot = new Option<string?>("--plot") { Description = "PNG plot file. Default: bench/out/fleet.png." };
        var from = new Option<string[]>("--from") { Description = "Run nothing: merge these earlier fleet JSON reports (same selection) into one table, JSON and plot; repeat." };

        var command = new Command("fleet", "Simulates R replicas behind a conversation-affine router, each with its own suffix drafter, isolated or sharing finished responses.")
        {
            traces, first, replicas, modes, delays, agents, tokenMs, gap, drafter, budget, maxTokens, parallel, output, plot, from,
        };
        command.SetAction(parse =>
        {
            if (Console.IsOutputRedirected)
            {
                AnsiConsole.Profile.Width = 200;
            }
            if (parse.GetValue(from) is { Length: > 0 } reports)
            {
                return Merge(reports, parse.GetValue(output), parse.GetValue(plot), AnsiConsole.Console);
            }
            var template = new FleetSettings
            {
                AgentsPerReplica = parse.GetValue(agents),
                TokenMilliseconds = parse.GetValue(tokenMs),
                GapSeconds = parse.GetValue(gap),
                Drafter = parse.GetValue(drafter)!,
                Budget = parse.GetValue(budget),
                DrafterSettings = new DrafterSettings { MaxCachedTokens = parse.GetValue(maxTokens) },
            };
            List<FleetSettings> configs = Configurations(template, Usage(() => ParseInts(parse.GetValue(replicas), [1, 2, 4, 8, 16]), "--replicas"),
                Usage(() => ParseModes(parse.GetValue(modes)), "--modes"), Usage(() => ParseDelays(parse.GetValue(delays)), "--delay"));
            return Execute(parse.GetValue(traces), new TraceSelection { First = parse.GetValue(first) }, configs,
                parse.GetValue(parallel), parse.GetValue(output), parse.GetValue(plot), AnsiConsole.Console);
        });
        return command;
    }

    /// <summary>A list option's parse failure as bad usage naming the option.</summary>
    private static T Usage<T>(Func<T> parse, string option)
    {
        try
        {
            return parse();
        }
        catch (FormatException ex)
        {
            throw new ToolUsageException(ex.Message.StartsWith(option, StringComparison.Ordinal) ? ex.Message : $"{option}: {ex.Message}");
        }
    }

    /// <summary>Every configuration to run: one per replica count and mode (one per delay for shared), a single run
    /// for one replica (every mode is the same there).</summary>
    public static List<FleetSettings> Configurations(FleetSettings template, IReadOnlyList<int> replicas, IReadOnlyList<FleetMode> modes,
        IReadOnlyList<(int Calls, double Seconds)> delays)
    {
        var configs = new List<FleetSettings>();
        foreach (int r in replicas)
        {
            if (r == 1)
            {
                configs.Add(template with { Replicas = 1, Mode = FleetMode.Isolated });
                continue;
            }
            foreach (FleetMode mode in modes)
            {
                if (mode == FleetMode.Shared)
                {
                    configs.AddRange(delays.Select(d => template with { Replicas = r, Mode = mode, DelayCalls = d.Calls, DelaySeconds = d.Seconds }));
                }
                else
                {
                    configs.Add(template with { Replicas = r, Mode = mode });
                }
            }
        }
        return configs;
    }

    /// <summary>Reads the trace once, runs every configuration, prints the table, writes the JSON and the plot.</summary>
    /// <returns>0 (failures are thrown).</returns>
    /// <exception cref="ToolUsageException">A setting is out of range.</exception>
    /// <exception cref="TraceFormatException">The trace file is missing or malformed, or the selection holds no call.</exception>
    /// <exception cref="ReplayException">A drafter failed.</exception>
    public static int Execute(string? tracePath, TraceSelection selection, IReadOnlyList<FleetSettings> configs, int parallel,
        string? outputPath, string? plotPath, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(configs);
        ArgumentNullException.ThrowIfNull(console);
        if (selection.First is <= 0)
        {
            throw new ToolUsageException("--first: give 1 or more trajectories.");
        }
        if (configs.Select(c => c.Validate()).FirstOrDefault(e => e is not null) is { } invalid)
        {
            throw new ToolUsageException(invalid);
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(parallel, 1);
        DateTime started = DateTime.UtcNow;
        long readStart = Stopwatch.GetTimestamp();
        TraceReader reader = TraceReader.Open(tracePath ?? RepoRoot.DefaultTraces(), ProtocolTokenizer.CreateO200kBase(), selection);
        List<TraceTrajectory> trajectories = reader.Read().ToList();
        double readSeconds = Stopwatch.GetElapsedTime(readStart).TotalSeconds;
        long calls = trajectories.Sum(t => (long)t.Calls.Length);
        console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"{reader.Path}: {trajectories.Count} trajectories, {calls} calls ({selection}), read in {readSeconds:F1} s; {configs.Count} configurations")));
        if (calls == 0)
        {
            throw new TraceFormatException(TraceErrorKind.MissingField, reader.Path, 0, "The selection holds no call to replay.");
        }

        var results = new FleetResult[configs.Count];
        string json = Path.GetFullPath(outputPath ?? Path.Combine(RepoRoot.Find(), "bench", "out", "fleet.json"));
        FleetReport Report() => new()
        {
            Traces = reader.Path,
            Selection = selection.ToString(),
            Trajectories = trajectories.Count,
            Calls = calls,
            TraceReadSeconds = readSeconds,
            Machine = MachineInfo.Current(),
            StartedUtc = started,
            ProcessPeakMemoryBytes = ProcessMemory.PeakBytes(),
            Results = results.Where(r => r is not null).ToList(),
        };
        Parallel.For(0, configs.Count, new ParallelOptions { MaxDegreeOfParallelism = parallel }, i =>
        {
            FleetResult r = FleetSimulator.Run(trajectories, configs[i]);
            lock (console)
            {
                results[i] = r;
                console.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                    $"R={r.Settings.Replicas,-2} {r.Label,-14} tokens/step {r.TokensPerStep:F3}  acceptance {r.AcceptanceRate:P1}  delivered {r.DeliveredTokens:N0} tokens  {r.WallSeconds:F0} s")));
                // A long run keeps what it has measured so far: the JSON is rewritten after every configuration.
                Report().Write(json);
            }
        });

        FleetReport report = Report();
        WriteOutputs(report, json, plotPath, console);
        return 0;
    }

    /// <summary>Merges earlier reports of one selection (a configuration in several keeps its first result).</summary>
    /// <returns>0 (failures are thrown).</returns>
    /// <exception cref="IOException">A report cannot be read.</exception>
    /// <exception cref="FormatException">A file holds no fleet report, or the reports cover different selections.</exception>
    /// <exception cref="System.Text.Json.JsonException">A file is not JSON.</exception>
    public static int Merge(IReadOnlyList<string> reports, string? outputPath, string? plotPath, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(reports);
        ArgumentNullException.ThrowIfNull(console);
        var loaded = reports.Select(path =>
            System.Text.Json.JsonSerializer.Deserialize<FleetReport>(File.ReadAllText(path), ReplayReport.JsonOptions)
            ?? throw new FormatException($"{path} holds no fleet report.")).ToList();
        FleetReport head = loaded[0];
        if (loaded.Any(r => r.Traces != head.Traces || r.Selection != head.Selection || r.Calls != head.Calls))
        {
            throw new FormatException("The reports cover different traces or selections: merge only runs of one selection.");
        }
        var seen = new HashSet<(int, string)>();
        List<FleetResult> results = loaded.SelectMany(r => r.Results).Where(r => seen.Add((r.Settings.Replicas, r.Label))).ToList();
        var merged = new FleetReport
        {
            Traces = head.Traces,
            Selection = head.Selection,
            Trajectories = head.Trajectories,
            Calls = head.Calls,
            TraceReadSeconds = head.TraceReadSeconds,
            Machine = head.Machine,
            StartedUtc = loaded.Min(r => r.StartedUtc),
            ProcessPeakMemoryBytes = loaded.Max(r => r.ProcessPeakMemoryBytes),
            Note = head.Note + $"; merged from {string.Join(", ", reports.Select(Path.GetFileName))}",
            Results = results.OrderBy(r => r.Settings.Replicas).ToList(),
        };
        WriteOutputs(merged, outputPath, plotPath, console);
        return 0;
    }

    private static void WriteOutputs(FleetReport report, string? outputPath, string? plotPath, IAnsiConsole console)
    {
        console.Write(FleetTable.Build(report.Results));
        string root = RepoRoot.Find();
        string json = Path.GetFullPath(outputPath ?? Path.Combine(root, "bench", "out", "fleet.json"));
        report.Write(json);
        string png = Path.GetFullPath(plotPath ?? Path.Combine(root, "bench", "out", "fleet.png"));
        FleetPlotWriter.Write(png, report.Results);
        console.MarkupLine($"results: {Markup.Escape(json)}");
        console.MarkupLine($"plot:    {Markup.Escape(png)}");
        console.MarkupLine($"process peak memory: {ResultTable.Bytes(report.ProcessPeakMemoryBytes)}");
    }

    /// <summary>Parses repeated and comma-separated positive integers.</summary>
    /// <exception cref="FormatException">A value is not a positive integer.</exception>
    public static int[] ParseInts(IEnumerable<string>? values, int[] fallback)
    {
        var list = Split(values).Select(v => int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0
            ? n : throw new FormatException($"'{v}' is not a positive integer.")).Distinct().ToArray();
        return list.Length == 0 ? fallback : list;
    }

    /// <summary>Parses modes (isolated, shared, pooled); default all three.</summary>
    /// <exception cref="FormatException">A mode is unknown.</exception>
    public static FleetMode[] ParseModes(IEnumerable<string>? values)
    {
        var list = Split(values).Select(v => Enum.TryParse(v, ignoreCase: true, out FleetMode m) && Enum.IsDefined(m)
            ? m : throw new FormatException($"Unknown mode '{v}': use isolated, shared or pooled.")).Distinct().ToArray();
        return list.Length == 0 ? [FleetMode.Isolated, FleetMode.Shared, FleetMode.Pooled] : list;
    }

    /// <summary>Parses delays: <c>30s</c> or <c>30</c> (seconds), <c>100c</c> (calls); default one delay of 0.</summary>
    /// <exception cref="FormatException">A delay is not a non-negative number with an optional unit.</exception>
    public static (int Calls, double Seconds)[] ParseDelays(IEnumerable<string>? values)
    {
        var list = new List<(int, double)>();
        foreach (string v in Split(values))
        {
            if (v.EndsWith('c') && int.TryParse(v[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out int c))
            {
                list.Add((c, 0));
            }
            else if (double.TryParse(v.TrimEnd('s'), NumberStyles.Float, CultureInfo.InvariantCulture, out double s) && s >= 0 && double.IsFinite(s))
            {
                list.Add((0, s));
            }
            else
            {
                throw new FormatException($"--delay: '{v}' is not a delay: use seconds (30s) or calls (100c).");
            }
        }
        return list.Count == 0 ? [(0, 0)] : [.. list.Distinct()];
    }

    private static IEnumerable<string> Split(IEnumerable<string>? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
