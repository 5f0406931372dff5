using System.Diagnostics;
using Microsoft.ML.Tokenizers;
using SpecDecode.Suffix;
using SpecDecode.Tree;

namespace SpecDecode.EngineBench;

/// <summary>One configuration's figures: the engine serving the calls at one batch size with one drafter setting.</summary>
internal sealed record VariantResult(
    string Variant, int Batch, int Calls, long Tokens, double Seconds, double TokensPerSecond, long RequestSteps, long Batches,
    double TokensPerStep, double AcceptanceRate, double DraftTokensPerStep, double DraftMsPerBatch, double VerifyMsPerBatch,
    double HostMsPerBatch, double MeanBatch, int Mismatches, int Gen0Collections = 0, int Gen2Collections = 0,
    double MeanContext = 0, double FloorTokensPerSecond = 0, int GraphsCaptured = 0,
    double FullBatchTokensPerSecond = 0, double FullBatchShare = 0, int Round = 1)
{
    /// <summary>The variant as the report names it: with its round after the first (<c>--rounds</c>).</summary>
    public string Label => Round > 1 ? $"{Variant}, round {Round}" : Variant;
}

/// <summary>A drafter setting: none (plain decoding), the suffix drafter verified as proposed or with adaptive pruning,
/// a draft model (random weights: its drafts are never right, so adaptive speculation must switch it off), or the hybrid
/// of both.</summary>
internal sealed record Variant(string Name, bool Drafts, bool Adaptive, bool Suffix, bool Model)
{
    public static Variant Parse(string name) => name switch
    {
        "plain" => new Variant(name, false, false, false, false),
        "suffix" => new Variant(name, true, false, true, false),
        "suffix-adaptive" => new Variant(name, true, true, true, false),
        "draft-adaptive" => new Variant(name, true, true, false, true),
        "hybrid-adaptive" => new Variant(name, true, true, true, true),
        _ => throw new ArgumentException($"--variants: unknown variant '{name}'; give a comma list of plain, suffix, suffix-adaptive, draft-adaptive, hybrid-adaptive."),
    };

    public static IDrafter NewDrafter() => new SuffixDrafter(new SuffixDrafterOptions());
}

internal static class EngineRunner
{
    /// <summary>The engine options of a variant's run: the recorded answers force the tokens, no end-of-sequence token
    /// stops a call early, and prefill is skipped (its cost is measured elsewhere).</summary>
    internal static SpeculativeEngineOptions EngineOptions(Variant variant, int batch, int budget, VerificationCostModel? cost) => new()
    {
        MaxBatch = batch,
        MaxDraftTokens = budget,
        AdaptiveSpeculation = variant.Adaptive,
        CostModel = variant.Adaptive ? cost : null,
        EndOfSequenceTokenIds = [],
        SkipPrefillForBenchmark = true,
        // No prefill forward runs, so nothing should pace admission: with the default budget of 2,048 tokens an
        // iteration admitted about 0.4 calls of the mean 4.9k-token prompt, and the batch never filled (mean batch
        // 26.9 plain and 19.5 speculative of 32 on the H100 in the seventh session; never 32 with speculation).
        StepTokenBudget = int.MaxValue,
    };

    public static VariantResult Run(TargetModel model, Tokenizer tokenizer, Workload workload, IReadOnlyList<TraceCallTokens> calls,
        Variant variant, int batch, int budget, VerificationCostModel? cost, DraftModelDrafter? draftModel, float temperature = 0)
    {
        using IDrafter? suffix = variant.Suffix ? Variant.NewDrafter() : null;
        if (suffix is not null)
        {
            workload.Teach(suffix);
        }
        if (variant.Model && draftModel is null)
        {
            throw new ArgumentException($"--variants {variant.Name} needs --draft-config <a draft model's config.json>.");
        }
        using HybridDrafter? hybrid = variant.Suffix && variant.Model ? new HybridDrafter(suffix!, draftModel!) : null;
        IDrafter? drafter = hybrid ?? suffix ?? (variant.Model ? draftModel : null);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter, EngineOptions(variant, batch, budget, cost));
        int gen0 = GC.CollectionCount(0), gen2 = GC.CollectionCount(2);
        // Graphs are the model's and outlive the variant: a variant that runs after another replays the shapes that one
        // captured, and spends less of its time capturing (the hybrid in the fifth session's H100 run: 0 captures, a
        // verify step 18 % shorter than the suffix run before it). The count shows that bias in the report.
        long graphs = model.CudaGraphChurn.Added;
        using var fullBatch = new FullBatchThroughput(engine, batch);
        long start = Stopwatch.GetTimestamp();
        // Sampled requests (temperature > 0) run the speculative sampling, then take the recorded path: the same acceptance
        // as greedy, the sampled step's cost. Each request has its own seeded stream.
        Task<GenerationResult>[] tasks = calls.Select((c, i) => engine.GenerateForcedAsync(
            new GenerationRequest
            {
                PromptTokens = c.Prompt, MaxNewTokens = c.Response.Length, StopTokenIds = [], ConversationId = c.TaskId,
                Sampling = temperature > 0 ? new SamplingOptions { Temperature = temperature, Seed = i } : null,
            },
            c.Response)).ToArray();
        GenerationResult[] results = Task.WhenAll(tasks).GetAwaiter().GetResult();
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;

        int mismatches = 0;
        for (int i = 0; i < calls.Count; i++)
        {
            if (!results[i].TokenIds.SequenceEqual(calls[i].Response))
            {
                mismatches++;
            }
        }
        EngineStatistics s = engine.Statistics;
        if (hybrid is not null)
        {
            Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"  hybrid: {hybrid.CheapDrafts} cheap drafts, {hybrid.ModelDrafts} model drafts, {hybrid.ModelDraftsSkippedForCost} skipped for cost, {hybrid.ModelProbes} probes (model proposal {hybrid.ModelDraftSeconds * 1e3:F1} ms, step {hybrid.StepSeconds * 1e3:F1} ms)"));
        }
        GenerationStatistics t = s.Totals;
        long tokens = results.Sum(r => (long)r.TokenIds.Count);
        double perBatch(TimeSpan x) => s.Batches == 0 ? 0 : x.TotalMilliseconds / s.Batches;
        string name = temperature > 0 ? $"{variant.Name}@T{temperature.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : variant.Name;
        return new VariantResult(name, batch, calls.Count, tokens, seconds, tokens / seconds, t.Steps, s.Batches,
            t.Steps == 0 ? 0 : (double)tokens / t.Steps, t.AcceptanceRate, t.Steps == 0 ? 0 : (double)t.DraftTokens / t.Steps,
            perBatch(t.DraftingTime), perBatch(t.VerificationTime), perBatch(s.HostTime),
            s.Batches == 0 ? 0 : (double)t.Steps / s.Batches, mismatches,
            GC.CollectionCount(0) - gen0, GC.CollectionCount(2) - gen2,
            GraphsCaptured: (int)(model.CudaGraphChurn.Added - graphs),
            FullBatchTokensPerSecond: fullBatch.TokensPerSecond,
            FullBatchShare: fullBatch.AllStepSeconds > 0 ? fullBatch.Seconds / fullBatch.AllStepSeconds : 0);
    }
}
