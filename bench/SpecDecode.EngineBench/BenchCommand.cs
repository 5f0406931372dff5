using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text;
using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.EngineBench;

/// <summary>The results file: the set-up, the model-free reference and every configuration's figures.</summary>
internal sealed record BenchReport(
    string Date, string Device, string Libtorch, string ScriptExecutor, string Model, string? DraftModel, int MaxResponse, string DType, int MaxContext, int Budget, int WarmupTrajectories,
    int WarmupCalls, int SkippedTooLong, double CostModelSeconds, IReadOnlyList<ReferencePoint> ModelFree, IReadOnlyList<VariantResult> Results)
{
    /// <summary>The last round's results (<c>--rounds</c>): the graphs every variant needs were captured in the rounds
    /// before, as in a server that has run a while. All results when there was one round. What the plots draw.</summary>
    public IReadOnlyList<VariantResult> LastRound
    {
        get
        {
            int last = Results.Count == 0 ? 1 : Results.Max(r => r.Round);
            return Results.Where(r => r.Round == last).ToArray();
        }
    }
}

/// <summary>The model-free replay's figure for the calls one batch size served.</summary>
internal sealed record ReferencePoint(int Batch, int Calls, long Tokens, double TokensPerStep, double AcceptanceRate, double MeanPromptTokens);

internal static class BenchCommand
{
    public static Command Build()
    {
        var traces = new Option<string>("--traces") { Description = "The SWE-bench traces (gzip JSONL).", DefaultValueFactory = _ => "../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz" };
        var config = new Option<string>("--config") { Description = "The target's config.json (weights are random).", DefaultValueFactory = _ => "../shared/fixtures/configs/llama-3.1-8b.config.json" };
        var warmup = ToolOptions.Int("--warmup-trajectories", "Trajectories that only teach the drafter, before the evaluated calls.", 40, 0);
        var calls = new Option<string>("--calls") { Description = "Evaluated calls per batch size, e.g. 1=16,8=48,32=96 (the first N of the selection).", DefaultValueFactory = _ => "1=16,8=48,32=96" };
        var budget = ToolOptions.Int("--budget", "Draft tokens per request per step.", 32, 0);
        var maxContext = ToolOptions.Int("--max-context", "KV-cache tokens per slot; calls whose prompt + response do not fit are skipped.", 8192, 1);
        var variants = new Option<string>("--variants") { Description = "plain, suffix, suffix-adaptive (comma list).", DefaultValueFactory = _ => "plain,suffix,suffix-adaptive" };
        var draftConfig = new Option<string?>("--draft-config") { Description = "A draft model's config.json (random weights) for the draft-adaptive and hybrid-adaptive variants." };
        var maxResponse = ToolOptions.Int("--max-response", "Replay at most this many tokens of each response (0: all), so that batches stay full.", 0, 0);
        var dtype = ToolOptions.Choice("--dtype", "bfloat16, float16 or float32.", "bfloat16", ["bfloat16", "float16", "float32"]);
        var cudaGraphs = new Option<bool>("--cuda-graphs") { Description = "Plain single-sequence steps as CUDA graphs (the decode-step kernels where they apply): TargetModelOptions.CudaGraphs." };
        var output = new Option<string>("--out") { Description = "Folder for engine-bench.json and engine-bench.md.", DefaultValueFactory = _ => "bench/out" };
        var temperatures = new Option<string>("--temperatures")
        {
            Description = "Sampling temperatures (comma list; 0 = greedy): each variant runs at each, sampled runs at the recorded acceptance.",
            DefaultValueFactory = _ => "0",
        };
        var tensorParallel = new Option<int>("--tensor-parallel") { Description = "Ranks the target is split over (docs/tensor-parallel.md); 1: one device.", DefaultValueFactory = _ => 1 };
        var transport = new Option<string>("--transport") { Description = "With --tensor-parallel: nccl (one GPU per rank) or in-process (simulated ranks).", DefaultValueFactory = _ => "nccl" };
        var rounds = ToolOptions.Int("--rounds",
            "Times each batch size's variants run, one after another (each round with fresh drafters, so acceptance is the same). " +
            "Later rounds replay the CUDA graphs the first captured: round 1 is a fresh process, the last a server that has run a while.", 1, 1);
        var keyBucket = ToolOptions.Int("--key-bucket",
            "Keys per CUDA graph bucket: a graph is captured per step shape and bucket (coarser: fewer captures in a run, more idle attention blocks a step).",
            new TargetModelOptions().CudaGraphKeyBucket, 1);
        var command = new Command("run", "Replay the traces through the engine and plain decoding; write JSON and markdown.")
        {
            traces, config, warmup, calls, budget, maxContext, variants, dtype, output, draftConfig, maxResponse, cudaGraphs, tensorParallel, transport,
            temperatures, rounds, keyBucket,
        };
        command.SetAction(p => Run(p.GetValue(traces)!, p.GetValue(config)!, p.GetValue(warmup), ParseCalls(p.GetValue(calls)!),
            p.GetValue(budget), p.GetValue(maxContext), p.GetValue(variants)!.Split(',', StringSplitOptions.TrimEntries).Select(Variant.Parse).ToArray(),
            p.GetValue(dtype)!, p.GetValue(output)!, p.GetValue(draftConfig), p.GetValue(maxResponse), p.GetValue(cudaGraphs),
            TensorParallel(p.GetValue(tensorParallel), p.GetValue(transport)!), ParseTemperatures(p.GetValue(temperatures)!), p.GetValue(rounds),
            p.GetValue(keyBucket)));
        return command;
    }

    internal static SortedDictionary<int, int> ParseCalls(string text)
    {
        var result = new SortedDictionary<int, int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] kv = part.Split('=');
            if (kv.Length != 2
                || !int.TryParse(kv[0], NumberStyles.None, CultureInfo.InvariantCulture, out int batch) || batch < 1
                || !int.TryParse(kv[1], NumberStyles.None, CultureInfo.InvariantCulture, out int calls) || calls < 1)
            {
                throw new ToolUsageException($"--calls: '{part}' is not a batch=calls pair of positive whole numbers; write e.g. --calls 1=16,8=48.");
            }
            result[batch] = calls;
        }
        return result.Count > 0 ? result : throw new ToolUsageException("--calls: no batch=calls pair given; write e.g. --calls 1=16,8=48.");
    }

    /// <summary>The --temperatures list: each a number from 0 (greedy) to 2.</summary>
    /// <exception cref="ToolUsageException">A value is not such a number, or the list is empty.</exception>
    internal static float[] ParseTemperatures(string text)
    {
        var result = new List<float>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!float.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out float t) || !(t >= 0 && t <= 2))
            {
                throw new ToolUsageException($"--temperatures: '{part}' is not a temperature from 0 (greedy) to 2; write e.g. --temperatures 0,0.7.");
            }
            result.Add(t);
        }
        return result.Count > 0 ? [.. result] : throw new ToolUsageException("--temperatures: no temperature given; write e.g. --temperatures 0,0.7.");
    }

    /// <summary>The --tensor-parallel and --transport options, or null for one device.</summary>
    private static TensorParallelOptions? TensorParallel(int worldSize, string transport) => worldSize <= 1 ? null : new TensorParallelOptions
    {
        WorldSize = worldSize,
        Transport = transport switch
        {
            "nccl" => TensorParallelTransport.Nccl,
            "in-process" => TensorParallelTransport.InProcess,
            _ => throw new ArgumentException($"--transport {transport}: nccl or in-process."),
        },
    };

    private static int Run(string traces, string configPath, int warmupTrajectories, SortedDictionary<int, int> callsPerBatch, int budget,
        int maxContext, Variant[] variants, string dtypeName, string output, string? draftConfigPath, int maxResponse, bool cudaGraphs = false,
        TensorParallelOptions? tensorParallel = null, float[]? temperatures = null, int rounds = 1, int keyBucket = 1024)
    {
        temperatures ??= [0];
        string libtorch = TorchRuntime.EnsureLoaded();
        Device device = TorchRuntime.DefaultDevice;
        ScalarType dtype = dtypeName switch
        {
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            "float32" => ScalarType.Float32,
            _ => throw new ArgumentException($"--dtype {dtypeName}: bfloat16, float16 or float32."),
        };
        string deviceName = device.type == DeviceType.CUDA ? $"cuda ({Environment.GetEnvironmentVariable("SPECDECODE_DEVICE_NAME") ?? "GPU"})" : "cpu";
        Console.WriteLine($"libtorch {libtorch}, device {device}");
        ModelConfig config = ModelConfig.Load(configPath);
        int maxBatch = callsPerBatch.Keys.Max();
        int maxCalls = callsPerBatch.Values.Max();

        var load = Stopwatch.StartNew();
        Workload workload = Workload.Load(traces, warmupTrajectories, maxCalls, maxContext, headroom: budget + 2, config.VocabSize, maxResponse);
        Console.WriteLine($"traces: {workload.Warmup.Count} warm-up calls, {workload.Evaluation.Count} evaluated calls " +
            $"(mean prompt {workload.Evaluation.Average(c => c.Prompt.Length):F0}, mean response {workload.Evaluation.Average(c => c.Response.Length):F0} tokens), " +
            $"{workload.SkippedTooLong} calls over {maxContext} tokens skipped; {load.Elapsed.TotalSeconds:F1} s");

        var reference = new List<ReferencePoint>();
        foreach ((int batch, int n) in callsPerBatch)
        {
            IReadOnlyList<TraceCallTokens> calls = workload.Evaluation.Take(n).ToArray();
            using IDrafter drafter = Variant.NewDrafter();
            workload.Teach(drafter);
            (double tps, double rate, _, long tokens) = ModelFreeReplay.Run(drafter, calls, budget);
            reference.Add(new ReferencePoint(batch, calls.Count, tokens, tps, rate, calls.Average(c => c.Prompt.Length)));
            Console.WriteLine($"model-free replay, first {calls.Count} calls: {tps:F3} tokens/step, acceptance {rate:P1}");
        }

        var options = new TargetModelOptions
        {
            Device = device, DType = dtype, MaxBatch = maxBatch, MaxContext = maxContext, CudaGraphs = cudaGraphs, CudaGraphKeyBucket = keyBucket,
        };
        using TargetModel model = tensorParallel is null
            ? TargetModel.CreateRandom(config, options, seed: 1)
            : TargetModel.CreateRandomTensorParallel(config, tensorParallel, options, seed: 1);
        if (tensorParallel is not null)
        {
            Console.WriteLine($"tensor parallel over {tensorParallel.WorldSize} ranks ({model.TensorParallel!.Communicator.Name}), libtorch eager layers; " +
                $"{TensorParallelPlan.Create(config, tensorParallel.WorldSize).Ranks[0].WeightBytes(dtype == ScalarType.Float32 ? 4 : 2) / 1e9:F1} GB of weights per rank");
            deviceName += $", tensor parallel x{tensorParallel.WorldSize}";
        }
        if (cudaGraphs)
        {
            Console.WriteLine($"plain single-sequence steps as CUDA graphs ({(model.UsesDecodeKernels ? "decode-step kernels" : "captured libtorch step")})");
        }
        // The floor of a decode step at batch B and cached length C: the weights and B × C tokens' keys and values read once
        // at the copy bandwidth measured here (GPU only).
        double copyGBps = device.type == DeviceType.CUDA ? SpecDecode.TreeBench.Ceilings.Measure(device).CopyGBps : 0;
        if (copyGBps > 0)
        {
            Console.WriteLine($"copy bandwidth {copyGBps:F0} GB/s (read + written, this run)");
        }
        Tokenizer tokenizer = TiktokenTokenizer.CreateForEncoding("o200k_base");
        Console.WriteLine($"target: {config.LayerCount} layers, hidden {config.HiddenSize}, random {dtype}, KV cache {maxBatch} x {maxContext}, scripted {model.UsesScriptedLayers}, script executor {ScriptExecutor.Mode}");

        using DraftModelDrafter? draftModel = draftConfigPath is null ? null : DraftModelDrafter.Create(
            TargetModel.CreateRandom(ModelConfig.Load(draftConfigPath), new TargetModelOptions { Device = device, DType = dtype, MaxBatch = maxBatch, MaxContext = maxContext }, seed: 2),
            new DraftModelOptions { MaxRequests = maxBatch, MaxContext = maxContext, Device = device, DType = dtype });
        if (draftModel is not null)
        {
            draftModel.SkipPrefillForBenchmark = true; // as for the target: prefill cost is measured elsewhere
        }
        if (draftModel is not null)
        {
            Console.WriteLine($"draft model: {draftModel.Config.LayerCount} layers, hidden {draftModel.Config.HiddenSize}, random {dtype}; tree top-k {draftModel.Options.TopK}, beam {draftModel.Options.Beam}, depth {draftModel.Options.MaxDepth}");
        }
        var costWatch = Stopwatch.StartNew();
        bool adaptive = variants.Any(v => v.Adaptive);
        int costContext = (int)Math.Min(maxContext - budget - 2, workload.Evaluation.Average(c => c.Prompt.Length));
        VerificationCostModel? cost = adaptive ? VerificationCostModel.Measure(model, costContext, maxWidth: Math.Min(64, budget + 1)) : null;
        double costSeconds = costWatch.Elapsed.TotalSeconds;
        if (cost is not null)
        {
            Console.WriteLine($"cost model at context {costContext}: {costSeconds:F1} s; batch 1 width 1 {cost.Measured(0, 0) * 1e3:F2} ms, width {cost.Widths[^1]} {cost.Measured(0, cost.Widths.Count - 1) * 1e3:F2} ms; " +
            $"batch {cost.Batches[^1]} width 1 {cost.Measured(cost.Batches.Count - 1, 0) * 1e3:F2} ms, width {cost.Widths[^1]} {cost.Measured(cost.Batches.Count - 1, cost.Widths.Count - 1) * 1e3:F2} ms");
        }

        // Warm-up: kernels, JIT and the engine's paths, untimed.
        EngineRunner.Run(model, tokenizer, workload, workload.Evaluation.Take(2).ToArray(), Variant.Parse(adaptive ? "suffix-adaptive" : "suffix"), Math.Min(2, maxBatch), budget, cost, draftModel);

        var results = new List<VariantResult>();
        Console.WriteLine("variant batch calls tokens seconds tokens/s tokens/step acceptance draft/step draft_ms verify_ms host_ms mean_batch mismatches");
        foreach ((int batch, int n) in callsPerBatch)
        {
            IReadOnlyList<TraceCallTokens> calls = workload.Evaluation.Take(n).ToArray();
            double context = MeanDecodeContext(calls);
            foreach ((int round, Variant variant, float temperature) in Enumerable.Range(1, rounds)
                .SelectMany(round => variants.SelectMany(v => temperatures.Select(t => (round, v, t)))))
            {
                VariantResult r = EngineRunner.Run(model, tokenizer, workload, calls, variant, batch, budget, cost, draftModel, temperature);
                r = r with { MeanContext = context, FloorTokensPerSecond = FloorTokensPerSecond(model.Memory, r.MeanBatch, context, copyGBps), Round = round };
                results.Add(r);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{(r.Round > 1 ? $"{r.Variant}#{r.Round}" : r.Variant)} {r.Batch} {r.Calls} {r.Tokens} {r.Seconds:F2} {r.TokensPerSecond:F1} {r.TokensPerStep:F3} {r.AcceptanceRate:P1} {r.DraftTokensPerStep:F2} {r.DraftMsPerBatch:F3} {r.VerifyMsPerBatch:F2} {r.HostMsPerBatch:F3} {r.MeanBatch:F1} {r.Mismatches} gc0={r.Gen0Collections} gc2={r.Gen2Collections} graphs={r.GraphsCaptured} full-batch={r.FullBatchTokensPerSecond:F1}"));
                if (r.Mismatches != 0)
                {
                    Console.Error.WriteLine($"error: {r.Mismatches} calls did not reproduce their recorded response");
                }
            }
        }

        var report = new BenchReport(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), deviceName, libtorch, ScriptExecutor.Mode,
            Path.GetFileName(configPath), draftConfigPath is null ? null : Path.GetFileName(draftConfigPath), maxResponse, dtypeName, maxContext, budget, warmupTrajectories, workload.Warmup.Count, workload.SkippedTooLong,
            costSeconds, reference, results);
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "engine-bench.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(Path.Combine(output, "engine-bench.md"), Markdown(report));
        Console.WriteLine(Markdown(report));
        return results.Any(r => r.Mismatches != 0) ? 1 : 0;
    }

    /// <summary>The "@T…" a sampled run's variant name ends with (EngineRunner), or "" for a greedy run.</summary>
    private static string TemperatureSuffix(string variant)
    {
        int at = variant.IndexOf("@T", StringComparison.Ordinal);
        return at < 0 ? "" : variant[at..];
    }

    /// <summary>A sampled run's tokens/s over its greedy twin's (the variant without its temperature, same batch), or empty.</summary>
    private static string SampledOverGreedy(IReadOnlyList<VariantResult> results, VariantResult r)
    {
        string suffix = TemperatureSuffix(r.Variant);
        VariantResult? greedy = suffix.Length == 0 ? null
            : results.FirstOrDefault(g => g.Batch == r.Batch && g.Round == r.Round && g.Variant == r.Variant[..^suffix.Length]);
        return greedy is null ? "" : (r.TokensPerSecond / greedy.TokensPerSecond).ToString("F2", CultureInfo.InvariantCulture) + "x";
    }

    /// <summary>The mean cached length over the calls' decode steps, as plain decoding takes them: response token i of a
    /// call with prompt P is produced with P + i tokens cached.</summary>
    internal static double MeanDecodeContext(IReadOnlyList<TraceCallTokens> calls)
    {
        double steps = calls.Sum(c => (double)c.Response.Length);
        return steps == 0 ? 0 : calls.Sum(c => c.Response.Length * (c.Prompt.Length + (c.Response.Length - 1) / 2.0)) / steps;
    }

    /// <summary>Tokens per second at the floor: <paramref name="batch"/> tokens per step that reads the weights and
    /// batch × context tokens' keys and values once at <paramref name="copyGBps"/>; 0 where no bandwidth was measured.</summary>
    internal static double FloorTokensPerSecond(MemoryEstimate memory, double batch, double context, double copyGBps) =>
        copyGBps <= 0 || batch <= 0 ? 0 : batch / ((memory.WeightBytes + batch * context * memory.KvBytesPerToken) / (copyGBps * 1e9));

    /// <summary>The full-batch column (<see cref="FullBatchThroughput"/>): tokens/s over the steps that ran the whole
    /// batch, their share of the step time, and the ratio to plain decoding's full-batch rate.</summary>
    private static string FullBatch(VariantResult r, VariantResult? plain)
    {
        if (r.FullBatchTokensPerSecond <= 0)
        {
            return "-";
        }
        var c = CultureInfo.InvariantCulture;
        string ratio = plain is not null && plain != r && plain.FullBatchTokensPerSecond > 0
            ? string.Create(c, $", {r.FullBatchTokensPerSecond / plain.FullBatchTokensPerSecond:F2}x")
            : "";
        return string.Create(c, $"{r.FullBatchTokensPerSecond:F1} ({r.FullBatchShare:P0}){ratio}");
    }

    internal static string Markdown(BenchReport report)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"Engine on SWE-bench traces, {report.Model} ({report.DType}, random weights{(report.DraftModel is null ? "" : ", draft " + report.DraftModel)}{(report.MaxResponse > 0 ? $", responses cut at {report.MaxResponse} tokens" : "")}), {report.Device}, script executor {report.ScriptExecutor}, {report.Date}; budget {report.Budget}, KV {report.MaxContext} tokens per slot.");
        md.AppendLine();
        md.AppendLine("| batch | calls | variant | tokens/s | speedup vs plain | tokens/step (engine) | tokens/step (model-free replay) | speedup / replay tokens per step | draft ms | verify ms | host ms (per batched step) | mean batch, mean context | of the floor rate | sampled / greedy | graphs captured | at the full batch: tokens/s (share of step time), vs plain |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (VariantResult r in report.Results)
        {
            string plainName = "plain" + TemperatureSuffix(r.Variant); // plain decoding at the same temperature
            VariantResult? plain = report.Results.FirstOrDefault(p => p.Batch == r.Batch && p.Round == r.Round && p.Variant == plainName);
            ReferencePoint? reference = report.ModelFree.FirstOrDefault(p => p.Batch == r.Batch);
            // no plain run at this batch and temperature (e.g. --variants suffix-adaptive,hybrid-adaptive): no speedup to show
            double? speedup = plain is null ? null : r.TokensPerSecond / plain.TokensPerSecond;
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Batch} | {r.Calls} | {r.Label} | {r.TokensPerSecond:F1} | {(speedup is { } x ? x.ToString("F2", CultureInfo.InvariantCulture) + "x" : "-")} | {r.TokensPerStep:F3} | {reference?.TokensPerStep:F3} | {(r.Variant == plainName || reference is null || speedup is null ? "" : (speedup.Value / reference.TokensPerStep).ToString("F2", CultureInfo.InvariantCulture))} | {r.DraftMsPerBatch:F3} | {r.VerifyMsPerBatch:F2} | {r.HostMsPerBatch:F3} | {r.MeanBatch:F1}, {r.MeanContext:F0} | {(r.FloorTokensPerSecond > 0 ? (r.TokensPerSecond / r.FloorTokensPerSecond).ToString("F2", CultureInfo.InvariantCulture) + "x" : "-")} | {SampledOverGreedy(report.Results, r)} | {r.GraphsCaptured} | {FullBatch(r, plain)} |"));
        }
        return md.ToString();
    }
}
