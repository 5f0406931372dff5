using System.CommandLine;
using System.Diagnostics;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.EngineBench;

/// <summary>Diagnoses per-step cost: plain decoding steps at a fixed cache length (truncated back each step) against a
/// growing cache (every step a new key count), on the main thread and on another thread, with the SDPA backends as
/// libtorch picks them and with cuDNN attention off, and with matrix-product attention.</summary>
internal static class StepsCommand
{
    public static Command Build()
    {
        var config = new Option<string>("--config") { Description = "The target's config.json (weights are random).", DefaultValueFactory = _ => "../shared/fixtures/configs/llama-3.1-8b.config.json" };
        var context = ToolOptions.Int("--context", "Cached tokens before the timed steps.", 5120, 1);
        var steps = ToolOptions.Int("--steps", "Timed steps per variant.", 60, 1);
        var command = new Command("steps", "Time plain decoding steps: fixed vs growing cache length, SDPA backends.") { config, context, steps };
        command.SetAction(p => Run(p.GetValue(config)!, p.GetValue(context), p.GetValue(steps)));
        return command;
    }

    private static int Run(string configPath, int context, int steps)
    {
        TorchRuntime.EnsureLoaded();
        Device device = TorchRuntime.DefaultDevice;
        ModelConfig config = ModelConfig.Load(configPath);
        var options = new TargetModelOptions { Device = device, DType = ScalarType.BFloat16, MaxBatch = 1, MaxContext = context + 4 * steps + 64 };
        using (TargetModel model = TargetModel.CreateRandom(config, options, seed: 1))
        {
            Console.WriteLine($"script executor {ScriptExecutor.Mode}");
            Measure(model, context, steps, "default backends");
            Console.WriteLine($"cuDNN attention off: {AttentionBackends.Set("CuDNN", false)}");
            Measure(model, context, steps, "cuDNN off");
            Console.WriteLine($"flash off, mem-efficient on: {AttentionBackends.Set("Flash", false)}");
            Measure(model, context, steps, "cuDNN+flash off");
            AttentionBackends.Set("CuDNN", true);
            AttentionBackends.Set("Flash", true);
        }
        using (TargetModel matmul = TargetModel.CreateRandom(config, new TargetModelOptions
        {
            Device = device, DType = ScalarType.BFloat16, MaxBatch = 1, MaxContext = context + 4 * steps + 64, MatmulAttentionMinKeys = 0,
        }, seed: 1))
        {
            Measure(matmul, context, steps, "matmul attention (groups*T>=16 only)");
        }
        return 0;
    }

    private static void Measure(TargetModel model, int context, int steps, string label)
    {
        model.SetLengthForBenchmark(0, context);
        for (int i = 0; i < 5; i++)
        {
            model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Empty)]);
            model.Truncate(0, context);
        }
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++)
        {
            model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Empty)]);
            model.Truncate(0, context);
        }
        double fixedMs = sw.Elapsed.TotalMilliseconds / steps;
        sw.Restart();
        for (int i = 0; i < steps; i++)
        {
            model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Empty)]);
        }
        double growingMs = sw.Elapsed.TotalMilliseconds / steps;
        double threadMs = 0;
        var thread = new Thread(() =>
        {
            var w = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++)
            {
                model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Empty)]);
            }
            threadMs = w.Elapsed.TotalMilliseconds / steps;
        });
        thread.Start();
        thread.Join();
        sw.Restart();
        for (int i = 0; i < steps; i++)
        {
            model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Empty)]);
        }
        double growingAgainMs = sw.Elapsed.TotalMilliseconds / steps;
        Console.WriteLine($"{label}: fixed length {fixedMs:F2} ms/step, growing {growingMs:F2}, growing on another thread {threadMs:F2}, growing again {growingAgainMs:F2}");
        model.Truncate(0, 0);
    }
}
