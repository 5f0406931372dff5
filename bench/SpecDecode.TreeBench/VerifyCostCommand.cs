using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>The command line: measure the ceilings, then the verification cost curve and prefill, print a table, write JSON.</summary>
internal static class VerifyCostCommand
{
    public static RootCommand Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (random weights): llama-3.1-8b.", DefaultValueFactory = _ => "llama-3.1-8b" };
        var contexts = new Option<string>("--contexts") { Description = "Cached context lengths, comma list.", DefaultValueFactory = _ => "2048,32768" };
        var batches = new Option<string>("--batches") { Description = "Batch sizes, comma list.", DefaultValueFactory = _ => "1,8" };
        var tokens = new Option<string>("--tokens") { Description = "Tree tokens per sequence (root + draft), comma list.", DefaultValueFactory = _ => "1,2,4,8,16,32,64,128" };
        var prefill = new Option<string>("--prefill") { Description = "Prompt lengths to time a chunked prefill of (batch 1), comma list; empty for none.", DefaultValueFactory = _ => "2048,32768" };
        var chunk = ToolOptions.Int("--chunk", "Prefill chunk.", 512, 1);
        var warmup = ToolOptions.Int("--warmup", "Untimed steps per point.", 3, 0);
        var repeat = ToolOptions.Int("--repeat", "Timed steps per point (median reported).", 15, 1);
        var dtype = ToolOptions.Choice("--dtype", "bfloat16, float16 or float32.", "bfloat16", ["bfloat16", "float16", "float32"]);
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var eager = new Option<bool>("--eager") { Description = "Run the decoder layers eagerly (one TorchSharp call per op) instead of the compiled TorchScript function." };
        var markdown = new Option<string?>("--markdown") { Description = "Markdown file for the report (plain decoding, verification with issue 6's goal-2 ratios, prefill, memory)." };
        var plainSteps = ToolOptions.Int("--plain-steps", "Graphed plain decoding steps timed per context on CUDA (0: none).", 32, 0);
        var sampled = new Option<bool>("--sampled") { Description = "Also time VerifySampled (temperature 1, top-p 0.9, seeded) at every point." };
        var root = new RootCommand("Times batched tree verification of a Llama-family target model (random weights) on the default device.")
        {
            model, contexts, batches, tokens, prefill, chunk, warmup, repeat, dtype, output, sampled, eager, markdown, plainSteps,
        };
        root.SetAction(parse => Run(
            parse.GetValue(model)!, Ints(parse.GetValue(contexts)!), Ints(parse.GetValue(batches)!), Ints(parse.GetValue(tokens)!),
            Ints(parse.GetValue(prefill)!), parse.GetValue(chunk), parse.GetValue(warmup), parse.GetValue(repeat),
            parse.GetValue(dtype)!, parse.GetValue(output), parse.GetValue(sampled), parse.GetValue(eager), parse.GetValue(markdown), parse.GetValue(plainSteps)));
        return root;
    }

    private static int[] Ints(string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    private static int Run(string shape, int[] contexts, int[] batches, int[] tokens, int[] prefills, int chunk, int warmup, int repeat, string dtypeName, string? output, bool sampled, bool eager,
        string? markdown = null, int plainSteps = 0)
    {
        string version = TorchRuntime.EnsureLoaded();
        Device device = TorchRuntime.DefaultDevice;
        ScalarType dtype = dtypeName switch
        {
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            "float32" => ScalarType.Float32,
            _ => throw new ArgumentException($"--dtype {dtypeName}: bfloat16, float16 or float32."),
        };
        Console.WriteLine($"libtorch {version}, device {device}, cuda available {torch.cuda.is_available()}");
        (double copy, double tflops) = Ceilings.Measure(device);
        Console.WriteLine($"ceilings: copy {copy:F0} GB/s (read + write), bf16 matmul 8192^3 {tflops:F0} TFLOP/s");

        ModelConfig config = ModelShapes.Get(shape);
        int maxContext = Math.Max(contexts.Max() + tokens.Max(), prefills.DefaultIfEmpty(0).Max());
        var options = new TargetModelOptions { Device = device, DType = dtype, MaxBatch = batches.Max(), MaxContext = maxContext, PrefillChunk = chunk, ScriptedLayers = !eager };
        TargetModel target = TargetModel.CreateRandom(config, options, seed: 1);
        Console.WriteLine($"{shape}: random {dtype} weights, KV cache {options.MaxBatch} x {maxContext} tokens, layers {(target.UsesScriptedLayers ? "scripted (TorchScript)" : "eager")}");
        var curve = new CostCurve(target, copy, tflops);

        var prefillPoints = new List<PrefillPoint>();
        foreach (int n in prefills)
        {
            PrefillPoint p = curve.Prefill(n, chunk);
            prefillPoints.Add(p);
            Console.WriteLine($"prefill {n} tokens (chunk {chunk}): {p.Seconds:F3} s, {p.TokensPerSecond:F0} tokens/s");
        }

        var points = new List<CostPoint>();
        SamplingOptions? sampling = sampled ? new SamplingOptions { Temperature = 1, TopP = 0.9f, Seed = 7 } : null;
        Console.WriteLine("context batch tree_tokens median_ms min_ms floor_ms bound median/floor ms_per_seq_token sampled_median_ms");
        foreach (int context in contexts)
        {
            target.FillCacheForBenchmark(context);
            foreach (int batch in batches)
            {
                foreach (int n in tokens)
                {
                    CostPoint p = curve.Measure(context, batch, n, warmup, repeat, sampling);
                    points.Add(p);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{context,7} {batch,5} {n,11} {p.MedianMs,9:F2} {p.MinMs,6:F2} {p.FloorMs,8:F2} {p.FloorBound,-7} {p.MedianMs / p.FloorMs,6:F2} {p.MedianMs / (batch * n),8:F3} {p.SampledMedianMs,9:F2}"));
                }
            }
        }
        target.Dispose(); // the graphed plain-decoding models below need its memory
        var plain = new List<PlainPoint>();
        if (plainSteps > 0 && device.type == DeviceType.CUDA && CudaGraph.IsAvailable)
        {
            foreach (int context in contexts)
            {
                double floor = points.FirstOrDefault(p => p.Context == context && p.Batch == 1 && p.TreeTokens == 1)?.FloorMs ?? double.NaN;
                PlainPoint p = BenchReport.Plain(config, dtype, context, plainSteps, floor);
                plain.Add(p);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"plain decoding, context {context}, graphed ({p.Path}): median {p.MedianMs:F2} ms (min {p.MinMs:F2}), floor {p.FloorMs:F2} ms"));
            }
        }
        MemoryPoint? memory = device.type == DeviceType.CUDA ? BenchReport.Memory(config, dtype, 8, 32768) : null;
        if (markdown is not null)
        {
            File.WriteAllText(markdown, BenchReport.Markdown(device.type == DeviceType.CUDA ? GpuName() : "cpu", shape, dtype, copy, tflops, points, plain, prefillPoints, memory));
        }
        if (output is not null)
        {
            var result = new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture),
                libtorch = version,
                device = device.ToString(),
                gpu = device.type == DeviceType.CUDA ? GpuName() : "cpu",
                model = shape,
                dtype = dtype.ToString(),
                layers = target.UsesScriptedLayers ? "scripted" : "eager",
                copyGBps = copy,
                matmulTflops = tflops,
                prefill = prefillPoints,
                points,
                plain,
                memory,
            };
            File.WriteAllText(output, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        }
        return 0;
    }

    internal static string GpuName() => NvidiaSmi("name") ?? "unknown (nvidia-smi not found)";

    /// <summary>The first GPU's <paramref name="field"/> as nvidia-smi reports it (no header, no units), or null when
    /// nvidia-smi is not there.</summary>
    internal static string? NvidiaSmi(string field)
    {
        try
        {
            var info = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("nvidia-smi", $"--query-gpu={field} --format=csv,noheader,nounits") { RedirectStandardOutput = true });
            string value = info!.StandardOutput.ReadToEnd().Trim().Split('\n')[0].Trim();
            info.WaitForExit();
            return value;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
