using System.Diagnostics;
using System.Globalization;

namespace SpecDecode.Fuzz;

/// <summary>How one fuzz case ended.</summary>
public enum FuzzOutcome
{
    /// <summary>The corrupted file loaded (and the result worked once).</summary>
    Accepted,

    /// <summary>Refused with the parser's typed exception, naming the file.</summary>
    Refused,

    /// <summary>Refused with the typed exception, but the message does not name the file: a failure.</summary>
    Unnamed,

    /// <summary>Any other exception (untyped, a native error): a failure.</summary>
    Untyped,

    /// <summary>Did not finish within the case timeout: a failure (the run stops).</summary>
    Hang,
}

/// <summary>A case that failed, with what it takes to replay it.</summary>
public sealed record FuzzFailure(string Target, int Case, ulong Seed, string Corruption, FuzzOutcome Outcome, string Error)
{
    /// <summary>The command that reruns this case alone.</summary>
    public string Replay => $"dotnet run -c Release --project bench/SpecDecode.Fuzz -- replay --target {Target} --case-seed 0x{Seed:X16}";

    public override string ToString() => $"{Target} case {Case} seed 0x{Seed:X16}: {Outcome}: {Error}\n    corruption: {Corruption}\n    replay: {Replay}";
}

/// <summary>One target's figures.</summary>
public sealed record FuzzTargetResult(string Target, int Cases, IReadOnlyDictionary<FuzzOutcome, int> Outcomes, TimeSpan Elapsed,
    IReadOnlyList<string> SampleRefusals);

/// <summary>
/// Runs seeded corruptions against each target in a work folder holding the seed files: each case writes its corrupted
/// file, loads the folder on a worker thread with a timeout, and classifies the outcome. Before each case its seed and
/// corruption go to <c>fuzz-current-case.txt</c> in the work folder, so a case that kills the process (a native crash)
/// can be named and replayed.
/// </summary>
public sealed class FuzzRunner
{
    private static readonly FuzzTarget[] AllTargets =
        [new SafeTensorsTarget(), new ConfigTarget(), new GenerationConfigTarget(), new TokenizerTarget(), new TraceTarget()];

    /// <summary>The targets' names.</summary>
    public static IReadOnlyList<string> TargetNames => [.. AllTargets.Select(t => t.Name)];

    /// <summary>How long one case may take.</summary>
    public TimeSpan CaseTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The seed of the case <paramref name="index"/> of <paramref name="target"/> in a run seeded <paramref name="runSeed"/>.</summary>
    public static ulong CaseSeed(int runSeed, string target, int index)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (char c in target)
        {
            h = (h ^ c) * 0x100000001B3UL;
        }
        ulong z = h ^ ((ulong)(uint)runSeed << 32) ^ (ulong)(uint)index;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;   // splitmix64's finaliser
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Runs <paramref name="cases"/> cases against each named target; failures are collected (a hang stops the run).</summary>
    public (IReadOnlyList<FuzzTargetResult> Results, IReadOnlyList<FuzzFailure> Failures) Run(IEnumerable<string> targets, int cases, int runSeed, TextWriter log)
    {
        string work = Directory.CreateTempSubdirectory("specdecode-fuzz").FullName;
        try
        {
            SeedFiles.Write(work);
            var results = new List<FuzzTargetResult>();
            var failures = new List<FuzzFailure>();
            foreach (string name in targets)
            {
                FuzzTarget target = Find(name);
                string file = Path.Combine(work, target.FileName);
                byte[] seed = File.ReadAllBytes(file);
                target.Parse(work);   // the seed itself must load
                var outcomes = Enum.GetValues<FuzzOutcome>().ToDictionary(o => o, _ => 0);
                var refusals = new Dictionary<string, string>();
                var watch = Stopwatch.StartNew();
                for (int i = 0; i < cases; i++)
                {
                    ulong caseSeed = CaseSeed(runSeed, target.Name, i);
                    (FuzzOutcome outcome, string corruption, Exception? error) = RunCase(target, work, seed, caseSeed);
                    outcomes[outcome]++;
                    if (outcome == FuzzOutcome.Refused)
                    {
                        refusals.TryAdd(Shape(error!.Message, work), $"{error.GetType().Name}: {error.Message.Replace(work, "<folder>", StringComparison.Ordinal)}");
                    }
                    else if (outcome != FuzzOutcome.Accepted)
                    {
                        var failure = new FuzzFailure(target.Name, i, caseSeed, corruption, outcome, error?.ToString() ?? "(no exception)");
                        failures.Add(failure);
                        log.WriteLine("FAIL " + failure);
                        if (outcome == FuzzOutcome.Hang)
                        {
                            results.Add(new FuzzTargetResult(target.Name, i + 1, outcomes, watch.Elapsed, []));
                            return (results, failures);   // the hung thread still holds the files
                        }
                    }
                }
                File.WriteAllBytes(file, seed);
                var result = new FuzzTargetResult(target.Name, cases, outcomes, watch.Elapsed, [.. refusals.Values.Take(8)]);
                results.Add(result);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{target.Name,-18} {cases,7} cases  accepted {outcomes[FuzzOutcome.Accepted],6}  refused {outcomes[FuzzOutcome.Refused],6}  " +
                    $"failures {cases - outcomes[FuzzOutcome.Accepted] - outcomes[FuzzOutcome.Refused],4}  {refusals.Count,4} distinct refusals  {watch.Elapsed.TotalSeconds,6:F1} s"));
            }
            return (results, failures);
        }
        finally
        {
            TryDelete(work);
        }
    }

    /// <summary>Reruns one case and returns its outcome, corruption and error (replay).</summary>
    public (FuzzOutcome Outcome, string Corruption, Exception? Error) Replay(string targetName, ulong caseSeed)
    {
        string work = Directory.CreateTempSubdirectory("specdecode-fuzz-replay").FullName;
        try
        {
            SeedFiles.Write(work);
            FuzzTarget target = Find(targetName);
            byte[] seed = File.ReadAllBytes(Path.Combine(work, target.FileName));
            return RunCase(target, work, seed, caseSeed);
        }
        finally
        {
            TryDelete(work);
        }
    }

    private (FuzzOutcome, string, Exception?) RunCase(FuzzTarget target, string work, byte[] seed, ulong caseSeed)
    {
        var random = new Random(unchecked((int)(caseSeed ^ (caseSeed >> 32))));
        byte[] corrupted = target.Corrupt(seed, random, out string corruption);
        File.WriteAllText(Path.Combine(work, "..", Path.GetFileName(work) + "-current-case.txt"),
            $"{target.Name} seed 0x{caseSeed:X16}: {corruption}\n");
        File.WriteAllBytes(Path.Combine(work, target.FileName), corrupted);
        Exception? error = null;
        var run = Task.Run(() =>
        {
            try
            {
                target.Parse(work);
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        if (!run.Wait(CaseTimeout))
        {
            return (FuzzOutcome.Hang, corruption, new TimeoutException($"no result within {CaseTimeout.TotalSeconds} s"));
        }
        FuzzOutcome outcome = error switch
        {
            null => FuzzOutcome.Accepted,
            _ when target.IsTyped(error) && error.Message.Contains(target.FileName, StringComparison.Ordinal) => FuzzOutcome.Refused,
            _ when target.IsTyped(error) => FuzzOutcome.Unnamed,
            _ => FuzzOutcome.Untyped,
        };
        return (outcome, corruption, error);
    }

    private static FuzzTarget Find(string name) =>
        AllTargets.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"No fuzz target '{name}'; the targets are {string.Join(", ", TargetNames)}.");

    /// <summary>A refusal's message with numbers and quoted names blanked: refusals that differ only there count as one.</summary>
    private static string Shape(string message, string work) =>
        System.Text.RegularExpressions.Regex.Replace(message.Replace(work, "", StringComparison.Ordinal), @"'[^']*'|-?\d+(\.\d+)?(E[-+]?\d+)?|\[[^\]]*\]", "#");

    private static void TryDelete(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
            File.Delete(folder + "-current-case.txt");
        }
        catch (IOException)
        {
        }
    }
}
