using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One draft forward's logits, tree kernels against the libtorch path.</summary>
internal sealed record DraftForwardCheck(string Forward, int Rows, double RelativeError, int RowsWithOtherArgmax, bool Repeatable, string KernelPath);

/// <summary>One draft forward's time, tree kernels and libtorch path, against the floor of the batch.</summary>
internal sealed record DraftForwardTiming(string Forward, int Sequences, int EntriesEach, double KernelMedianMs, double UsualMedianMs, double FloorMs,
    double KernelToFloor, string KernelPath);

internal sealed record DraftForwardResult(string Date, string LibTorch, string Gpu, string Model, int Context, int Batch, double CopyGBps,
    IReadOnlyList<DraftForwardCheck> Checks, IReadOnlyList<DraftForwardTiming> Timings, bool Passed);

/// <summary>
/// <c>draft-forward</c>: a draft model's forwards (<see cref="TargetModel.DraftLogits"/>, as <see cref="DraftModelDrafter"/>
/// runs them) through the tree kernels against the libtorch path, on one random model of a draft's shape (a
/// config.json, e.g. Llama-3.2-1B's), every slot's cache random and at its own length. The kernels feed a slot's whole
/// draft region again in each forward (<see cref="TargetModel.KernelDraftStep"/>).
/// (1) Logits of four forwards of a proposal, each against the libtorch path's forward after the same earlier forwards,
/// and bitwise repeatability; passes when the kernels ran each and are within 0.1 relative (batch-kernels' bound).
/// The forwards: the first (each slot's pending chain of 1 to 3 tokens), 4 nodes below the root, 8 nodes below those
/// (5 earlier entries fed again), and 8 more (13 earlier; at batch 32 that is 672 rows, more than a step takes, so two
/// steps).
/// (2) The median forward of one pending token per slot (the steady state of a proposal's first forward) and of the two
/// 8-node levels, kernels and libtorch path, against the floor: weights and every slot's cached keys and values once,
/// at the copy bandwidth measured in the same process.
/// </summary>
internal static class DraftForwardCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape: a config.json (a draft model's, e.g. Llama-3.2-1B) or llama-3.1-8b.", Required = true };
        var batch = ToolOptions.Int("--batch", "Sequences per forward (2 to 64).", 32, 2);
        var context = ToolOptions.Int("--context", "Cached tokens per sequence (random keys and values).", 2048, 64);
        var repeat = ToolOptions.Int("--repeat", "Timed forwards per case and path.", 30, 1);
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var command = new Command("draft-forward", "A draft model's forwards through the tree kernels against the libtorch path: logits and time against the floor; needs CUDA.")
        {
            model, batch, context, repeat, output,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(batch), parse.GetValue(context), parse.GetValue(repeat),
            parse.GetValue(output), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    public static int Run(string shape, int batch, int context, int repeat, string? outputPath, TextWriter output, TextWriter error)
    {
        if (batch is < 2 or > KernelTreeStep.MaxSequences)
        {
            error.WriteLine($"--batch: 2 to {KernelTreeStep.MaxSequences}.");
            return 2;
        }
        if (GraphProbeCommand.RequireCudaGraphs("draft-forward", error, out string version) is int missing)
        {
            return missing;
        }
        ModelConfig config = ModelShapes.Get(shape);
        string gpu = VerifyCostCommand.GpuName();
        (double copyGBps, double tflops) = Ceilings.Measure(CUDA);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"libtorch {version}, {gpu}, {config.Architecture} {shape}; copy {copyGBps:F0} GB/s, bf16 matmul {tflops:F0} TFLOP/s"));
        var checks = new List<DraftForwardCheck>();
        var timings = new List<DraftForwardTiming>();
        using (TargetModel target = TargetModel.CreateRandom(config, new TargetModelOptions
        {
            Device = CUDA, DType = ScalarType.BFloat16, MaxBatch = batch, MaxContext = context + 64, CudaGraphs = true,
        }, seed: 1))
        {
            if (!target.UsesTreeKernels)
            {
                error.WriteLine("The tree kernels do not run this model here: " + target.StepPaths);
                return GraphProbeCommand.MismatchExitCode;
            }
            target.FillCacheForBenchmark(context);
            for (int s = 0; s < batch; s++)
            {
                target.Truncate(s, context - s * 37 % 256);
            }
            var random = new Random(5);
            int vocab = config.VocabSize;
            int Token() => random.Next(vocab);
            // A proposal: the pending chain (1 to 3 tokens; its last is the root), 4 children of the root, 2 children each.
            DraftRows[] chain = Enumerable.Range(0, batch).Select(s =>
            {
                int p = 1 + s % 3;
                return new DraftRows(s, 0, Enumerable.Range(-1, p).ToArray(), Enumerable.Range(0, p).Select(_ => Token()).ToArray(), Enumerable.Range(0, p).ToArray());
            }).ToArray();
            (int, int)[] chainRows = chain.Select(d => (d.Slot, d.Tokens.Length - 1)).ToArray();
            // After the first forward the chain but its root is context (as the drafter commits it): region entry 0 is the root.
            int[] roots = chain.Select(d => d.Tokens[^1]).ToArray();
            int[][] level1 = Enumerable.Range(0, batch).Select(_ => Distinct(random, vocab, 4)).ToArray();
            int[][] level2 = Enumerable.Range(0, batch).Select(_ => Distinct(random, vocab, 8)).ToArray();
            DraftRows[] first = Enumerable.Range(0, batch).Select(s => new DraftRows(s, 1, [-1, 0, 0, 0, 0], level1[s], [1, 1, 1, 1], [roots[s]])).ToArray();
            DraftRows[] second = Enumerable.Range(0, batch).Select(s => new DraftRows(s, 5, [-1, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4], level2[s],
                [2, 2, 2, 2, 2, 2, 2, 2], [roots[s], .. level1[s]])).ToArray();
            int[][] level3 = Enumerable.Range(0, batch).Select(_ => Distinct(random, vocab, 8)).ToArray();
            DraftRows[] third = Enumerable.Range(0, batch).Select(s => new DraftRows(s, 13,
                [-1, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8], level3[s], [3, 3, 3, 3, 3, 3, 3, 3],
                [roots[s], .. level1[s], .. level2[s]])).ToArray();
            (int, int)[] Rows(DraftRows[] inputs) => inputs.SelectMany(d => Enumerable.Range(0, d.Tokens.Length).Select(t => (d.Slot, t))).ToArray();

            // (1) the libtorch path's forwards in the drafter's order, then the kernels' for each
            target.SuspendTreeKernels = true;
            Tensor usualChain = Host(target.DraftLogits(chain, chainRows));
            for (int s = 0; s < batch; s++)
            {
                target.CommitDraftRegion(s, chain[s].Tokens.AsSpan(0, chain[s].Tokens.Length - 1));
            }
            Tensor usualFirst = Host(target.DraftLogits(first, Rows(first)));
            Tensor usualSecond = Host(target.DraftLogits(second, Rows(second)));
            Tensor usualThird = Host(target.DraftLogits(third, Rows(third)));
            target.SuspendTreeKernels = false;
            for (int s = 0; s < batch; s++)
            {
                target.Truncate(s, context - s * 37 % 256);
            }
            checks.Add(Check(target, "first forward (pending chains of 1-3)", chain, chainRows, usualChain));
            for (int s = 0; s < batch; s++)
            {
                target.CommitDraftRegion(s, chain[s].Tokens.AsSpan(0, chain[s].Tokens.Length - 1));
            }
            checks.Add(Check(target, "4 nodes below the root", first, Rows(first), usualFirst));
            checks.Add(Check(target, "8 nodes, 5 earlier entries fed again", second, Rows(second), usualSecond));
            checks.Add(Check(target, $"8 nodes, 13 earlier ({batch * 21} rows)", third, Rows(third), usualThird));
            foreach (DraftForwardCheck c in checks)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{c.Forward,-40} {c.Rows,4} rows: relative error {c.RelativeError:E2}, {c.RowsWithOtherArgmax} rows with another argmax, repeatable {c.Repeatable}; {c.KernelPath}"));
            }

            // (2) times: one pending token per slot, and the 8-node level
            var curve = new CostCurve(target, copyGBps, tflops);
            DraftRows[] steady = Enumerable.Range(0, batch).Select(s => new DraftRows(s, 0, [-1], [Token()], [0])).ToArray();
            timings.Add(Time(target, curve, "one pending token per sequence", steady, Rows(steady), context, 1, repeat));
            timings.Add(Time(target, curve, "8 nodes, 5 earlier entries again", second, Rows(second), context, 13, repeat));
            timings.Add(Time(target, curve, "8 nodes, 13 earlier entries again", third, Rows(third), context, 21, repeat));
            foreach (DraftForwardTiming t in timings)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{t.Forward,-36} batch {t.Sequences}: kernels {t.KernelMedianMs:F3} ms, {t.KernelToFloor:F2}x the floor {t.FloorMs:F3} ms; libtorch path {t.UsualMedianMs:F3} ms ({t.UsualMedianMs / t.KernelMedianMs:F2}x the kernels); {t.KernelPath}"));
            }
        }
        // a check the libtorch path ran on both sides would compare it with itself
        bool passed = checks.Count > 0 && checks.All(c => c.RelativeError < 0.1 && c.Repeatable && c.KernelPath.StartsWith("tree kernels", StringComparison.Ordinal));
        output.WriteLine(passed ? "PASS: the kernels ran every draft forward, matched the libtorch path's logits and repeated bitwise" : "FAIL: see the checks above");
        if (outputPath is not null)
        {
            var result = new DraftForwardResult(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), version, gpu, shape, context, batch,
                copyGBps, checks, timings, passed);
            File.WriteAllText(outputPath, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        }
        return passed ? 0 : GraphProbeCommand.MismatchExitCode;
    }

    private static int[] Distinct(Random random, int vocab, int count)
    {
        var set = new HashSet<int>();
        while (set.Count < count)
        {
            set.Add(random.Next(vocab));
        }
        return [.. set];
    }

    private static Tensor Host(Tensor logits)
    {
        using (logits)
        {
            return logits.to(ScalarType.Float32).cpu();
        }
    }

    private static DraftForwardCheck Check(TargetModel target, string name, DraftRows[] inputs, (int, int)[] rows, Tensor usual)
    {
        using var scope = NewDisposeScope();
        string path = target.DraftForwardPath(inputs, rows);
        Tensor kernels = target.DraftLogits(inputs, rows).to(ScalarType.Float32).cpu();
        Tensor again = target.DraftLogits(inputs, rows).to(ScalarType.Float32).cpu();
        double relative = ((kernels - usual).norm() / usual.norm()).item<float>();
        int different = (int)kernels.argmax(-1).ne(usual.argmax(-1)).sum().item<long>();
        return new DraftForwardCheck(name, rows.Length, relative, different, kernels.eq(again).all().item<bool>(), path);
    }

    private static DraftForwardTiming Time(TargetModel target, CostCurve curve, string name, DraftRows[] inputs, (int, int)[] rows, int context,
        int entries, int repeat)
    {
        string path = target.DraftForwardPath(inputs, rows);
        void Forward() => target.DraftLogits(inputs, rows).Dispose();
        double kernels = Ceilings.MedianSeconds(CUDA, Forward, 3, repeat) * 1e3;
        target.SuspendTreeKernels = true;
        double usual = Ceilings.MedianSeconds(CUDA, Forward, 2, Math.Max(3, repeat / 3)) * 1e3;
        target.SuspendTreeKernels = false;
        double floor = curve.Floor(context, inputs.Length, entries).Ms;
        return new DraftForwardTiming(name, inputs.Length, entries, kernels, usual, floor, kernels / floor, path);
    }
}
