using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using SpecDecode.CommandLine;
using SpecDecode.Replay;
using SpecDecode.Server;

namespace SpecDecode.AgentReplay;

/// <summary>One phase's figures at one number of agents, in one round (<see cref="Round"/>, from 0).</summary>
public sealed record PhaseResult(string Phase, int Agents, int Trajectories, int Calls, long Tokens, double SumTrajectorySeconds,
    double MeanTrajectorySeconds, double WallSeconds, double TokensPerSecond, int StoppedEarly, IReadOnlyList<TrajectoryRun> Runs, int Round = 0);

/// <summary>The paired probe of what the HTTP layer costs: the first replayed call, sent again and again alternating between
/// HTTP and in-process on one engine, so that drift in the machine's load hits both alike.</summary>
public sealed record OverheadProbe(int Pairs, double HttpMedianMs, double InProcessMedianMs, double MedianDifferenceMs);

/// <summary>The results file.</summary>
public sealed record AgentReplayReport(string Date, string Model, string Device, bool Benchmark, int Context, int WarmupTrajectories,
    int? MaxTokens, IReadOnlyList<PhaseResult> Phases, OverheadProbe? Probe = null);

/// <summary>
/// The agent-loop replay's command line (the tools' convention): replays trajectories through the server over HTTP
/// (Kestrel on the loopback, an HttpClient as the agent), the same calls in-process, and through a plain-decoding server;
/// each phase on a freshly loaded model and drafter, so no phase learns from another. With several rounds the phase order
/// alternates (round 0 as listed, round 1 reversed, ...), so that what the process warms up over time (tiered JIT, the
/// allocator's pools) does not favour the phase that always runs later; the overhead is taken over all rounds' sums.
/// </summary>
public static class AgentReplayCommand
{
    /// <summary>The phases, in the order they run.</summary>
    public static readonly string[] PhaseNames = ["http", "in-process", "http-plain"];

    /// <summary>Parses and runs.</summary>
    public static Task<int> RunAsync(string[] args) => ToolRunner.RunAsync(Build(), args);

    /// <summary>The root command.</summary>
    public static RootCommand Build()
    {
        var traces = ToolOptions.InputFile("--traces", "The SWE-bench traces (gzip JSONL). Default: ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz.");
        var trajectories = ToolOptions.Int("--trajectories", "Trajectories replayed per phase.", 8, 1);
        var warmup = ToolOptions.Int("--warmup-trajectories", "Benchmark mode: trajectories before the replayed ones that only teach the drafter (as EngineBench).", 0, 0);
        var maxCalls = ToolOptions.Int("--max-calls", "Calls per trajectory at most.", 1000, 1);
        var agentCounts = new Option<string>("--agents") { Description = "Agents at once, comma list (each a run of every phase).", DefaultValueFactory = _ => "1,8" };
        var maxTokens = ToolOptions.OptionalInt("--max-tokens", "Tokens per answer at most (default 64 with a real model; benchmark mode replays the recorded answer whole).", 1);
        var phases = new Option<string>("--phases") { Description = "Comma list of http, in-process, http-plain.", DefaultValueFactory = _ => string.Join(',', PhaseNames) };
        var output = new Option<string>("--out") { Description = "Folder for agent-replay.json and agent-replay.md.", DefaultValueFactory = _ => "bench/out" };
        var model = new Option<string?>("--model") { Description = "A checkpoint folder (default: the embedded model)." };
        var benchmark = ToolOptions.InputFile("--benchmark-random-weights", "Benchmark mode: random weights of this config.json's shape, recorded answers forcing acceptance (the server's flag).");
        var device = ToolOptions.Choice("--device", "cpu or cuda.", null, ["cpu", "cuda"]);
        var dtype = ToolOptions.Choice("--dtype", "float32, float16 or bfloat16.", null, ["float32", "float16", "bfloat16"]);
        var maxContext = ToolOptions.OptionalInt("--max-context", "Tokens of context per request (default: the model's, at most 4096).", 16);
        var budget = ToolOptions.OptionalInt("--budget", "Draft tokens per step at most (default 32).", 0);
        var noAdaptive = new Option<bool>("--no-adaptive") { Description = "Verify every draft as proposed." };
        var noCudaGraphs = new Option<bool>("--no-cuda-graphs") { Description = "No CUDA graphs for plain single-sequence steps." };
        var rounds = ToolOptions.Int("--rounds", "Rounds of every phase; the phase order alternates between rounds (as listed, then reversed), and the overhead is over all rounds.", 2, 1);
        var probe = ToolOptions.Int("--probe-pairs", "After the phases, the first replayed call this many times each way, alternating between HTTP and in-process on one engine: the HTTP layer's cost, paired (0: none).", 10, 0);
        var root = new RootCommand("Replays SWE-bench agent trajectories through the OpenAI-compatible server (each call the whole conversation so far), in-process and with plain decoding: end-to-end time per trajectory, HTTP overhead, speedup.")
        {
            traces, trajectories, warmup, maxCalls, agentCounts, maxTokens, phases, output, model, benchmark, device, dtype, maxContext, budget, noAdaptive, noCudaGraphs, rounds, probe,
        };
        root.SetAction(async (p, ct) =>
        {
            int[] agents = ParseList(p.GetValue(agentCounts)!, "--agents").Select(a => int.TryParse(a, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1
                ? n : throw new ToolUsageException($"--agents: '{a}' is not a whole number of 1 or more; write e.g. --agents 1,8.")).ToArray();
            string[] phaseList = ParseList(p.GetValue(phases)!, "--phases");
            foreach (string phase in phaseList.Where(ph => !PhaseNames.Contains(ph)))
            {
                throw new ToolUsageException($"--phases: '{phase}' is not one of {string.Join(", ", PhaseNames)}.");
            }
            bool forced = p.GetValue(benchmark) is not null;
            var settings = new ServerSettings
            {
                ModelFolder = p.GetValue(model),
                BenchmarkRandomWeights = p.GetValue(benchmark)?.FullName,
                Device = p.GetValue(device),
                DType = p.GetValue(dtype),
                MaxContext = p.GetValue(maxContext),
                MaxBatch = agents.Max(),
                MaxWaiting = agents.Max(),
                Budget = p.GetValue(budget),
                Adaptive = !p.GetValue(noAdaptive),
                CudaGraphs = !p.GetValue(noCudaGraphs),
                Urls = ["http://127.0.0.1:0"],
            };
            string tracePath = p.GetValue(traces)?.FullName ?? Path.GetFullPath("../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz");
            int warm = forced ? p.GetValue(warmup) : 0;
            IReadOnlyList<AgentTrajectory> all = AgentTrajectory.Read(tracePath, 0, warm + p.GetValue(trajectories));
            IReadOnlyList<AgentTrajectory> teach = all.Take(warm).ToArray();
            IReadOnlyList<AgentTrajectory> replay = all.Skip(warm).ToArray();
            int? tokens = forced ? p.GetValue(maxTokens) : p.GetValue(maxTokens) ?? 64;
            Console.WriteLine($"{replay.Count} trajectories ({replay.Sum(t => Math.Min(t.Calls, p.GetValue(maxCalls)))} calls) from {tracePath}; {teach.Count} warm-up trajectories; agents {string.Join(", ", agents)}; phases {string.Join(", ", phaseList)}");

            var results = new List<PhaseResult>();
            string deviceName = "", modelName = "";
            int context = 0;
            foreach (int n in agents)
            {
                foreach ((string phase, int round) in PhaseOrder(phaseList, p.GetValue(rounds)))
                {
                    ServerSettings phaseSettings = phase == "http-plain" ? settings with { Draft = "none" } : settings;
                    using ModelHost host = ModelHost.Load(phaseSettings, Console.WriteLine);
                    (deviceName, modelName, context) = (host.Engine.Model.Device.type.ToString().ToLowerInvariant(), host.ServedModelName, host.Capacity);
                    Teach(host, teach);
                    PhaseResult result = await RunPhaseAsync(phase, n, host, phaseSettings, replay, p.GetValue(maxCalls), tokens, forced).ConfigureAwait(false) with { Round = round };
                    results.Add(result);
                    Console.WriteLine(Row(result));
                }
            }
            OverheadProbe? overhead = null;
            if (p.GetValue(probe) > 0 && replay.Count > 0)
            {
                using ModelHost host = ModelHost.Load(settings, Console.WriteLine);
                Teach(host, teach);
                overhead = await ProbeAsync(host, settings, AgentLoop.Body(replay[0], 0, host.ServedModelName, tokens, forced), p.GetValue(probe)).ConfigureAwait(false);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"probe: the first call {overhead.Pairs} times each way; median {overhead.HttpMedianMs:F2} ms over HTTP, {overhead.InProcessMedianMs:F2} ms in-process, paired difference {overhead.MedianDifferenceMs:F2} ms"));
            }
            var report = new AgentReplayReport(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), modelName, deviceName, forced, context, warm, tokens, results, overhead);
            string folder = p.GetValue(output)!;
            Directory.CreateDirectory(folder);
            await File.WriteAllTextAsync(Path.Combine(folder, "agent-replay.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }), ct).ConfigureAwait(false);
            string markdown = Markdown(report);
            await File.WriteAllTextAsync(Path.Combine(folder, "agent-replay.md"), markdown, ct).ConfigureAwait(false);
            Console.WriteLine(markdown);
            return ToolExitCodes.Ok;
        });
        return root;
    }

    /// <summary>Every phase once per round: round 0 in the listed order, round 1 reversed, and so on.</summary>
    public static IEnumerable<(string Phase, int Round)> PhaseOrder(IReadOnlyList<string> phases, int rounds)
    {
        ArgumentNullException.ThrowIfNull(phases);
        for (int round = 0; round < rounds; round++)
        {
            foreach (string phase in round % 2 == 0 ? phases : phases.Reverse())
            {
                yield return (phase, round);
            }
        }
    }

    private static async Task<PhaseResult> RunPhaseAsync(string phase, int agents, ModelHost host, ServerSettings settings,
        IReadOnlyList<AgentTrajectory> replay, int maxCalls, int? maxTokens, bool forced)
    {
        if (phase == "in-process")
        {
            var (runs, wall) = await AgentLoop.RunAsync(replay, new InProcessTransport(host), agents, maxCalls, host.ServedModelName, maxTokens, forced).ConfigureAwait(false);
            return Result(phase, agents, runs, wall);
        }
        await using WebApplication app = ServerApp.Build(settings, host);
        await app.StartAsync().ConfigureAwait(false);
        string address = app.BoundAddress();
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = agents }) { BaseAddress = new Uri(address), Timeout = TimeSpan.FromHours(1) };
        var (httpRuns, httpWall) = await AgentLoop.RunAsync(replay, new HttpTransport(http), agents, maxCalls, host.ServedModelName, maxTokens, forced).ConfigureAwait(false);
        await app.StopAsync().ConfigureAwait(false);
        return Result(phase, agents, httpRuns, httpWall);
    }

    /// <summary>The paired probe: <paramref name="body"/> alternately over HTTP and in-process on one engine (which goes
    /// first alternates too); the medians and the median of the paired differences.</summary>
    private static async Task<OverheadProbe> ProbeAsync(ModelHost host, ServerSettings settings, JsonElement body, int pairs)
    {
        await using WebApplication app = ServerApp.Build(settings, host);
        await app.StartAsync().ConfigureAwait(false);
        string address = app.BoundAddress();
        using var http = new HttpClient { BaseAddress = new Uri(address) };
        IAgentTransport overHttp = new HttpTransport(http), inProcess = new InProcessTransport(host);
        await overHttp.CallAsync(body, "probe", CancellationToken.None).ConfigureAwait(false);
        await inProcess.CallAsync(body, "probe", CancellationToken.None).ConfigureAwait(false);
        var h = new List<double>();
        var d = new List<double>();
        var differences = new List<double>();
        for (int i = 0; i < pairs; i++)
        {
            // alternate which goes first, so neither always follows the other
            (IAgentTransport first, IAgentTransport second) = i % 2 == 0 ? (overHttp, inProcess) : (inProcess, overHttp);
            double a = (await first.CallAsync(body, "probe", CancellationToken.None).ConfigureAwait(false)).Seconds * 1e3;
            double b = (await second.CallAsync(body, "probe", CancellationToken.None).ConfigureAwait(false)).Seconds * 1e3;
            (double viaHttp, double direct) = i % 2 == 0 ? (a, b) : (b, a);
            h.Add(viaHttp);
            d.Add(direct);
            differences.Add(viaHttp - direct);
        }
        await app.StopAsync().ConfigureAwait(false);
        static double Median(List<double> x) => x.Order().ElementAt(x.Count / 2);
        return new OverheadProbe(pairs, Median(h), Median(d), Median(differences));
    }

    /// <summary>Benchmark mode: teaches the drafter the warm-up trajectories' calls (prompt, recorded answer), as
    /// EngineBench's warm-up does.</summary>
    private static void Teach(ModelHost host, IReadOnlyList<AgentTrajectory> teach)
    {
        if (host.Benchmark is not { } bench || host.Drafter is not { } drafter)
        {
            return;
        }
        long id = -1_000_000;
        foreach (AgentTrajectory t in teach)
        {
            for (int k = 0; k < t.Calls; k++)
            {
                var request = new RequestId(id--);
                drafter.StartRequest(request, bench.EncodePrompt(t.Prompt(k)), new DraftRequestOptions { ConversationId = t.TaskId });
                drafter.Observe(request, bench.EncodeResponse(t.RecordedAnswer(k)));
                drafter.EndRequest(request);
            }
        }
    }

    private static PhaseResult Result(string phase, int agents, IReadOnlyList<TrajectoryRun> runs, double wall)
    {
        long tokens = runs.Sum(r => r.Tokens);
        double sum = runs.Sum(r => r.Seconds);
        return new PhaseResult(phase, agents, runs.Count, runs.Sum(r => r.Calls), tokens, sum, runs.Count == 0 ? 0 : sum / runs.Count, wall,
            wall > 0 ? tokens / wall : 0, runs.Count(r => r.StoppedBecause is not null), runs);
    }

    private static string[] ParseList(string text, string option)
    {
        string[] items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return items.Length > 0 ? items : throw new ToolUsageException($"{option}: give a comma list.");
    }

    private static string Row(PhaseResult r) => string.Create(CultureInfo.InvariantCulture,
        $"round {r.Round} {r.Phase,-11} agents {r.Agents,2}: {r.Trajectories} trajectories, {r.Calls} calls, {r.Tokens} tokens; per trajectory {r.MeanTrajectorySeconds:F2} s; wall {r.WallSeconds:F2} s, {r.TokensPerSecond:F1} tokens/s{(r.StoppedEarly > 0 ? $"; {r.StoppedEarly} stopped early (context)" : "")}");

    /// <summary>The report as markdown: per number of agents, each phase, the HTTP overhead and the speedup over plain
    /// decoding.</summary>
    public static string Markdown(AgentReplayReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var c = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(string.Create(c, $"Agent-loop replay, {report.Date}: model {report.Model} ({(report.Benchmark ? "random weights, recorded answers forced" : "real weights, greedy")}), device {report.Device}, context {report.Context}, warm-up trajectories {report.WarmupTrajectories}, max tokens {report.MaxTokens?.ToString(c) ?? "recorded"}."));
        md.AppendLine();
        md.AppendLine("| agents | round | phase | trajectories | calls | tokens | mean s per trajectory | sum s over trajectories | wall s | tokens/s |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (PhaseResult r in report.Phases)
        {
            md.AppendLine(string.Create(c, $"| {r.Agents} | {r.Round} | {r.Phase} | {r.Trajectories} | {r.Calls} | {r.Tokens} | {r.MeanTrajectorySeconds:F3} | {r.SumTrajectorySeconds:F2} | {r.WallSeconds:F2} | {r.TokensPerSecond:F1} |"));
        }
        md.AppendLine();
        if (report.Probe is { } probe)
        {
            md.AppendLine(string.Create(c, $"- Paired probe (the first call {probe.Pairs} times each way, alternating, one engine): median {probe.HttpMedianMs:F1} ms over HTTP, {probe.InProcessMedianMs:F1} ms in-process; median paired difference {probe.MedianDifferenceMs:F2} ms ({probe.MedianDifferenceMs / probe.HttpMedianMs:P1} of the call)."));
        }
        foreach (IGrouping<int, PhaseResult> g in report.Phases.GroupBy(r => r.Agents))
        {
            // each phase summed over its rounds; the rounds alternate the order, so neither phase always runs warmer
            PhaseTotal? http = Total(g, "http"), inProcess = Total(g, "in-process"), plain = Total(g, "http-plain");
            if (http is not null && inProcess is not null && http.Seconds > 0)
            {
                // the share of the time over HTTP that the in-process run did not spend
                static string Overhead(double overHttp, double inProcess) =>
                    overHttp > 0 ? ((overHttp - inProcess) / overHttp).ToString("P1", CultureInfo.InvariantCulture) : "-";
                var byRound = new List<string>();
                foreach (PhaseResult h in g.Where(r => r.Phase == "http"))
                {
                    PhaseResult? d = g.FirstOrDefault(r => r.Phase == "in-process" && r.Round == h.Round);
                    byRound.Add(d is null ? "-" : Overhead(h.SumTrajectorySeconds, d.SumTrajectorySeconds));
                }
                string perRound = http.Rounds > 1 ? "; by round " + string.Join(", ", byRound) : "";
                md.AppendLine(string.Create(c, $"- {g.Key} agent(s): HTTP overhead {Overhead(http.Seconds, inProcess.Seconds)} of end-to-end time ({http.Seconds:F2} s over HTTP, {inProcess.Seconds:F2} s in-process{(http.Rounds > 1 ? $", {http.Rounds} rounds each" : "")}; calls {http.Calls} and {inProcess.Calls}{perRound})."));
            }
            if (http is not null && plain is not null && http.Seconds > 0)
            {
                md.AppendLine(string.Create(c, $"- {g.Key} agent(s): speculative over plain decoding through HTTP {plain.Seconds / http.Seconds:F2}x end-to-end per trajectory ({plain.Seconds:F2} s plain, {http.Seconds:F2} s speculative)."));
            }
        }
        return md.ToString();
    }

    private sealed record PhaseTotal(double Seconds, int Calls, int Rounds);

    private static PhaseTotal? Total(IEnumerable<PhaseResult> results, string phase)
    {
        PhaseResult[] of = results.Where(r => r.Phase == phase).ToArray();
        return of.Length == 0 ? null : new PhaseTotal(of.Sum(r => r.SumTrajectorySeconds), of.Sum(r => r.Calls), of.Length);
    }
}
