using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One world size's figures.</summary>
internal sealed record TensorParallelPoint(int WorldSize, double LoadSeconds, double PrefillSeconds, double LogitsRelativeError, double LogitsLargestDifference,
    int RowsWithOtherArgmax, bool BitwiseEqualToOneDevice, int PlainFirstDifference, double ReferenceMarginThere, int SpeculativeFirstDifference,
    double TokensPerStep, double PlainStepMs, double PlainStepMinMs, double TreeStepMs, long StepBytesPerCard, double CollectiveMsPerStep, double FloorMs,
    double StepToFloor, bool Passed);

internal sealed record TensorParallelResult(string Date, string LibTorch, string Gpu, string Model, string Transport, string DType, int Context, int TreeEntries,
    int Decoded, double CopyGBps, double OneDevicePlainStepMs, IReadOnlyList<TensorParallelPoint> Points, bool Passed);

/// <summary>
/// <c>tp</c>: a model of the given shape (random weights, one seed) served tensor-parallel at several world sizes, against
/// the one-device model of the same weights (libtorch eager layers, the path the ranks run). For each world size:
/// (1) the logits of a prefilled prompt and a random tree against the one-device model's (bitwise at world size 1, within
/// the bf16 tolerance above); (2) plain greedy decoding's tokens against the one-device model's (where they part, the
/// one-device top-two margin, to tell a near-tie from an error), and greedy speculative decoding with trees holding the
/// true continuation against plain decoding on the same model (must be identical); (3) the plain step's median time
/// against its floor: the bytes each card reads per step (its weight shards but the embedding table, its key/value heads
/// of the cache) over the measured copy bandwidth, plus the measured time of the step's collectives (an all-reduce of the
/// hidden state after o and after down in every layer, the logits' all-gather) on the same GPUs.
/// </summary>
internal static class TensorParallelCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (llama-3.1-8b or a config.json).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var sizes = new Option<string>("--sizes") { Description = "World sizes, comma-separated (1 runs the NCCL path on one GPU).", DefaultValueFactory = _ => "1,2,4" };
        var transport = new Option<string>("--transport") { Description = "nccl (one GPU per rank) or in-process (simulated ranks on one device).", DefaultValueFactory = _ => "nccl" };
        var dtype = new Option<string>("--dtype") { Description = "bfloat16, float16 or float32.", DefaultValueFactory = _ => "bfloat16" };
        var context = new Option<int>("--context") { Description = "Prompt tokens (random) before the steps.", DefaultValueFactory = _ => 2048 };
        var tree = new Option<int>("--tree") { Description = "Entries of the logits check's and the timed tree (root included).", DefaultValueFactory = _ => 16 };
        var decode = new Option<int>("--decode") { Description = "Tokens of the plain and speculative decoding checks.", DefaultValueFactory = _ => 32 };
        var repeat = new Option<int>("--repeat") { Description = "Timed steps per measurement.", DefaultValueFactory = _ => 32 };
        var tolerance = new Option<double>("--tolerance") { Description = "Largest logits difference / largest logit allowed against the one-device model (bf16 default).", DefaultValueFactory = _ => 2e-2 };
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var command = new Command("tp", "Tensor parallelism: logits, tokens and plain-step time at several world sizes against the one-device model.")
        {
            model, sizes, transport, dtype, context, tree, decode, repeat, tolerance, output,
        };
        command.SetAction(p => Run(p.GetValue(model)!, p.GetValue(sizes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
            p.GetValue(transport)!, p.GetValue(dtype)!, p.GetValue(context), p.GetValue(tree), p.GetValue(decode), p.GetValue(repeat), p.GetValue(tolerance),
            p.GetValue(output), p.InvocationConfiguration.Output, p.InvocationConfiguration.Error));
        return command;
    }

    public static int Run(string shape, int[] sizes, string transportName, string dtypeName, int context, int treeEntries, int decode, int repeat, double tolerance,
        string? outputPath, TextWriter output, TextWriter error)
    {
        string version = TorchRuntime.EnsureLoaded();
        TensorParallelTransport transport = transportName switch
        {
            "nccl" => TensorParallelTransport.Nccl,
            "in-process" => TensorParallelTransport.InProcess,
            _ => throw new ArgumentException($"--transport {transportName}: nccl or in-process."),
        };
        ScalarType dtype = VerifyCostCommand.ParseDType(dtypeName);
        bool cuda = torch.cuda.is_available();
        if (transport == TensorParallelTransport.Nccl && (!cuda || torch.cuda.device_count() < sizes.Max()))
        {
            error.WriteLine($"tp --transport nccl needs {sizes.Max()} CUDA devices; libtorch {version} sees {(cuda ? torch.cuda.device_count() : 0)}.");
            return GraphProbeCommand.NoCudaExitCode;
        }
        ModelConfig config = ModelShapes.Get(shape);
        foreach (int w in sizes)
        {
            if (TensorParallelPlan.Refusal(config, w) is { } why)
            {
                error.WriteLine($"--sizes: {shape} cannot run on {w} ranks: {why}.");
                return 2;
            }
        }
        Device device = cuda ? new Device(DeviceType.CUDA, 0) : CPU;
        string gpu = cuda ? VerifyCostCommand.GpuName() : "cpu";
        var options = new TargetModelOptions
        {
            Device = device, DType = dtype, MaxBatch = 1, MaxContext = context + decode + treeEntries + 8, ScriptedLayers = false,
        };
        int elementSize = dtype == ScalarType.Float32 ? 4 : 2;
        double copy = cuda ? Ceilings.Measure(device).CopyGBps : double.NaN;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"libtorch {version}, {gpu}, {shape} ({dtypeName}, random weights), transport {transportName}, context {context}, copy bandwidth {copy:F0} GB/s"));

        var random = new Random(11);
        int[] prompt = Enumerable.Range(0, context).Select(_ => random.Next(config.VocabSize)).ToArray();
        var treeInput = new TreeInput(0, prompt[^1], CostCurve.RandomTree(random, treeEntries - 1, config.VocabSize));

        // The one-device model of the same weights: reference logits and tokens, and its plain step.
        Tensor referenceLogits;
        int[] referencePlain;
        double wholeStep;
        using (TargetModel whole = TargetModel.CreateRandomWhole(config, options, seed: 1))
        {
            whole.Prefill([(0, prompt[..^1])]);
            referenceLogits = whole.TreeLogits([treeInput])[0].DetachFromDisposeScope();
            referencePlain = PlainTokens(whole, prompt[^1], context - 1, decode);
            wholeStep = PlainStep(whole, prompt[^1], context - 1, repeat).Median;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"one device (eager layers): plain step median {wholeStep:F2} ms"));
        }

        var points = new List<TensorParallelPoint>();
        foreach (int world in sizes)
        {
            var parallel = new TensorParallelOptions { WorldSize = world, Transport = transport };
            var load = Stopwatch.StartNew();
            using TargetModel model = TargetModel.CreateRandomTensorParallel(config, parallel, options, seed: 1);
            double loadSeconds = load.Elapsed.TotalSeconds;
            var prefill = Stopwatch.StartNew();
            model.Prefill([(0, prompt[..^1])]);
            Synchronize(device);
            double prefillSeconds = prefill.Elapsed.TotalSeconds;

            // (1) logits against the one-device model
            using Tensor logits = model.TreeLogits([treeInput])[0];
            double scale = referenceLogits.abs().max().item<float>();
            double largest = (logits - referenceLogits).abs().max().item<float>();
            int otherArgmax = (int)logits.argmax(-1).ne(referenceLogits.argmax(-1)).sum().item<long>();
            bool bitwise = logits.eq(referenceLogits).all().item<bool>();

            // (2) tokens: plain against the one-device model, speculative against plain on this model
            int[] plain = PlainTokens(model, prompt[^1], context - 1, decode);
            int plainDiff = FirstDifference(plain, referencePlain);
            double margin = plainDiff < 0 ? double.NaN : ReferenceMargin(config, options, prompt, referencePlain, plainDiff);
            int speculativeDiff = TreeKernelsCommand.SpeculativeFirstDifference(model, prompt[^1], context - 1, plain, treeEntries, new Random(5), kernels: false,
                out double tokensPerStep);

            // (3) the plain step against its floor, and a tree step
            model.Truncate(0, context - 1);
            (double stepMs, double stepMin) = PlainStep(model, prompt[^1], context - 1, repeat);
            (double treeMs, _) = CostCurve.TimeSteps(model, context - 1, 1, 3, repeat, () => model.VerifyGreedy([treeInput]));
            RankShard rank0 = TensorParallelPlan.Create(config, world).Ranks[0];
            long kvBytes = (long)context * config.LayerCount * 2 * rank0.KeyValueHeads.Count * config.HeadDim * elementSize;
            long bytes = rank0.StepReadBytes(elementSize) + kvBytes;
            double collectives = world == 1 ? 0 : CollectiveMs(config, parallel.DevicesFor(device), transport, dtype, TensorParallelPlan.Create(config, world).VocabShardSize, repeat);
            double floor = bytes / (copy * 1e9) * 1e3 + collectives;
            bool passed = (world != 1 || bitwise) && largest <= tolerance * scale && speculativeDiff < 0;
            var point = new TensorParallelPoint(world, loadSeconds, prefillSeconds, largest / scale, largest, otherArgmax, bitwise, plainDiff, margin, speculativeDiff,
                tokensPerStep, stepMs, stepMin, treeMs, bytes, collectives, floor, stepMs / floor, passed);
            points.Add(point);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"TP={world}: load {loadSeconds:F1} s, prefill {prefillSeconds:F2} s; logits vs one device: largest difference {largest:E2} of {scale:F3} ({largest / scale:E2}), " +
                $"{otherArgmax}/{treeEntries} rows with another argmax, bitwise {bitwise}; plain tokens {(plainDiff < 0 ? "equal to one device" : $"leave one device's at {plainDiff} (its top-two margin there {margin:G3})")}; " +
                $"speculative {(speculativeDiff < 0 ? "IDENTICAL to plain" : $"DIFFERS from plain at {speculativeDiff}")} ({tokensPerStep:F2} tokens/step); " +
                $"plain step {stepMs:F2} ms (min {stepMin:F2}), {treeEntries}-entry tree {treeMs:F2} ms; floor {floor:F2} ms ({bytes / 1e9:F2} GB per card at {copy:F0} GB/s + collectives {collectives:F3} ms) " +
                $"-> {stepMs / floor:F2}x; {(passed ? "PASS" : "FAIL")}"));
        }
        referenceLogits.Dispose();
        bool all = points.All(p => p.Passed);
        output.WriteLine(all ? "PASS" : "FAIL");
        if (outputPath is not null)
        {
            var result = new TensorParallelResult(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), version, gpu, shape, transportName, dtypeName,
                context, treeEntries, decode, copy, wholeStep, points, all);
            File.WriteAllText(outputPath, JsonSerializer.Serialize(result, new JsonSerializerOptions
            {
                WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals, // NaN: no floor on a CPU
            }));
        }
        return all ? 0 : GraphProbeCommand.MismatchExitCode;
    }

    /// <summary>Plain greedy decoding of <paramref name="count"/> tokens from <paramref name="root"/> after slot 0's first
    /// <paramref name="cached"/> tokens; the slot is rolled back afterwards.</summary>
    private static int[] PlainTokens(TargetModel model, int root, int cached, int count)
    {
        model.Truncate(0, cached);
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            root = tokens[i] = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0].Bonus;
        }
        model.Truncate(0, cached);
        return tokens;
    }

    private static (double Median, double Min) PlainStep(TargetModel model, int root, int cached, int repeat)
    {
        model.Truncate(0, cached);
        return CostCurve.TimeSteps(model, cached, 1, 3, repeat, () => model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)]));
    }

    private static int FirstDifference(int[] a, int[] b)
    {
        for (int i = 0; i < Math.Min(a.Length, b.Length); i++)
        {
            if (a[i] != b[i])
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>The one-device model's top-two logit margin where plain decoding's tokens part (after its own tokens):
    /// near zero means a tie that rounding may flip.</summary>
    private static double ReferenceMargin(ModelConfig config, TargetModelOptions options, int[] prompt, int[] plain, int at)
    {
        using TargetModel whole = TargetModel.CreateRandomWhole(config, options, seed: 1);
        int[] context = [.. prompt, .. plain[..at]];
        whole.Prefill([(0, context[..^1])]);
        using var scope = NewDisposeScope();
        (Tensor top, _) = whole.TreeLogits([new TreeInput(0, context[^1], DraftTree.Empty)])[0][0].topk(2);
        return (top[0] - top[1]).item<float>();
    }

    /// <summary>The measured time of one plain step's collectives on the ranks' devices: an all-reduce of the hidden state
    /// [1, 1, hidden] after o and after down in every layer, and the all-gather of the logits [1, 1, vocabulary shard];
    /// one thread per rank, as the model runs them; the slowest rank's median over <paramref name="repeat"/> steps.</summary>
    internal static double CollectiveMs(ModelConfig config, IReadOnlyList<Device> devices, TensorParallelTransport transport, ScalarType dtype, int vocabShard, int repeat)
    {
        int world = devices.Count;
        using InProcessGroup? group = transport == TensorParallelTransport.InProcess ? new InProcessGroup(world) : null;
        IReadOnlyList<ICommunicator> communicators = group?.Communicators ?? NcclCommunicator.CreateGroup(devices);
        var medians = new double[world];
        using var start = new Barrier(world);
        Thread[] threads = Enumerable.Range(0, world).Select(rank => new Thread(() =>
        {
            ICommunicator c = communicators[rank];
            using var scope = NewDisposeScope();
            Tensor hidden = zeros([1, 1, config.HiddenSize], dtype, devices[rank]);
            Tensor logits = zeros([1, 1, vocabShard], dtype, devices[rank]);
            var times = new double[repeat];
            for (int i = -3; i < repeat; i++)
            {
                start.SignalAndWait();
                long t0 = Stopwatch.GetTimestamp();
                for (int layer = 0; layer < 2 * config.LayerCount; layer++)
                {
                    c.AllReduceSum(hidden);
                }
                c.AllGather(logits).Dispose();
                Synchronize(devices[rank]);
                if (i >= 0)
                {
                    times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
                }
            }
            Array.Sort(times);
            medians[rank] = times[repeat / 2];
        })).ToArray();
        foreach (Thread t in threads)
        {
            t.Start();
        }
        foreach (Thread t in threads)
        {
            t.Join();
        }
        if (group is null)
        {
            foreach (ICommunicator c in communicators)
            {
                c.Dispose();
            }
        }
        return medians.Max();
    }

    private static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            torch.cuda.synchronize(device);
        }
    }
}
