using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One model run of <c>decode-graphs</c>: plain greedy decoding with or without CUDA graphs.</summary>
internal sealed record DecodeGraphsRun(
    int Capacity, bool CudaGraphs, int Context, int[] Tokens, double MedianStepMs, double MinStepMs, double MaxStepMs,
    int GraphsCaptured, double CaptureStepsMs, double FloorMs);

/// <summary>The command's results.</summary>
internal sealed record DecodeGraphsResult(
    string Date, string LibTorch, string Gpu, string Model, double CopyGBps, IReadOnlyList<DecodeGraphsRun> Runs,
    bool TokensIdentical, bool Passed);

/// <summary>
/// <c>decode-graphs</c>: a random-weight model (Llama-3.1-8B shape by default) on the GPU, prefilled with random tokens to
/// a context, then plain greedy decoding (<see cref="TargetModel.VerifyGreedy"/> with an empty draft) for some tokens,
/// on one model with <see cref="TargetModelOptions.CudaGraphs"/> on, first with the graphs suspended (the usual path),
/// then rolled back to the prompt and through the graphs, at each cache capacity: the generated tokens must be
/// identical, and each step is timed (the step ends with its host read, so it is synchronised). Steps that captured a
/// graph are left out of the median and reported apart.
/// </summary>
internal static class DecodeGraphsCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (llama-3.1-8b or a config.json).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var context = new Option<int>("--context") { Description = "Prompt tokens (random) before decoding.", DefaultValueFactory = _ => 2048 };
        var tokens = new Option<int>("--tokens") { Description = "Tokens decoded per run.", DefaultValueFactory = _ => 64 };
        var capacities = new Option<string>("--capacities") { Description = "Comma-separated KV cache capacities (MaxContext).", DefaultValueFactory = _ => "4096,32768" };
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var diagnose = new Option<bool>("--print-tokens") { Description = "Print every run's tokens." };
        var command = new Command("decode-graphs",
            "Plain greedy decoding on a random-weight model with and without TargetModelOptions.CudaGraphs: same tokens, median step; needs CUDA.")
        {
            model, context, tokens, capacities, output, diagnose,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(context), parse.GetValue(tokens),
            parse.GetValue(capacities)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
            parse.GetValue(output), parse.GetValue(diagnose), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    /// <summary>Runs every capacity without and with graphs; returns 0 when every pair generated the same tokens,
    /// <see cref="GraphProbeCommand.MismatchExitCode"/> when not, <see cref="GraphProbeCommand.NoCudaExitCode"/> without CUDA.</summary>
    public static int Run(string shape, int context, int count, int[] capacities, string? outputPath, bool diagnose, TextWriter output, TextWriter error)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 2);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        string version = TorchRuntime.EnsureLoaded();
        if (!torch.cuda.is_available() || !CudaGraph.IsAvailable)
        {
            error.WriteLine("decode-graphs needs CUDA and CUDA graphs: " + (torch.cuda.is_available() ? CudaGraph.UnavailableReason : $"libtorch {version} reports no CUDA."));
            return GraphProbeCommand.NoCudaExitCode;
        }
        ModelConfig config = ModelShapes.Get(shape);
        string gpu = VerifyCostCommand.GpuName();
        output.WriteLine($"libtorch {version}, {gpu}, {shape}, context {context}, {count} tokens");
        (double copy, _) = Ceilings.Measure(CUDA);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"copy bandwidth {copy:F0} GB/s"));

        var random = new Random(7);
        int[] prompt = Enumerable.Range(0, context).Select(_ => random.Next(config.VocabSize)).ToArray();
        var runs = new List<DecodeGraphsRun>();
        bool identical = true;
        foreach (int capacity in capacities)
        {
            (DecodeGraphsRun eager, DecodeGraphsRun graphed) = Decode(config, capacity, prompt, count, copy);
            Report(output, eager);
            Report(output, graphed);
            int firstDiff = Enumerable.Range(0, count).FirstOrDefault(i => eager.Tokens[i] != graphed.Tokens[i], -1);
            identical &= firstDiff < 0;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"capacity {capacity}: tokens {(firstDiff < 0 ? "identical" : $"DIFFER from token {firstDiff}")} ({eager.Tokens.Distinct().Count()} distinct), " +
                $"speedup {eager.MedianStepMs / graphed.MedianStepMs:F2}x"));
            if (diagnose)
            {
                output.WriteLine("eager:  " + string.Join(' ', eager.Tokens));
                output.WriteLine("graphs: " + string.Join(' ', graphed.Tokens));
            }
            runs.Add(eager);
            runs.Add(graphed);
        }
        output.WriteLine(identical ? "PASS" : "FAIL");
        if (outputPath is not null)
        {
            var result = new DecodeGraphsResult(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), version, gpu, shape, copy, runs,
                identical, identical);
            File.WriteAllText(outputPath, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        }
        return identical ? 0 : GraphProbeCommand.MismatchExitCode;
    }

    /// <summary>One model with graphs on: prefill, decode with the graphs suspended (the usual path), roll back to the
    /// prompt, decode again through the graphs.</summary>
    private static (DecodeGraphsRun Eager, DecodeGraphsRun Graphed) Decode(ModelConfig config, int capacity, int[] prompt, int count, double copyGBps)
    {
        var options = new TargetModelOptions { Device = CUDA, DType = ScalarType.BFloat16, MaxContext = capacity, CudaGraphs = true };
        using TargetModel model = TargetModel.CreateRandom(config, options, seed: 1);
        model.Prefill([(0, prompt[..^1])]);
        // Bytes a step must read: every weight but the embedding table (one row of it), and the cached keys and values.
        MemoryEstimate memory = model.Memory;
        long embedding = (long)config.VocabSize * config.HiddenSize * 2;
        long bytes = memory.WeightBytes - (config.TieWordEmbeddings ? 0 : embedding) + memory.KvBytesPerToken * prompt.Length;
        double floorMs = bytes / (copyGBps * 1e9) * 1e3;
        model.SuspendCudaGraphs = true;
        DecodeGraphsRun eager = Steps(model, capacity, prompt, count, floorMs);
        model.Truncate(0, prompt.Length - 1);
        model.SuspendCudaGraphs = false;
        DecodeGraphsRun graphed = Steps(model, capacity, prompt, count, floorMs);
        return (eager, graphed);
    }

    private static DecodeGraphsRun Steps(TargetModel model, int capacity, int[] prompt, int count, double floorMs)
    {
        torch.cuda.synchronize();
        var tokens = new int[count];
        var times = new List<double>();
        double captureMs = 0;
        int root = prompt[^1];
        for (int i = 0; i < count; i++)
        {
            int before = model.CapturedGraphCount;
            long start = Stopwatch.GetTimestamp();
            root = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0].Bonus; // ends with the host read
            double ms = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            tokens[i] = root;
            if (model.CapturedGraphCount != before)
            {
                captureMs += ms;
            }
            else
            {
                times.Add(ms);
            }
        }
        times.Sort();
        return new DecodeGraphsRun(capacity, !model.SuspendCudaGraphs, prompt.Length, tokens, times[times.Count / 2], times[0], times[^1],
            model.CapturedGraphCount, captureMs, floorMs);
    }

    private static void Report(TextWriter output, DecodeGraphsRun run) =>
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"capacity {run.Capacity,6} {(run.CudaGraphs ? "graphs" : "eager "),-6}: median step {run.MedianStepMs:F2} ms (min {run.MinStepMs:F2}, max {run.MaxStepMs:F2}), " +
            $"floor {run.FloorMs:F2} ms ({run.MedianStepMs / run.FloorMs:F2}x); {run.GraphsCaptured} graphs captured in {run.CaptureStepsMs:F0} ms of steps"));
}
