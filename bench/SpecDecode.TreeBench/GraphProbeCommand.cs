using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>What <c>graph-probe</c> runs.</summary>
internal sealed record GraphProbeSettings
{
    /// <summary>Decoder layers of the synthetic step (Llama-3.1-8B has 32).</summary>
    public int Layers { get; init; } = 32;

    /// <summary>Untimed runs before each timing, and warm-up runs before the capture.</summary>
    public int Warmup { get; init; } = 3;

    /// <summary>Timed runs per timing (median reported).</summary>
    public int Repeat { get; init; } = 20;

    /// <summary>Nominal memory bandwidth for the second floor, TB/s (H100 SXM: 3.35).</summary>
    public double NominalTBps { get; init; } = 3.35;

    /// <summary>JSON file for the results, or null.</summary>
    public string? Output { get; init; }
}

/// <summary>The probe's numbers (times in milliseconds).</summary>
internal sealed record GraphProbeResult(
    string Date, string LibTorch, string Gpu, int Layers, long WeightBytes, int KernelsPerStep, double CopyGBps,
    double FloorMs, double NominalFloorMs, double EagerMs, double EagerHostMs, double ReplayMs, double Speedup,
    double CaptureSeconds, bool BitwiseEqual, double MaxAbsDiff, double RelativeDiff, bool ReplayFollowsInput, bool Passed);

/// <summary>
/// <c>graph-probe</c>: times a synthetic Llama-3.1-8B-shaped decode step (<see cref="SyntheticDecodeStep"/>) eagerly and
/// as a replayed CUDA graph (<see cref="CudaGraph"/>), checks that the replay computes what the eager step computes on a
/// new input, and puts both against the bandwidth floor (weight bytes / measured copy bandwidth).
/// </summary>
internal static class GraphProbeCommand
{
    /// <summary>Exit code when CUDA (or the CUDA graph exports) is missing.</summary>
    public const int NoCudaExitCode = 2;

    /// <summary>Exit code when the replay's output differs from the eager step's.</summary>
    public const int MismatchExitCode = 1;

    /// <summary>Loads libtorch (its version in <paramref name="version"/>); null when CUDA and CUDA graphs are there, else
    /// writes why <paramref name="command"/> cannot run to <paramref name="error"/> and returns <see cref="NoCudaExitCode"/>.</summary>
    public static int? RequireCudaGraphs(string command, TextWriter error, out string version)
    {
        version = TorchRuntime.EnsureLoaded();
        if (torch.cuda.is_available() && CudaGraph.IsAvailable)
        {
            return null;
        }
        error.WriteLine($"{command} needs CUDA and CUDA graphs: " + (torch.cuda.is_available() ? CudaGraph.UnavailableReason : $"libtorch {version} reports no CUDA."));
        return NoCudaExitCode;
    }

    /// <summary>Relative tolerance (max |diff| / max |eager|) for replay vs eager in bf16; same kernels should give 0.</summary>
    public const double Tolerance = 1e-2;

    public static Command Build()
    {
        var layers = ToolOptions.Int("--layers", "Decoder layers (Llama-3.1-8B: 32).", 32, 1);
        var warmup = ToolOptions.Int("--warmup", "Untimed runs per timing and before the capture.", 3, 0);
        var repeat = ToolOptions.Int("--repeat", "Timed runs per timing (median reported).", 20, 1);
        var nominal = ToolOptions.Double("--nominal-tbps", "Nominal memory bandwidth in TB/s for a second floor (H100 SXM 3.35).", 3.35, NumberRange.Above(0));
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var command = new Command("graph-probe",
            "Times a synthetic Llama-3.1-8B-shaped decode step (random bf16 weights, no attention) eagerly and as a replayed CUDA graph; needs CUDA.")
        {
            layers, warmup, repeat, nominal, output,
        };
        command.SetAction(parse => Run(
            new GraphProbeSettings
            {
                Layers = parse.GetValue(layers),
                Warmup = parse.GetValue(warmup),
                Repeat = parse.GetValue(repeat),
                NominalTBps = parse.GetValue(nominal),
                Output = parse.GetValue(output),
            },
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    /// <summary>Runs the probe; returns the exit code (0 passed, <see cref="MismatchExitCode"/>, <see cref="NoCudaExitCode"/>).</summary>
    public static int Run(GraphProbeSettings settings, TextWriter output, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(settings.Layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(settings.Repeat);
        ArgumentOutOfRangeException.ThrowIfNegative(settings.Warmup);
        string version = TorchRuntime.EnsureLoaded();
        if (!torch.cuda.is_available())
        {
            error.WriteLine($"graph-probe needs a CUDA GPU: libtorch {version} reports no CUDA (the CPU build is loaded or no GPU is visible). " +
                $"Run it on a GPU machine with {TorchRuntime.LibTorchVariable} set to a CUDA PyTorch's torch/lib folder (../shared/gpu/run.sh does).");
            return NoCudaExitCode;
        }
        if (!CudaGraph.IsAvailable)
        {
            error.WriteLine("graph-probe: CUDA graphs are not available: " + CudaGraph.UnavailableReason);
            return NoCudaExitCode;
        }
        Device device = CUDA;
        output.WriteLine($"libtorch {version}, {VerifyCostCommand.GpuName()}");
        (double copy, double tflops) = Ceilings.Measure(device);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ceilings: copy {copy:F0} GB/s (read + write), bf16 matmul 8192^3 {tflops:F0} TFLOP/s"));

        using var step = new SyntheticDecodeStep(settings.Layers, device, seed: 1);
        double floorMs = step.WeightBytes / (copy * 1e9) * 1e3;
        double nominalFloorMs = step.WeightBytes / (settings.NominalTBps * 1e12) * 1e3;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"synthetic step: {settings.Layers} layers, {step.WeightBytes / 1e9:F2} GB of bf16 weights, ~{step.KernelsPerStep} kernels; floor {floorMs:F2} ms at the measured copy bandwidth, {nominalFloorMs:F2} ms at {settings.NominalTBps} TB/s"));

        using Tensor first = Randn(device, seed: 11);
        using Tensor second = Randn(device, seed: 12);

        // (a) eager: launch time on the host alone, then the whole step with the device synchronised around it.
        step.Input.copy_(first);
        double eagerHost = MedianHostSeconds(device, step.Run, settings.Warmup, settings.Repeat);
        double eager = Ceilings.MedianSeconds(device, () => { step.Input.copy_(first); step.Run(); }, settings.Warmup, settings.Repeat);
        using Tensor eagerFirst = step.Output.clone();
        step.Input.copy_(second);
        step.Run();
        using Tensor eagerSecond = step.Output.clone();

        // (b) capture once (on the first input), then replay.
        step.Input.copy_(first);
        long start = Stopwatch.GetTimestamp();
        using CudaGraph graph = CudaGraph.Capture(step.Run, settings.Warmup);
        double captureSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        double replay = Ceilings.MedianSeconds(device, () => { step.Input.copy_(first); graph.Replay(); }, settings.Warmup, settings.Repeat);

        // Correctness: a new input copied into the static input; the replay must give the eager result for it.
        step.Output.zero_();
        step.Input.copy_(second);
        graph.Replay();
        torch.cuda.synchronize();
        using Tensor replaySecond = step.Output.clone();
        bool bitwise = replaySecond.eq(eagerSecond).all().item<bool>();
        double maxAbs = replaySecond.to(float32).sub(eagerSecond.to(float32)).abs().max().item<float>();
        double scale = eagerSecond.to(float32).abs().max().item<float>();
        double relative = scale > 0 ? maxAbs / scale : maxAbs;
        bool followsInput = !replaySecond.eq(eagerFirst).all().item<bool>();
        bool passed = relative <= Tolerance && followsInput;

        double eagerMs = eager * 1e3, replayMs = replay * 1e3;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"eager:  {eagerMs:F2} ms per step (host launch alone {eagerHost * 1e3:F2} ms), {eagerMs / floorMs:F2}x the floor"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"replay: {replayMs:F2} ms per step, {replayMs / floorMs:F2}x the floor (capture took {captureSeconds:F2} s)"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"speedup: {eagerMs / replayMs:F2}x"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"replay vs eager on a new input: {(bitwise ? "bitwise equal" : "not bitwise equal")}, max |diff| {maxAbs:G3} ({relative:G3} of max |eager|), replay follows the input: {followsInput} -> {(passed ? "PASS" : "FAIL")}"));

        if (settings.Output is not null)
        {
            var result = new GraphProbeResult(
                DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), version, VerifyCostCommand.GpuName(), settings.Layers,
                step.WeightBytes, step.KernelsPerStep, copy, floorMs, nominalFloorMs, eagerMs, eagerHost * 1e3, replayMs, eagerMs / replayMs,
                captureSeconds, bitwise, maxAbs, relative, followsInput, passed);
            File.WriteAllText(settings.Output, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        }
        return passed ? 0 : MismatchExitCode;
    }

    private static Tensor Randn(Device device, long seed)
    {
        torch.manual_seed(seed);
        return randn([1, SyntheticDecodeStep.Hidden], bfloat16, device);
    }

    /// <summary>Median host time of <paramref name="action"/> alone (the device synchronised before it, not waited for
    /// after): how long the host takes to launch the step.</summary>
    private static double MedianHostSeconds(Device device, Action action, int warmup, int repeat)
    {
        for (int i = 0; i < warmup; i++)
        {
            action();
        }
        var times = new double[repeat];
        for (int i = 0; i < repeat; i++)
        {
            Ceilings.Synchronize(device);
            long start = Stopwatch.GetTimestamp();
            action();
            times[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Ceilings.Synchronize(device);
        Array.Sort(times);
        return times[repeat / 2];
    }
}
