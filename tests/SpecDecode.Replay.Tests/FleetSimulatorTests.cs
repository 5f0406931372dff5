using SpecDecode.CommandLine;
using SpecDecode.Tests.Shared;
using Spectre.Console;

namespace SpecDecode.Replay.Tests;

/// <summary>The fleet simulation's logic on a slice of the real trace.</summary>
public sealed class FleetSimulatorTests
{
    private static readonly Lazy<List<TraceTrajectory>> Slice = new(() =>
    {
        lock (TraceFixture.Tokenizer)
        {
            return TraceReader.Open(TraceFixture.Path, TraceFixture.Tokenizer, new TraceSelection { First = 8 }).Read().ToList();
        }
    });

    private static FleetResult Run(FleetSettings settings) => FleetSimulator.Run(Slice.Value, settings);

    [Fact]
    public void One_replica_is_the_plain_replay_in_every_mode()
    {
        ReplayResult plain;
        DrafterHandle handle = DrafterFactory.Create(DrafterFactory.Suffix, new DrafterSettings());
        using (handle.Drafter)
        {
            plain = ReplayDriver.Run(handle.Drafter, Slice.Value, new ReplaySettings { MeasureHeap = false });
        }
        foreach (FleetMode mode in Enum.GetValues<FleetMode>())
        {
            FleetResult r = Run(new FleetSettings { Replicas = 1, Mode = mode });
            Assert.Equal(plain.Calls, r.Calls);
            Assert.Equal(plain.ResponseTokens, r.ResponseTokens);
            Assert.Equal(plain.Steps, r.Steps);
            Assert.Equal(plain.DraftedTokens, r.DraftedTokens);
            Assert.Equal(plain.AcceptedTokens, r.AcceptedTokens);
            Assert.Equal(0, r.DeliveredResponses);
        }
    }

    [Fact]
    public void Sharing_never_lowers_what_a_replica_knows_and_keeps_the_schedule()
    {
        var isolatedKnows = new Dictionary<(string, int), (int Replica, long Tokens)>();
        var sharedKnows = new Dictionary<(string, int), (int Replica, long Tokens)>();
        FleetResult isolated = Run(new FleetSettings
        {
            Replicas = 4, Mode = FleetMode.Isolated,
            OnCallStart = c => isolatedKnows.Add((c.TaskId, c.Call), (c.Replica, c.Cache.GetStatistics().CachedResponseTokens)),
        });
        FleetResult shared = Run(new FleetSettings
        {
            Replicas = 4, Mode = FleetMode.Shared,
            OnCallStart = c => sharedKnows.Add((c.TaskId, c.Call), (c.Replica, c.Cache.GetStatistics().CachedResponseTokens)),
        });

        Assert.Equal(isolatedKnows.Keys.Order(), sharedKnows.Keys.Order());
        int strictlyMore = 0;
        foreach (((string task, int call) key, (int replica, long tokens)) in isolatedKnows)
        {
            (int sharedReplica, long sharedTokens) = sharedKnows[key];
            Assert.Equal(replica, sharedReplica);                // same schedule, same replica
            Assert.True(sharedTokens >= tokens, $"{key}: shared replica knew {sharedTokens} tokens, isolated {tokens}");
            strictlyMore += sharedTokens > tokens ? 1 : 0;
        }
        Assert.True(strictlyMore > isolatedKnows.Count / 2, $"sharing added knowledge at only {strictlyMore} of {isolatedKnows.Count} call starts");
        // Conversation affinity: every call of a trajectory ran on one replica, and the four replicas all served.
        Assert.All(isolatedKnows.GroupBy(k => k.Key.Item1), g => Assert.Single(g.Select(x => x.Value.Replica).Distinct()));
        Assert.Equal(4, isolatedKnows.Values.Select(v => v.Replica).Distinct().Count());
        Assert.Equal(isolated.Replicas.Select(r => r.Calls), shared.Replicas.Select(r => r.Calls));
        Assert.Equal(isolated.SimulatedSeconds, shared.SimulatedSeconds);
    }

    [Fact]
    public void Without_delay_every_finished_response_reaches_every_other_replica()
    {
        FleetResult shared = Run(new FleetSettings { Replicas = 4, Mode = FleetMode.Shared });
        Assert.Equal(3 * shared.Calls, shared.DeliveredResponses);
        Assert.Equal(3 * shared.ResponseTokens, shared.DeliveredTokens);
        Assert.Equal(0, shared.UndeliveredResponses);
        // At the end every replica's global tree holds every response (unbounded cache).
        Assert.All(shared.Replicas, r => Assert.Equal(shared.ResponseTokens, r.CachedResponseTokens));
    }

    [Fact]
    public void A_delay_longer_than_the_run_is_isolation_and_sharing_sits_between_isolation_and_one_process()
    {
        FleetResult isolated = Run(new FleetSettings { Replicas = 4, Mode = FleetMode.Isolated });
        FleetResult never = Run(new FleetSettings { Replicas = 4, Mode = FleetMode.Shared, DelaySeconds = 1e9 });
        Assert.Equal(0, never.DeliveredResponses);
        Assert.Equal(never.Calls, never.UndeliveredResponses);
        Assert.Equal(isolated.Steps, never.Steps);
        Assert.Equal(isolated.AcceptedTokens, never.AcceptedTokens);
        Assert.Equal(isolated.DraftedTokens, never.DraftedTokens);

        FleetResult byCalls = Run(new FleetSettings { Replicas = 4, Mode = FleetMode.Shared, DelayCalls = 1_000_000 });
        Assert.Equal(isolated.Steps, byCalls.Steps);

        FleetResult shared = Run(new FleetSettings { Replicas = 4, Mode = FleetMode.Shared });
        FleetResult pooled = Run(new FleetSettings { Replicas = 4, Mode = FleetMode.Pooled });
        Assert.Equal(isolated.ResponseTokens, pooled.ResponseTokens);
        Assert.True(shared.TokensPerStep > isolated.TokensPerStep, $"shared {shared.TokensPerStep:F4} vs isolated {isolated.TokensPerStep:F4}");
        Assert.True(pooled.TokensPerStep >= shared.TokensPerStep * 0.99, $"one process {pooled.TokensPerStep:F4} vs shared {shared.TokensPerStep:F4}");
        Assert.Equal(isolated.Replicas.Select(r => r.Calls), pooled.Replicas.Select(r => r.Calls));
    }

    [Fact]
    public void The_command_line_parses_delays_and_lists_and_runs_one_replica_once()
    {
        Assert.Equal([(0, 0.0), (0, 30.0), (100, 0.0), (0, 2.5)], FleetCommand.ParseDelays(["0,30s", "100c", "2.5"]));
        Assert.Throws<FormatException>(() => FleetCommand.ParseDelays(["soon"]));
        Assert.Throws<FormatException>(() => FleetCommand.ParseDelays(["-3s"]));
        Assert.Equal([1, 2, 4], FleetCommand.ParseInts(["1,2", "4"], [9]));
        Assert.Throws<FormatException>(() => FleetCommand.ParseInts(["0"], [9]));
        Assert.Equal([FleetMode.Shared, FleetMode.Pooled], FleetCommand.ParseModes(["shared,POOLED"]));
        Assert.Throws<FormatException>(() => FleetCommand.ParseModes(["gossip"]));

        List<FleetSettings> configs = FleetCommand.Configurations(new FleetSettings(), [1, 2],
            [FleetMode.Isolated, FleetMode.Shared, FleetMode.Pooled], [(0, 0), (0, 30)]);
        Assert.Equal(["isolated", "isolated", "shared", "shared 30s", "one process"], configs.Select(c => c.Label));
        Assert.Equal([1, 2, 2, 2, 2], configs.Select(c => c.Replicas));
        Assert.NotNull(new FleetSettings { Drafter = DrafterFactory.PromptLookup }.Validate());
        Assert.Throws<ArgumentException>(() => FleetSimulator.Run(Slice.Value, new FleetSettings { Replicas = 0 }));
    }

    [Fact]
    public void The_command_writes_its_table_json_and_plot()
    {
        string folder = Directory.CreateTempSubdirectory("fleet-cli-").FullName;
        try
        {
            var writer = new StringWriter();
            IAnsiConsole console = PlainConsole.Create(writer, 200);
            List<FleetSettings> configs = FleetCommand.Configurations(new FleetSettings(), [1, 2], [FleetMode.Isolated, FleetMode.Shared], [(0, 0)]);
            int code = FleetCommand.Execute(TraceFixture.Path, new TraceSelection { First = 2 }, configs, 2,
                Path.Combine(folder, "f.json"), Path.Combine(folder, "f.png"), console);
            string output = writer.ToString();
            Assert.True(code == 0, output);
            Assert.Contains("Fleet simulation", output);
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "f.json")));
            Assert.Equal(3, json.RootElement.GetProperty("results").GetArrayLength());
            Assert.Equal("shared", json.RootElement.GetProperty("results")[2].GetProperty("label").GetString());
            Assert.True(new FileInfo(Path.Combine(folder, "f.png")).Length > 1000);

            Assert.Throws<ToolUsageException>(() => FleetCommand.Execute(TraceFixture.Path, new TraceSelection { First = 0 }, configs, 1, null, null, console));

            // Merging reports of one selection keeps each configuration once.
            List<FleetSettings> more = FleetCommand.Configurations(new FleetSettings(), [2], [FleetMode.Pooled], [(0, 0)]);
            Assert.Equal(0, FleetCommand.Execute(TraceFixture.Path, new TraceSelection { First = 2 }, more, 1,
                Path.Combine(folder, "g.json"), Path.Combine(folder, "g.png"), console));
            Assert.Equal(0, FleetCommand.Merge([Path.Combine(folder, "f.json"), Path.Combine(folder, "g.json"), Path.Combine(folder, "f.json")],
                Path.Combine(folder, "m.json"), Path.Combine(folder, "m.png"), console));
            using var merged = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "m.json")));
            Assert.Equal(["isolated", "isolated", "shared", "one process"],
                merged.RootElement.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("label").GetString()));
            Assert.Equal(json.RootElement.GetProperty("results")[1].GetProperty("tokens_per_step").GetDouble(),
                merged.RootElement.GetProperty("results")[1].GetProperty("tokens_per_step").GetDouble());
            Assert.Throws<FileNotFoundException>(() => FleetCommand.Merge([Path.Combine(folder, "missing.json")], null, null, console));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>The fleet subcommand follows the tools' convention: a bad value is one line on stderr naming the
    /// option, exit 2, before any trace is read.</summary>
    [Theory]
    [InlineData("--replicas", "0", "--replicas: '0' is not a positive integer")]
    [InlineData("--modes", "gossip", "--modes: Unknown mode 'gossip'")]
    [InlineData("--delay", "soon", "--delay: 'soon' is not a delay")]
    [InlineData("--token-ms", "0", "--token-ms: 0 is out of range")]
    [InlineData("--drafter", "prompt-lookup", "--drafter: 'prompt-lookup' is not one of suffix, suffix-calibrated")]
    [InlineData("--parallel", "0", "--parallel: 0 is too small")]
    [InlineData("--first", "x", "--first: 'x' is not a whole number")]
    public void Bad_values_are_refused_naming_the_option(string option, string value, string message) =>
        ToolAssert.Refused(ReplayCommand.Build(), ["fleet", "--traces", TraceFixture.Path, option, value], message);

    [Fact]
    public void Merging_a_missing_report_is_bad_input_on_one_line()
    {
        var error = new StringWriter();
        int code = ReplayCommand.Run(["fleet", "--from", "/nonexistent/fleet.json"], new StringWriter(), error);
        Assert.Equal(ToolExitCodes.Usage, code);
        ToolAssert.OneErrorLine(error.ToString(), "/nonexistent/fleet.json");
    }
}
