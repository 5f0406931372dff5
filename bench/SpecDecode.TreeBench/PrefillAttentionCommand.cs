using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One comparison of the flash path's cache rows and next-token logits with the masked path's.</summary>
internal sealed record PrefillCheck(string What, double CacheRelativeError, double LogitRelativeError, int Sequences, int SameArgmax, bool Passed);

/// <summary>One prefill's time on both paths (median and minimum over the repeats, ms), and the floor: its matrix products'
/// and attention's FLOPs at the matrix-product rate measured in the same run.</summary>
internal sealed record PrefillTiming(string What, int Cached, int Tokens, double MaskedMedianMs, double MaskedMinMs, double FlashMedianMs, double FlashMinMs,
    double FloorMs, double FirstStepMs);

internal sealed record PrefillAttentionResult(string Date, string LibTorch, string Gpu, string Model, double MatmulTflops, string StepPaths,
    IReadOnlyList<PrefillCheck> Checks, IReadOnlyList<PrefillTiming> Timings, bool Passed);

/// <summary>
/// <c>prefill-attention</c>: packed prefill through libtorch's variable-length flash attention against the masked chunks,
/// on one random model on the GPU (issue 17's time to first token). Checks: a long cached conversation continued by new
/// tokens, and two fresh prompts packed into the same forwards; each path's new cache rows and the next step's logits
/// (relative error against the masked path, argmax agreement). Timings: the continued call's prefill (and the first step
/// after it, which completes the time to first token) and fresh prompts' prefill, on both paths in one process, against
/// the floor of their FLOPs at the matrix-product rate measured in the same run.
/// </summary>
internal static class PrefillAttentionCommand
{
    /// <summary>Relative error allowed against the masked path in bfloat16: the single tree's level on this random model
    /// (the tree kernels' logits checks pass at 6e-2; two bfloat16 attention implementations round differently).</summary>
    private const double Tolerance = 6e-2;

    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (llama-3.1-8b or a config.json).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var context = ToolOptions.Int("--context", "Cached tokens of the continued conversation.", 30000, 1);
        var fresh = ToolOptions.Int("--new", "New tokens of the continued call.", 1000, 1);
        var prompts = new Option<string>("--fresh") { Description = "Fresh prompt lengths to time (comma list).", DefaultValueFactory = _ => "8192,20000" };
        var repeat = ToolOptions.Int("--repeat", "Timed prefills per path and case.", 5, 1);
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var command = new Command("prefill-attention", "Packed prefill with flash attention against the masked chunks: cache rows, logits, time; needs CUDA.")
        {
            model, context, fresh, prompts, repeat, output,
        };
        command.SetAction(p => Run(p.GetValue(model)!, p.GetValue(context), p.GetValue(fresh),
            p.GetValue(prompts)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
            p.GetValue(repeat), p.GetValue(output), p.InvocationConfiguration.Output, p.InvocationConfiguration.Error));
        return command;
    }

    public static int Run(string shape, int context, int newTokens, int[] freshLengths, int repeat, string? outputPath, TextWriter output, TextWriter error)
    {
        string version = TorchRuntime.EnsureLoaded();
        // Without CUDA (a smoke run of this command on a small shape): float32 on the CPU, the script's reference attention
        // in place of flash, no floor.
        bool cuda = torch.cuda.is_available();
        Device device = cuda ? CUDA : CPU;
        PrefillAttention fast = cuda ? PrefillAttention.Flash : PrefillAttention.Packed;
        ModelConfig config = ModelShapes.Get(shape);
        int capacity = Math.Max(context + newTokens, freshLengths.DefaultIfEmpty(0).Max()) + 64;
        var options = new TargetModelOptions
        {
            Device = device, DType = cuda ? ScalarType.BFloat16 : ScalarType.Float32, MaxBatch = 4, MaxContext = capacity, CudaGraphs = cuda,
            PrefillAttention = cuda ? PrefillAttention.Auto : PrefillAttention.Packed,
        };
        using TargetModel target = TargetModel.CreateRandom(config, options, seed: 1);
        string gpu = cuda ? VerifyCostCommand.GpuName() : "cpu";
        output.WriteLine($"libtorch {version}, {gpu}, {shape}; {target.StepPaths}");
        if (target.PrefillPath != fast)
        {
            error.WriteLine("Prefill does not run flash attention here (see the prefill part of the line above).");
            return GraphProbeCommand.MismatchExitCode;
        }
        double tflops = cuda ? Ceilings.Measure(CUDA).MatmulTflops : double.NaN;
        if (cuda)
        {
            output.WriteLine($"matrix products: {tflops:F0} TFLOP/s (8192³ bfloat16, this run)");
        }
        var random = new Random(7);
        int[] Tokens(int count) => Enumerable.Range(0, count).Select(_ => random.Next(config.VocabSize)).ToArray();

        // Checks. Continued: slot 0 caches the conversation (masked), slot 1 shares its rows; each then prefills the
        // same new tokens, slot 0 masked and slot 1 flash.
        var checks = new List<PrefillCheck>();
        int[] conversation = Tokens(context), added = Tokens(newTokens);
        target.PrefillPath = PrefillAttention.Masked;
        target.Prefill([(0, conversation)]);
        int shared = target.ReusePrefix(1, conversation);
        if (shared != context)
        {
            error.WriteLine($"slot 1 shared {shared} of the {context} cached tokens; the check needs all of them.");
            return GraphProbeCommand.MismatchExitCode;
        }
        target.Prefill([(0, added)]);
        target.PrefillPath = fast;
        target.Prefill([(1, added)]);
        checks.Add(Compare(target, $"continued: {context} cached + {newTokens} new", [0], [1], context, random));
        // Fresh: two prompts of different lengths in the same packed forwards (slots 3 and 2) against the masked path
        // (slots 1 and 0).
        foreach (int slot in new[] { 0, 1 })
        {
            target.Truncate(slot, 0);
        }
        int[] a = Tokens(Math.Min(3000, context)), b = Tokens(Math.Max(1, Math.Min(1300, context / 2)));
        target.PrefillPath = PrefillAttention.Masked;
        target.Prefill([(0, a), (1, b)]);
        target.PrefillPath = fast;
        target.Prefill([(3, a), (2, b)]);
        checks.Add(Compare(target, $"fresh: prompts of {a.Length} and {b.Length} tokens in one call", [0, 1], [3, 2], 0, random));
        foreach (PrefillCheck c in checks)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"check {c.What}: cache rows rel. error {c.CacheRelativeError:E2}, next logits rel. error {c.LogitRelativeError:E2}, same argmax {c.SameArgmax}/{c.Sequences}: {(c.Passed ? "pass" : "FAIL")}"));
        }
        for (int slot = 0; slot < 4; slot++)
        {
            target.Truncate(slot, 0);
        }

        // Timings: the continued call (slot 0 holds the conversation; each repeat cuts it back), then fresh prompts (slot 2).
        var timings = new List<PrefillTiming>();
        target.PrefillPath = PrefillAttention.Masked;
        target.Prefill([(0, conversation)]);
        int root = added[^1];
        double StepMs()
        {
            return 1e3 * Ceilings.MedianSeconds(device, () =>
            {
                target.Truncate(0, context + newTokens - 1);
                target.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)]);
            }, 2, repeat);
        }
        (double maskedMedian, double maskedMin) = Time(target, PrefillAttention.Masked, repeat, () =>
        {
            target.Truncate(0, context);
            target.Prefill([(0, added[..^1])]);
        });
        (double flashMedian, double flashMin) = Time(target, fast, repeat, () =>
        {
            target.Truncate(0, context);
            target.Prefill([(0, added[..^1])]);
        });
        timings.Add(new PrefillTiming($"continued call: {context} cached + {newTokens} new", context, newTokens - 1, maskedMedian, maskedMin, flashMedian, flashMin,
            FloorMs(config, context, newTokens - 1, tflops), StepMs()));
        target.Truncate(0, 0);
        foreach (int length in freshLengths)
        {
            int[] prompt = Tokens(length);
            (double mm, double mn) = Time(target, PrefillAttention.Masked, repeat, () =>
            {
                target.Truncate(2, 0);
                target.Prefill([(2, prompt)]);
            });
            (double fm, double fn) = Time(target, fast, repeat, () =>
            {
                target.Truncate(2, 0);
                target.Prefill([(2, prompt)]);
            });
            timings.Add(new PrefillTiming($"fresh prompt of {length}", 0, length, mm, mn, fm, fn, FloorMs(config, 0, length, tflops), double.NaN));
            target.Truncate(2, 0);
        }
        string name = cuda ? "flash" : "packed (reference attention)";
        foreach (PrefillTiming t in timings)
        {
            string step = double.IsNaN(t.FirstStepMs) ? ""
                : string.Create(CultureInfo.InvariantCulture, $"; first step after it {t.FirstStepMs:F1} ms, time to first token ≈ {t.FlashMedianMs + t.FirstStepMs:F1} ms ({name})");
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{t.What}: masked {t.MaskedMedianMs:F1} ms (min {t.MaskedMinMs:F1}), {name} {t.FlashMedianMs:F1} ms (min {t.FlashMinMs:F1}), {t.MaskedMedianMs / t.FlashMedianMs:F2}x; floor {t.FloorMs:F1} ms, {name} at {t.FlashMedianMs / t.FloorMs:F2}x it{step}"));
        }
        bool passed = checks.All(c => c.Passed);
        var result = new PrefillAttentionResult(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), version, gpu, shape, tflops,
            target.StepPaths, checks, timings, passed);
        if (outputPath is not null)
        {
            File.WriteAllText(outputPath, JsonSerializer.Serialize(result, new JsonSerializerOptions
            {
                WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals, // NaN: no floor on the CPU
            }));
        }
        output.WriteLine(passed ? "prefill-attention: every check passed" : "prefill-attention: a check FAILED");
        return passed ? 0 : GraphProbeCommand.MismatchExitCode;
    }

    /// <summary>Median and minimum (ms) of <paramref name="repeat"/> runs of <paramref name="prefill"/> on one path after one
    /// untimed run, the device synchronised around each.</summary>
    private static (double Median, double Min) Time(TargetModel target, PrefillAttention path, int repeat, Action prefill)
    {
        target.PrefillPath = path;
        double[] times = Ceilings.SortedSeconds(target.Device, prefill, 1, repeat);
        return (1e3 * times[repeat / 2], 1e3 * times[0]);
    }

    /// <summary>The new tokens' cache rows and the next step's logits of the flash slots against the masked slots'
    /// (<paramref name="masked"/>[i] against <paramref name="flash"/>[i], the same tokens): the rows from position
    /// <paramref name="start"/> on.</summary>
    private static PrefillCheck Compare(TargetModel target, string what, int[] masked, int[] flash, int start, Random random)
    {
        using var scope = NewDisposeScope();
        double cacheError = 0;
        for (int i = 0; i < masked.Length; i++)
        {
            int count = target.CachedLength(masked[i]) - start;
            Tensor expected = target.CacheRows(masked[i], start, count).to(float32), actual = target.CacheRows(flash[i], start, count).to(float32);
            cacheError = Math.Max(cacheError, RelativeError(expected, actual));
        }
        int root = random.Next(target.Config.VocabSize);
        TreeInput[] inputs = [.. masked.Concat(flash).Select(s => new TreeInput(s, root, DraftTree.Empty))];
        target.SuspendCudaGraphs = true; // one libtorch forward for all slots, whatever the graphed paths take
        Tensor logits = target.TreeLogits(inputs); // [slots, 1, vocab]
        target.SuspendCudaGraphs = false;
        double logitError = 0;
        int same = 0;
        for (int i = 0; i < masked.Length; i++)
        {
            Tensor expected = logits[masked[i], 0], actual = logits[flash[i], 0];
            logitError = Math.Max(logitError, RelativeError(expected, actual));
            same += expected.argmax().item<long>() == actual.argmax().item<long>() ? 1 : 0;
        }
        return new PrefillCheck(what, cacheError, logitError, masked.Length, same, cacheError <= Tolerance && logitError <= Tolerance);
    }

    private static double RelativeError(Tensor expected, Tensor actual) =>
        (expected - actual).abs().max().item<float>() / Math.Max(expected.abs().max().item<float>(), 1e-30);

    /// <summary>The prefill's FLOPs at <paramref name="tflops"/>: the layers' matrix products (2 per weight per token)
    /// and causal attention (4 × heads × head size per query and visible key), the output head left out (prefill
    /// computes no logits).</summary>
    internal static double FloorMs(ModelConfig c, int cached, int tokens, double tflops)
    {
        double perLayerWeights = (double)c.HiddenSize * (c.HeadCount + 2 * c.KeyValueHeadCount) * c.HeadDim + (double)c.HeadCount * c.HeadDim * c.HiddenSize
            + 3.0 * c.HiddenSize * c.IntermediateSize;
        double visibleKeys = (double)tokens * cached + (double)tokens * (tokens + 1) / 2;
        double flops = c.LayerCount * (2.0 * perLayerWeights * tokens + 4.0 * c.HeadCount * c.HeadDim * visibleKeys);
        return flops / (tflops * 1e12) * 1e3;
    }
}
