using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One model run of <c>decode-graphs</c>: plain greedy decoding with or without CUDA graphs.</summary>
internal sealed record DecodeGraphsRun(
    int Capacity, bool CudaGraphs, string Attention, int Round, int Context, int[] Tokens, double MedianStepMs, double MinStepMs, double MaxStepMs,
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
/// graph are left out of the median and reported apart. <c>--attention</c> times the graphed step with each attention
/// variant of <see cref="TargetModel.GraphAttention"/> on the same model (default, grouped-matmul, skipped, kernels), each
/// after a roll-back to the prompt, <c>--rounds</c> times in turn; every variant but <c>skipped</c> must give the usual
/// path's tokens, except that the decode-step kernels may leave them where the usual path's two best bf16 logits are
/// exactly equal (reported with both top-two margins). With <c>kernels</c> it also compares the kernel step's logits with
/// the script's and checks that the kernels repeat bitwise. <c>--checkpoint</c> loads real weights instead of random ones.
/// </summary>
internal static class DecodeGraphsCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (llama-3.1-8b or a config.json).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var context = ToolOptions.Int("--context", "Prompt tokens (random) before decoding.", 2048, 1);
        var tokens = ToolOptions.Int("--tokens", "Tokens decoded per run.", 64, 1);
        var capacities = new Option<string>("--capacities") { Description = "Comma-separated KV cache capacities (MaxContext).", DefaultValueFactory = _ => "4096,32768" };
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var diagnose = new Option<bool>("--print-tokens") { Description = "Print every run's tokens." };
        var attention = new Option<string>("--attention")
        {
            Description = "Comma-separated attention variants of the graphed step: default, grouped-matmul, skipped (skipped changes the tokens; timed only).",
            DefaultValueFactory = _ => "default",
        };
        var dtype = ToolOptions.Choice("--dtype", "Model dtype: bfloat16 or float32 (float32 checks the attention variants' tokens without bf16 rounding).", "bfloat16", ["bfloat16", "float32"]);
        var checkpoint = new Option<string?>("--checkpoint") { Description = "A checkpoint folder to load instead of random weights of --model's shape (e.g. models/default)." };
        var rounds = ToolOptions.Int("--rounds", "Times each attention variant is run in turn (the graphs are reused after the first).", 1, 1);
        var command = new Command("decode-graphs",
            "Plain greedy decoding on a random-weight model with and without TargetModelOptions.CudaGraphs: same tokens, median step; needs CUDA.")
        {
            model, context, tokens, capacities, output, diagnose, attention, rounds, dtype, checkpoint,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(context), parse.GetValue(tokens),
            parse.GetValue(capacities)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
            parse.GetValue(output), parse.GetValue(diagnose), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error,
            parse.GetValue(attention)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseAttention).ToArray(),
            parse.GetValue(rounds), parse.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "bfloat16" or "bf16" => ScalarType.BFloat16,
                "float32" or "fp32" => ScalarType.Float32,
                string other => throw new ArgumentException($"Unknown dtype '{other}': use bfloat16 or float32."),
            }, parse.GetValue(checkpoint)));
        return command;
    }

    /// <summary>Runs every capacity without and with graphs; returns 0 when every pair generated the same tokens,
    /// <see cref="GraphProbeCommand.MismatchExitCode"/> when not, <see cref="GraphProbeCommand.NoCudaExitCode"/> without CUDA.</summary>
    public static int Run(string shape, int context, int count, int[] capacities, string? outputPath, bool diagnose, TextWriter output, TextWriter error,
        DecodeAttention[]? attentions = null, int rounds = 1, ScalarType dtype = ScalarType.BFloat16, string? checkpoint = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 2);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rounds);
        attentions = attentions is { Length: > 0 } ? attentions : [DecodeAttention.Default];
        if (GraphProbeCommand.RequireCudaGraphs("decode-graphs", error, out string version) is int missing)
        {
            return missing;
        }
        ModelConfig config = checkpoint is null ? ModelShapes.Get(shape) : ModelConfig.Load(checkpoint);
        shape = checkpoint ?? shape;
        string gpu = VerifyCostCommand.GpuName();
        output.WriteLine($"libtorch {version}, {gpu}, {shape} in {dtype}, context {context}, {count} tokens");
        (double copy, _) = Ceilings.Measure(CUDA);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"copy bandwidth {copy:F0} GB/s"));

        var random = new Random(7);
        int[] prompt = Enumerable.Range(0, context).Select(_ => random.Next(config.VocabSize)).ToArray();
        var runs = new List<DecodeGraphsRun>();
        bool identical = true;
        foreach (int capacity in capacities)
        {
            (DecodeGraphsRun eager, List<DecodeGraphsRun> graphed, int kernelTie) = Decode(config, capacity, prompt, count, copy, attentions, rounds, dtype, checkpoint, output);
            Report(output, eager);
            runs.Add(eager);
            if (diagnose)
            {
                output.WriteLine("eager:  " + string.Join(' ', eager.Tokens));
            }
            foreach (DecodeGraphsRun run in graphed)
            {
                Report(output, run);
                int firstDiff = Enumerable.Range(0, count).FirstOrDefault(i => eager.Tokens[i] != run.Tokens[i], -1);
                bool checkedRun = run.Attention != nameof(DecodeAttention.Skipped);
                // The kernels sum in another order than cuBLAS: where the usual path's two best bf16 logits are exactly equal
                // (its argmax takes the lower id), either token is the model's; that step is reported, not failed.
                bool atTie = run.Attention == nameof(DecodeAttention.Kernels) && firstDiff >= 0 && firstDiff == kernelTie;
                identical &= !checkedRun || firstDiff < 0 || atTie;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"capacity {capacity} {run.Attention} round {run.Round}: tokens {(firstDiff < 0 ? "identical" : atTie ? $"differ from token {firstDiff}, an exact tie of the usual path" : $"DIFFER from token {firstDiff}")}" +
                    $"{(checkedRun ? "" : " (not checked: attention skipped)")} ({eager.Tokens.Distinct().Count()} distinct), " +
                    $"speedup {eager.MedianStepMs / run.MedianStepMs:F2}x"));
                if (diagnose)
                {
                    output.WriteLine($"graphs ({run.Attention}): " + string.Join(' ', run.Tokens));
                }
                runs.Add(run);
            }
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
    private static (DecodeGraphsRun Eager, List<DecodeGraphsRun> Graphed, int KernelTie) Decode(ModelConfig config, int capacity, int[] prompt, int count, double copyGBps,
        DecodeAttention[] attentions, int rounds, ScalarType dtype, string? checkpoint, TextWriter output)
    {
        var options = new TargetModelOptions { Device = CUDA, DType = dtype, MaxContext = capacity, CudaGraphs = true };
        using TargetModel model = checkpoint is null ? TargetModel.CreateRandom(config, options, seed: 1) : TargetModel.Load(checkpoint, options);
        model.Prefill([(0, prompt[..^1])]);
        if (attentions.Contains(DecodeAttention.Kernels))
        {
            CompareLogits(model, prompt, output);
        }
        // Bytes a step must read: every weight but the embedding table (one row of it), and the cached keys and values.
        MemoryEstimate memory = model.Memory;
        long embedding = (long)config.VocabSize * config.HiddenSize * (dtype == ScalarType.Float32 ? 4 : 2);
        long bytes = memory.WeightBytes - (config.TieWordEmbeddings ? 0 : embedding) + memory.KvBytesPerToken * prompt.Length;
        double floorMs = bytes / (copyGBps * 1e9) * 1e3;
        model.SuspendCudaGraphs = true;
        DecodeGraphsRun eager = Steps(model, capacity, prompt, count, floorMs, 0);
        model.SuspendCudaGraphs = false;
        var graphed = new List<DecodeGraphsRun>();
        for (int round = 1; round <= rounds; round++)
        {
            foreach (DecodeAttention attention in attentions)
            {
                model.Truncate(0, prompt.Length - 1);
                model.GraphAttention = attention;
                graphed.Add(Steps(model, capacity, prompt, count, floorMs, round));
            }
        }
        model.GraphAttention = DecodeAttention.Default;
        int kernelTie = -1;
        if (graphed.FirstOrDefault(r => r.Attention == nameof(DecodeAttention.Kernels)) is { } run)
        {
            int first = Enumerable.Range(0, count).FirstOrDefault(i => eager.Tokens[i] != run.Tokens[i], -1);
            if (first >= 0 && DivergenceMargins(model, prompt, eager.Tokens, first, output) == 0)
            {
                kernelTie = first;
            }
        }
        return (eager, graphed, kernelTie);
    }

    private static DecodeAttention ParseAttention(string name) => name.ToLowerInvariant() switch
    {
        "default" => DecodeAttention.Default,
        "grouped-matmul" or "grouped" => DecodeAttention.GroupedMatmul,
        "skipped" or "skip" => DecodeAttention.Skipped,
        "kernels" => DecodeAttention.Kernels,
        _ => throw new ArgumentException($"Unknown attention variant '{name}': use default, grouped-matmul, skipped or kernels.", nameof(name)),
    };

    /// <summary>Where the kernel step's tokens leave the usual path's: the top two logits of both at that step, after the
    /// usual path's own tokens up to it (so both see the same cache), to tell a near-tie from an error. Returns the usual
    /// path's margin (top logit minus the second).</summary>
    private static float DivergenceMargins(TargetModel model, int[] prompt, int[] tokens, int at, TextWriter output)
    {
        model.Truncate(0, prompt.Length - 1);
        model.SuspendCudaGraphs = true;
        int root = prompt[^1];
        for (int i = 0; i < at; i++)
        {
            _ = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)]);
            root = tokens[i];
        }
        model.SuspendCudaGraphs = false;
        using var scope = torch.NewDisposeScope();
        Tensor script = model.FixedDecodeLogits(0, root, DecodeAttention.Default).view(-1).to(ScalarType.Float32);
        Tensor kernels = model.KernelDecodeLogits(0, root).to(ScalarType.Float32);
        string Top(Tensor logits, out float margin)
        {
            (Tensor values, Tensor indices) = logits.topk(2);
            float a = values[0].item<float>(), b = values[1].item<float>();
            margin = a - b;
            return string.Create(CultureInfo.InvariantCulture, $"{indices[0].item<long>()} ({a:G6}), {indices[1].item<long>()} ({b:G6}), margin {a - b:G3}");
        }
        output.WriteLine($"at token {at}: usual path's top two {Top(script, out float usual)}; kernels' top two {Top(kernels, out _)}");
        return usual;
    }

    /// <summary>The kernel step's logits against the script's (the usual path's computation) for the prompt's last token,
    /// twice each: relative error, largest difference, both argmaxes and whether the kernels gave the same bits twice.</summary>
    private static void CompareLogits(TargetModel model, int[] prompt, TextWriter output)
    {
        using var scope = torch.NewDisposeScope();
        Tensor script = model.FixedDecodeLogits(0, prompt[^1], DecodeAttention.Default).view(-1).to(ScalarType.Float32);
        Tensor kernels = model.KernelDecodeLogits(0, prompt[^1]).to(ScalarType.Float32);
        Tensor again = model.KernelDecodeLogits(0, prompt[^1]).to(ScalarType.Float32);
        double relative = ((kernels - script).norm() / script.norm()).item<float>();
        double largest = (kernels - script).abs().max().item<float>();
        long a = script.argmax().item<long>(), b = kernels.argmax().item<long>();
        bool repeatable = kernels.eq(again).all().item<bool>();
        DecodeKernels.Module module = DecodeKernels.Get();
        output.WriteLine($"kernels from {module.Source}, dependent launch {(module.DependentLaunch ? "on" : "off")}, {module.Multiprocessors} multiprocessors");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"kernel logits vs script: relative error {relative:E2}, largest difference {largest:E2}, argmax {b} vs {a} ({(a == b ? "same" : "DIFFERENT")}), " +
            $"kernels bitwise repeatable: {repeatable}"));
    }

    private static DecodeGraphsRun Steps(TargetModel model, int capacity, int[] prompt, int count, double floorMs, int round)
    {
        int initialGraphs = model.CapturedGraphCount;
        (int[] tokens, List<double> times, double captureMs) = TimePlainSteps(model, prompt[^1], count);
        string attention = model.SuspendCudaGraphs ? "usual" : model.GraphAttention.ToString();
        return new DecodeGraphsRun(capacity, !model.SuspendCudaGraphs, attention, round, prompt.Length, tokens, times[times.Count / 2], times[0], times[^1],
            model.CapturedGraphCount - initialGraphs, captureMs, floorMs);
    }

    /// <summary>Plain greedy decoding of <paramref name="count"/> tokens in slot 0 from <paramref name="root"/>, each step
    /// timed to its host read: the tokens, the times of the steps that captured no graph (sorted) and the time of those
    /// that did.</summary>
    internal static (int[] Tokens, List<double> SortedTimes, double CaptureMs) TimePlainSteps(TargetModel model, int root, int count)
    {
        torch.cuda.synchronize();
        var tokens = new int[count];
        var times = new List<double>();
        double captureMs = 0;
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
        return (tokens, times, captureMs);
    }

    private static void Report(TextWriter output, DecodeGraphsRun run) =>
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"capacity {run.Capacity,6} {(run.CudaGraphs ? "graphs" : "eager "),-6} {run.Attention,-13} r{run.Round}: median step {run.MedianStepMs:F2} ms (min {run.MinStepMs:F2}, max {run.MaxStepMs:F2}), " +
            $"floor {run.FloorMs:F2} ms ({run.MedianStepMs / run.FloorMs:F2}x); {run.GraphsCaptured} graphs captured in {run.CaptureStepsMs:F0} ms of steps"));
}
