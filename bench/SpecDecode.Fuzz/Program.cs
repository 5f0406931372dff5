using System.CommandLine;
using System.Globalization;
using SpecDecode.Fuzz;
using SpecDecode.Replay;

var cases = new Option<int>("--cases") { Description = "Corruptions per target.", DefaultValueFactory = _ => 10_000 };
var seed = new Option<int>("--seed") { Description = "Seeds every case (a case's own seed derives from it, the target and the case number).", DefaultValueFactory = _ => 16 };
var targets = new Option<string>("--targets") { Description = "Comma list of " + string.Join(", ", FuzzRunner.TargetNames) + ".", DefaultValueFactory = _ => string.Join(",", FuzzRunner.TargetNames) };
var run = new Command("run", "Fuzz the parsers; exit code 1 when a case crashes, hangs, or throws an untyped or unnamed exception.") { cases, seed, targets };
run.SetAction(p =>
{
    var runner = new FuzzRunner();
    Console.WriteLine($"fuzz: {p.GetValue(cases)} cases per target, seed {p.GetValue(seed)} (a case that kills the process is named in <temp>/specdecode-fuzz*-current-case.txt)");
    (IReadOnlyList<FuzzTargetResult> results, IReadOnlyList<FuzzFailure> failures) = runner.Run(
        p.GetValue(targets)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries), p.GetValue(cases), p.GetValue(seed), Console.Out);
    foreach (FuzzTargetResult r in results)
    {
        Console.WriteLine($"{r.Target}: sample refusals");
        foreach (string refusal in r.SampleRefusals)
        {
            Console.WriteLine("  " + (refusal.Length > 220 ? refusal[..217] + "..." : refusal));
        }
    }
    Console.WriteLine(failures.Count == 0 ? "PASSED: no crash, hang, untyped or unnamed exception" : $"FAILED: {failures.Count} cases");
    return failures.Count == 0 ? 0 : 1;
});

var target = new Option<string>("--target") { Description = "The target of the case.", Required = true };
var caseSeed = new Option<string>("--case-seed") { Description = "The case's seed as printed (0x...).", Required = true };
var replay = new Command("replay", "Rerun one case and print its corruption and outcome.") { target, caseSeed };
replay.SetAction(p =>
{
    string text = p.GetValue(caseSeed)!;
    ulong value = ulong.Parse(text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text[2..] : text, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    (FuzzOutcome outcome, string corruption, Exception? error) = new FuzzRunner().Replay(p.GetValue(target)!, value);
    Console.WriteLine($"corruption: {corruption}\noutcome: {outcome}\n{error}");
    return outcome is FuzzOutcome.Accepted or FuzzOutcome.Refused ? 0 : 1;
});

var model = new Option<string?>("--model") { Description = "A checkpoint folder; default: the repository's models/default." };
var repeats = new Option<int>("--repeats") { Description = "Loads and checks timed (medians).", DefaultValueFactory = _ => 10 };
var loadCost = new Command("load-cost", "Time TargetModel.Load and the non-finite weight check alone on a checkpoint.") { model, repeats };
loadCost.SetAction(p => LoadCost.Run(p.GetValue(model) ?? Path.Combine(RepoRoot.Find(), "models", "default"), p.GetValue(repeats), Console.Out));

var root = new RootCommand("Seeded fuzzing of SpecDecode's file parsers, and the cost of the load-time weight check.") { run, replay, loadCost };
return root.Parse(args).Invoke();
