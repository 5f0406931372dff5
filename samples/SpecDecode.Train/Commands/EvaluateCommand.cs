using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text;
using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Suffix;
using SpecDecode.Tokenization;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Train.Commands;

/// <summary>One drafter's figures over the held-out calls.</summary>
public sealed record DrafterEvaluation(
    string Drafter, bool Adaptive, int Calls, long GeneratedTokens, long Steps, long Drafts, long DraftTokens, long AcceptedTokens,
    double TokensPerStep, double AcceptanceRate, double MeanAcceptanceLength, IReadOnlyList<long> AcceptedPerPosition, double Seconds,
    double TokensPerSecond, int OutputsDifferingFromPlain);

/// <summary>The evaluate command's report.</summary>
public sealed record EvaluationReport(
    string Date, string Device, string DType, string Model, string DraftModel, int Calls, int HeldOutTrajectories, double MeanPromptTokens,
    int MaxNewTokens, int Budget, IReadOnlyList<DrafterEvaluation> Drafters);

/// <summary>
/// <c>evaluate</c>: greedy generation with the trained pair on calls of the held-out trajectories (the prompt is the
/// conversation before an assistant turn, cut to its last tokens so that it fits the model's positions), once per
/// drafter: none (plain), suffix, draft model, hybrid. Reports tokens per step, acceptance, acceptance by position and
/// tokens/s, and checks every speculative output against plain decoding's.
/// </summary>
internal static class EvaluateCommand
{
    public static Command Build()
    {
        var traces = new Option<string>("--traces") { Description = "The SWE-bench trajectories (gzip JSONL); the last 50 are the held-out set.", DefaultValueFactory = _ => TraceDefaults.Traces };
        var model = new Option<string>("--model") { Description = "The target's checkpoint folder.", DefaultValueFactory = _ => "models/default" };
        var draft = new Option<string>("--draft-model") { Description = "The draft model's checkpoint folder.", DefaultValueFactory = _ => "models/default-draft" };
        var perTrajectory = ToolOptions.Int("--calls-per-trajectory", "Assistant turns taken per held-out trajectory, evenly spaced.", 4, 1);
        var maxNew = ToolOptions.Int("--max-new", "Tokens generated per call at most (the end-of-turn token ends a call earlier).", 128, 1);
        var budget = ToolOptions.Int("--budget", "Draft tokens per step.", 32, 0);
        var drafters = new Option<string>("--drafters") { Description = "Comma list of plain, suffix, draft-model, hybrid.", DefaultValueFactory = _ => "plain,suffix,draft-model,hybrid" };
        var adaptive = new Option<bool>("--adaptive") { Description = "Adaptive speculation (default off: every draft is verified as proposed, which measures acceptance)." };
        var device = ToolOptions.Choice("--device", "cpu or cuda (default: cuda when available).", null, ["cpu", "cuda"]);
        var dtype = ToolOptions.Choice("--dtype", "float32 or bfloat16 (default: bfloat16 on CUDA, float32 on the CPU). Greedy speculative output equals plain output exactly only where the tree forward and the one-token forward round alike: float32.", null, ["float32", "bfloat16"]);
        var output = new Option<string>("--out") { Description = "The JSON report (a markdown table is printed).", DefaultValueFactory = _ => "bench/out/default-model-acceptance.json" };
        var command = new Command("evaluate", "Acceptance of the drafters with the trained pair on the held-out trajectories.")
        {
            traces, model, draft, perTrajectory, maxNew, budget, drafters, adaptive, device, dtype, output,
        };
        command.SetAction(p => Run(p.GetValue(traces)!, p.GetValue(model)!, p.GetValue(draft)!, p.GetValue(perTrajectory), p.GetValue(maxNew),
            p.GetValue(budget), p.GetValue(drafters)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
            p.GetValue(adaptive), p.GetValue(device), p.GetValue(dtype), p.GetValue(output)!));
        return command;
    }

    private static int Run(string traces, string modelFolder, string draftFolder, int perTrajectory, int maxNew, int budget, string[] drafterNames,
        bool adaptive, string? deviceName, string? dtypeName, string output)
    {
        foreach (string name in drafterNames)
        {
            if (name is not ("plain" or "suffix" or "draft-model" or "hybrid"))
            {
                throw new ArgumentException($"--drafters: unknown drafter '{name}' (plain, suffix, draft-model, hybrid).");
            }
        }
        (Device device, string libtorch) = DeviceOption.Resolve(deviceName);
        ScalarType dtype = dtypeName switch
        {
            null => device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            _ => throw new ArgumentException($"--dtype {dtypeName}: float32 or bfloat16."),
        };
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = CheckpointTokenizer.Load(modelFolder);
        ModelConfig config = ModelConfig.Load(modelFolder);
        int positions = config.MaxPositionEmbeddings;
        int promptLimit = positions - maxNew - budget - 2;
        List<int[]> prompts = HeldOutPrompts(traces, tokenizer, perTrajectory, promptLimit);
        Console.WriteLine($"libtorch {libtorch}, device {device} ({dtype}); {prompts.Count} held-out calls, mean prompt {prompts.Average(p => p.Length):F0} tokens (cut to {promptLimit})");

        var options = new TargetModelOptions { Device = device, DType = dtype, MaxBatch = 1, MaxContext = positions };
        using TargetModel target = TargetModel.Load(modelFolder, options);
        var results = new List<DrafterEvaluation>();
        IReadOnlyList<int>[]? plainOutputs = null;
        foreach (string name in drafterNames.OrderBy(n => n == "plain" ? 0 : 1))
        {
            using DraftModelDrafter? draftModel = name is "draft-model" or "hybrid"
                ? DraftModelDrafter.Load(draftFolder, new DraftModelOptions { MaxRequests = 1, MaxContext = positions + 64, Device = device, DType = dtype })
                : null;
            using IDrafter? suffix = name is "suffix" or "hybrid" ? new SuffixDrafter() : null;
            using HybridDrafter? hybrid = name == "hybrid" ? new HybridDrafter(suffix!, draftModel!) : null;
            IDrafter? drafter = hybrid ?? suffix ?? draftModel;
            using SpeculativeEngine engine = SpeculativeEngine.Create(target, tokenizer, drafter, new SpeculativeEngineOptions
            {
                MaxBatch = 1,
                MaxDraftTokens = drafter is null ? 0 : budget,
                AdaptiveSpeculation = adaptive && drafter is not null,
            });
            var outputs = new IReadOnlyList<int>[prompts.Count];
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < prompts.Count; i++)
            {
                GenerationResult result = engine.GenerateAsync(new GenerationRequest { PromptTokens = prompts[i], MaxNewTokens = maxNew })
                    .GetAwaiter().GetResult();
                outputs[i] = result.TokenIds;
            }
            double seconds = watch.Elapsed.TotalSeconds;
            plainOutputs ??= name == "plain" ? outputs : null;
            int differing = plainOutputs is null ? -1 : outputs.Zip(plainOutputs).Count(o => !o.First.SequenceEqual(o.Second));
            GenerationStatistics t = engine.Statistics.Totals;
            var r = new DrafterEvaluation(name, adaptive && drafter is not null, prompts.Count, t.GeneratedTokens, t.Steps, t.Drafts, t.DraftTokens, t.AcceptedTokens,
                t.MeanTokensPerStep, t.AcceptanceRate, t.MeanAcceptanceLength, t.AcceptedPerPosition, seconds, t.GeneratedTokens / seconds, differing);
            results.Add(r);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name}: {r.TokensPerStep:F3} tokens/step, acceptance {r.AcceptanceRate:P1}, {r.TokensPerSecond:F1} tokens/s, {r.GeneratedTokens} tokens, outputs differing from plain: {differing}"));
        }

        var report = new EvaluationReport(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
            device.type == DeviceType.CUDA ? DeviceOption.CudaLabel : $"cpu ({Environment.ProcessorCount} cores)",
            dtype.ToString(), modelFolder, draftFolder, prompts.Count, 50, prompts.Average(p => p.Length), maxNew, budget, results);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        File.WriteAllText(output, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine(Markdown(report));
        return results.Any(r => r.OutputsDifferingFromPlain > 0) ? 1 : 0;
    }

    /// <summary>Prompts of the held-out trajectories: the conversation before each chosen assistant turn plus the
    /// assistant header, keeping the last <paramref name="limit"/> tokens.</summary>
    private static List<int[]> HeldOutPrompts(string traces, Microsoft.ML.Tokenizers.Tokenizer tokenizer, int perTrajectory, int limit)
    {
        List<TraceMessage[]> conversations = TraceTexts.ReadConversations(traces);
        var prompts = new List<int[]>();
        foreach (TraceMessage[] messages in conversations.Skip(Math.Max(0, conversations.Count - 50)))
        {
            int[] turns = Enumerable.Range(0, messages.Length).Where(i => messages[i].Role == "assistant").ToArray();
            int take = Math.Min(perTrajectory, turns.Length);
            for (int j = 0; j < take; j++)
            {
                int turn = turns[(int)((j + 0.5) * turns.Length / take)];
                string text = TraceTexts.Format(messages.Take(turn)) + "<|im_start|>assistant\n";
                IReadOnlyList<int> ids = tokenizer.EncodeToIds(text);
                prompts.Add(ids.Skip(Math.Max(0, ids.Count - limit)).ToArray());
            }
        }
        return prompts;
    }

    internal static string Markdown(EvaluationReport report)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Held-out acceptance, {report.Model} with {report.DraftModel}, {report.Device}, {report.DType}, {report.Date}: {report.Calls} calls of the last {report.HeldOutTrajectories} trajectories, mean prompt {report.MeanPromptTokens:F0} tokens, up to {report.MaxNewTokens} new tokens, budget {report.Budget}.");
        md.AppendLine();
        md.AppendLine("| drafter | adaptive | tokens/step | acceptance | mean acceptance length | accepted at positions 1-4 | tokens/s | speedup vs plain | outputs differing from plain |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        DrafterEvaluation? plain = report.Drafters.FirstOrDefault(d => d.Drafter == "plain");
        foreach (DrafterEvaluation d in report.Drafters)
        {
            string positions = string.Join(" / ", d.AcceptedPerPosition.Take(4).Select(a => d.Drafts == 0 ? "-" : ((double)a / d.Drafts).ToString("P0", CultureInfo.InvariantCulture)));
            string speedup = plain is null ? "" : (d.TokensPerSecond / plain.TokensPerSecond).ToString("F2", CultureInfo.InvariantCulture) + "x";
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {d.Drafter} | {(d.Adaptive ? "yes" : "no")} | {d.TokensPerStep:F3} | {d.AcceptanceRate:P1} | {d.MeanAcceptanceLength:F2} | {positions} | {d.TokensPerSecond:F1} | {speedup} | {(d.OutputsDifferingFromPlain < 0 ? "not checked" : d.OutputsDifferingFromPlain.ToString(CultureInfo.InvariantCulture))} |"));
        }
        return md.ToString();
    }
}
