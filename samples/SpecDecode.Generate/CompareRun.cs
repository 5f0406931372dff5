using System.Diagnostics;
using System.Globalization;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using Spectre.Console;

namespace SpecDecode.Generate;

/// <summary><c>--compare</c>: plain decoding and speculative decoding of the same prompt with the same sampling, on the
/// same loaded model, one after the other; prints both times, the speedup and whether the outputs matched.</summary>
public static class CompareRun
{
    /// <summary>Runs both and returns the exit code: <see cref="ToolExitCodes.Failed"/> when greedy outputs differ (a
    /// failed check).</summary>
    public static async Task<int> RunAsync(GeneratorSettings settings, LoadedTarget target, IAnsiConsole console, CancellationToken cancellationToken)
    {
        if (settings.Draft == DraftKind.None)
        {
            throw new GeneratorException("--compare compares plain decoding with a drafter: choose one with --draft (suffix, prompt-lookup, draft-model or hybrid).");
        }
        GenerationRequest request = GeneratorRun.Request(settings, settings.Prompt, conversationId: null);

        GenerationResult plain;
        TimeSpan plainTime;
        using (SpeculativeEngine engine = ModelLoading.CreateEngine(target, null, settings, console))
        {
            // Warm-up (not timed): the first forwards pay for JIT and kernel selection.
            await engine.GenerateAsync(request with { MaxNewTokens = 2, StopStrings = [] }, cancellationToken).ConfigureAwait(false);
            console.Write(new Rule("Plain decoding").LeftJustified());
            var clock = Stopwatch.StartNew();
            plain = await StreamingOutput.StreamAsync(console, engine, request, cancellationToken).ConfigureAwait(false);
            plainTime = clock.Elapsed;
        }

        GenerationResult speculative;
        TimeSpan speculativeTime;
        using (LoadedDrafter drafter = ModelLoading.CreateDrafter(settings.Draft, settings, target, console))
        using (SpeculativeEngine engine = ModelLoading.CreateEngine(target, drafter.Drafter, settings, console))
        {
            console.Write(new Rule($"Speculative decoding ({settings.DraftName})").LeftJustified());
            var clock = Stopwatch.StartNew();
            speculative = await StreamingOutput.StreamAsync(console, engine, request, cancellationToken).ConfigureAwait(false);
            speculativeTime = clock.Elapsed;
        }

        Summary.Write(console, "Speculative decoding", speculative.Statistics, settings.DraftName);
        bool greedy = settings.Sampling is null;
        bool identical = plain.TokenIds.SequenceEqual(speculative.TokenIds) && plain.Text == speculative.Text
            && plain.FinishReason == speculative.FinishReason;
        var grid = new Grid().AddColumn(new GridColumn().PadRight(2)).AddColumn();
        grid.AddRow(new Text("Plain"), new Text(Timing(plain, plainTime)));
        grid.AddRow(new Text("Speculative"), new Text(Timing(speculative, speculativeTime)));
        double speedup = speculativeTime.TotalSeconds > 0 ? plainTime.TotalSeconds / speculativeTime.TotalSeconds : 0;
        grid.AddRow(new Text("Speedup"), new Text(speedup.ToString("F2", CultureInfo.InvariantCulture) + "x"));
        grid.AddRow(new Text("Outputs"), new Text(Verdict(greedy, identical, plain, speculative)));
        console.Write(new Rule("Plain vs speculative").LeftJustified());
        console.Write(grid);
        if (greedy && !identical)
        {
            throw new ToolCheckFailedException("--compare: greedy speculative decoding differs from plain decoding (the Outputs line above says where); this is a bug, please report it with the command line.");
        }
        return ToolExitCodes.Ok;
    }

    /// <summary>Time, tokens and steps of one run. The token count is the output's (<see cref="GenerationResult.TokenIds"/>,
    /// the figure the verdict compares); a stop token the model emitted to end its turn is named beside it, since it was
    /// generated (and is in tokens/s) but is not part of the output.</summary>
    private static string Timing(GenerationResult r, TimeSpan time)
    {
        long stops = r.Statistics.GeneratedTokens - r.TokenIds.Count;
        string tokens = stops switch
        {
            <= 0 => $"{r.TokenIds.Count} tokens",
            1 => $"{r.TokenIds.Count} tokens + the stop token",
            _ => $"{r.TokenIds.Count} tokens + {stops} past a stop string",
        };
        return string.Create(CultureInfo.InvariantCulture,
            $"{time.TotalSeconds:F2} s, {tokens}, {r.Statistics.GeneratedTokens / Math.Max(time.TotalSeconds, 1e-9):F1} tokens/s, {r.Statistics.Steps} steps");
    }

    private static string Verdict(bool greedy, bool identical, GenerationResult plain, GenerationResult speculative)
    {
        if (identical)
        {
            return greedy
                ? $"identical ({plain.TokenIds.Count} tokens and the same finish: {FinishText(plain.FinishReason)}; greedy speculative decoding must reproduce plain decoding)"
                : "identical (with sampling they are expected to differ; both follow the model's distribution)";
        }
        int first = Enumerable.Range(0, Math.Min(plain.TokenIds.Count, speculative.TokenIds.Count))
            .FirstOrDefault(i => plain.TokenIds[i] != speculative.TokenIds[i], Math.Min(plain.TokenIds.Count, speculative.TokenIds.Count));
        return greedy
            ? $"DIFFERENT from token {first} on: greedy outputs must match, so this is a bug; please report it with the command line"
            : $"differ from token {first} on, as expected with sampling (temperature > 0): both follow the model's distribution but draw differently";
    }

    /// <summary>A finish reason in words.</summary>
    public static string FinishText(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "a stop token or string",
        FinishReason.Length => "--max-new-tokens reached",
        FinishReason.ContextFull => "the context is full",
        _ => reason.ToString(),
    };
}
