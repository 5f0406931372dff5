using System.CommandLine;
using System.Globalization;
using SpecDecode.CommandLine;
using Spectre.Console;
using TorchSharp;

namespace SpecDecode.Check;

/// <summary>The command line of the checkpoint checker (System.CommandLine) and what it prints.</summary>
public static class CheckCommand
{
    /// <summary>Exit code when every check passes.</summary>
    public const int Passed = 0;

    /// <summary>Exit code when a logits error is past the tolerance or a decoding run differs from its reference.</summary>
    public const int Failed = 1;

    /// <summary>Exit code on bad input: a missing folder or file, a malformed reference, an unusable device.</summary>
    public const int BadInput = 2;

    /// <summary>Parses and runs the command line by the tools' convention (<see cref="ToolRunner"/>): errors as one line
    /// on <paramref name="error"/>; <see cref="BadInput"/> for a parse error (no folder, an unknown option or value) or
    /// bad input, <see cref="Failed"/> when a check fails.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="output">Where help goes (null: the console); the tables go to the console.</param>
    /// <param name="error">Where error lines go (null: stderr).</param>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null) =>
        ToolRunner.Run(Build(), args, output, error, e => e is CheckInputException ? BadInput : null);

    /// <summary>Builds the root command.</summary>
    public static RootCommand Build()
    {
        var folder = new Argument<string>("folder")
        {
            Description = "Checkpoint folder: config.json, model.safetensors (or an index and shards), expected.json and expected.safetensors " +
                "as in shared/fixtures/hf-tiny.",
        };
        var device = ToolOptions.Choice("--device", "cpu or cuda. Default: cuda when SPECDECODE_LIBTORCH names a CUDA PyTorch's torch/lib and a GPU is visible, else cpu.", null, ["cpu", "cuda"]);
        var dtype = ToolOptions.Choice("--dtype", "float32, bfloat16 or float16. Default: float32 on the CPU, the checkpoint's dtype on CUDA.", null, ["float32", "bfloat16", "float16"]);
        var tolerance = ToolOptions.OptionalDouble("--tolerance", "Largest relative error of the logits (max |ours - theirs| / max |theirs|). Default: 1e-4 for a float32 checkpoint computed in float32, else 2e-2.", NumberRange.Above(0));
        var json = new Option<string?>("--json") { Description = "Write the results to this JSON file." };
        var seed = ToolOptions.Int("--seed", "Seed of the random draft trees.", new CheckSettings { Folder = "." }.Seed, 0);

        var root = new RootCommand("Checks a Hugging Face checkpoint against transformers' reference logits and greedy continuation: prompt, tree " +
            "and second-prompt logits, and plain and speculative (tree) greedy decoding. Exit code 0: all pass; 1: past the tolerance or " +
            "a continuation differs; 2: bad input.")
        {
            folder, device, dtype, tolerance, json, seed,
        };
        root.SetAction(parse =>
        {
            if (Console.IsOutputRedirected)
            {
                AnsiConsole.Profile.Width = 200;
            }
            var settings = new CheckSettings
            {
                Folder = parse.GetValue(folder)!,
                Device = parse.GetValue(device) switch
                {
                    "cpu" => DeviceType.CPU,
                    "cuda" => DeviceType.CUDA,
                    _ => (DeviceType?)null,
                },
                DType = parse.GetValue(dtype) is { } d ? CheckpointChecker.DTypeOf(d) : null,
                Tolerance = parse.GetValue(tolerance),
                Seed = parse.GetValue(seed),
            };
            return Execute(settings, parse.GetValue(json), AnsiConsole.Console);
        });
        return root;
    }

    /// <summary>Runs the checks, prints the tables and the verdict, and writes the JSON when asked.</summary>
    /// <returns><see cref="Passed"/> or <see cref="Failed"/>.</returns>
    /// <exception cref="CheckInputException">A missing folder or file, a malformed reference, an unusable device.</exception>
    /// <exception cref="ToolUsageException">The JSON file cannot be written.</exception>
    public static int Execute(CheckSettings settings, string? jsonPath, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(console);
        CheckReport report = CheckpointChecker.Run(settings, message => console.MarkupLine($"[grey]{Markup.Escape(message)}[/]"));
        Print(report, console);
        if (jsonPath is not null)
        {
            try
            {
                report.Write(jsonPath);
                console.MarkupLine($"results: {Markup.Escape(Path.GetFullPath(jsonPath))}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ToolUsageException($"--json: cannot write {jsonPath}: {e.Message}", e);
            }
        }
        return report.Passed ? Passed : Failed;
    }

    /// <summary>The logits table, the decoding table and a one-line verdict.</summary>
    public static void Print(CheckReport report, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(console);
        var c = CultureInfo.InvariantCulture;
        console.MarkupLine(Markup.Escape(string.Create(c,
            $"{report.Folder}: {report.Architecture}, checkpoint {report.CheckpointDType}, computed in {report.DType} on {report.Device} (libtorch {report.LibTorch}), tolerance {report.Tolerance:G3}")));

        var logits = new Table().AddColumns("logits", "rows", "max abs error", "max abs ref", "relative error", "argmax agree", "");
        foreach (LogitsCheck l in report.Logits)
        {
            logits.AddRow(Markup.Escape(l.Name), l.Rows.ToString(c), l.MaxAbsError.ToString("0.00E+00", c), l.MaxAbsReference.ToString("F3", c),
                l.RelativeError.ToString("0.00E+00", c), $"{l.ArgmaxAgreement}/{l.Rows}", l.Passed ? "[green]pass[/]" : "[red]FAIL[/]");
        }
        console.Write(logits);

        var generation = new Table().AddColumns("greedy decoding", "reference", "tokens", "steps", "accepted", "first mismatch: expected vs ours", "");
        foreach (GenerationCheck g in report.Generation)
        {
            string verdict = g.Reference.EndsWith("(info)", StringComparison.Ordinal)
                ? (g.FirstMismatch < 0 ? "[grey]same[/]" : g.NearTie ? "[yellow]differs at a near tie[/]" : "[yellow]differs[/]")
                : g.FirstMismatch < 0 ? "[green]pass[/]"
                : g.NearTie ? "[yellow]pass: near tie[/]"
                : "[red]FAIL[/]";
            generation.AddRow(Markup.Escape(g.Name), Markup.Escape(g.Reference), g.Tokens.ToString(c), g.Steps.ToString(c),
                g.AcceptedDraftTokens.ToString(c), g.FirstMismatch < 0 ? "-" : Mismatch(g), verdict);
        }
        console.Write(generation);

        int failed = report.Logits.Count(l => !l.Passed) + report.Generation.Count(g => !g.Passed);
        console.MarkupLine(report.Passed
            ? string.Create(c, $"[green]PASS[/]: {report.Logits.Count} logits checks under {report.Tolerance:G3}, {report.Generation.Count(g => g.Passed)} decoding runs reproduce their reference{(report.Generation.Any(g => g.NearTie) ? " up to a near tie" : "")} ({report.Seconds:F1} s)")
            : string.Create(c, $"[red]FAIL[/]: {failed} check(s) failed ({report.Seconds:F1} s)"));
    }

    private static string Mismatch(GenerationCheck g) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{g.FirstMismatch}: {g.Expected[g.FirstMismatch]} vs {g.Actual[g.FirstMismatch]} (margin {g.TieMargin:0.0E+00})");
}
