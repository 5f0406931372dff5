using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>A tree size's timing: the tree kernels (graphed) against the usual path, on one model.</summary>
internal sealed record TreeKernelTiming(int Entries, int PaddedRows, double KernelMedianMs, double KernelMinMs, double UsualMedianMs, double UsualMinMs,
    double KernelToPlain, double UsualToPlain);

/// <summary>One tree size's logits check.</summary>
internal sealed record TreeLogitCheck(int Entries, double RelativeError, double LargestDifference, int RowsWithOtherArgmax, double LargestUsualMarginWhereDifferent,
    bool Repeatable);

internal sealed record TreeKernelsResult(string Date, string LibTorch, string Gpu, string Model, int Context, double PlainMedianMs, double PlainMinMs,
    IReadOnlyList<TreeLogitCheck> Logits, IReadOnlyList<TreeKernelTiming> Timings, int DecodedTokens, int KernelFirstDifference, int UsualFirstDifference,
    double KernelTokensPerStep, bool Passed);

/// <summary>
/// <c>tree-kernels</c>: batch-1 tree verification through the tree kernels (<see cref="TargetModel.UsesTreeKernels"/>)
/// on the GPU, against the usual path on the same model. Three parts: (1) every entry's logits for random trees against
/// the usual path's (relative error, rows whose argmax differs and the usual path's top-two margin there, bitwise
/// repeatability); (2) speculative greedy decoding whose trees hold the true continuation (found first by plain
/// decoding on the usual path) with corrupted tokens and wrong siblings mixed in: the tokens must be the plain ones, for
/// the kernels and for the usual path; (3) the median step of random trees of each size, kernels and usual path, against
/// the graphed plain step, all in one process.
/// </summary>
internal static class TreeKernelsCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (llama-3.1-8b or a config.json).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var checkpoint = new Option<string?>("--checkpoint") { Description = "A checkpoint folder to load instead of random weights (e.g. models/default)." };
        var context = ToolOptions.Int("--context", "Prompt tokens (random) before the trees.", 2048, 1);
        var capacity = ToolOptions.Int("--capacity", "KV cache capacity (MaxContext).", 4096, 1);
        var entries = new Option<string>("--entries") { Description = "Comma-separated tree sizes (root included, at most 64).", DefaultValueFactory = _ => "8,16,32,64" };
        var repeat = ToolOptions.Int("--repeat", "Timed steps per tree size and path.", 32, 1);
        var decode = ToolOptions.Int("--decode", "Tokens of the speculative decoding check.", 64, 1);
        var trace = new Option<bool>("--trace") { Description = "Runs every speculative step on both paths and prints the steps where they disagree (argmax per entry)." };
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var block = new Option<int>("--kv-block") { Description = "Tokens per KV block (TargetModelOptions.KvBlockSize).", DefaultValueFactory = _ => new TargetModelOptions().KvBlockSize };
        var quick = new Option<bool>("--quick") { Description = "Only the logits check and the kernels' step times (no compaction or decoding check, no usual-path times): for A/B runs of kernel variants." };
        var command = new Command("tree-kernels", "Tree verification through the tree kernels against the usual path: logits, tokens, step time; needs CUDA.")
        {
            model, checkpoint, context, capacity, entries, repeat, decode, output, trace, quick, block,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(checkpoint), parse.GetValue(context), parse.GetValue(capacity),
            parse.GetValue(entries)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(),
            parse.GetValue(repeat), parse.GetValue(decode), parse.GetValue(output), parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error,
            parse.GetValue(trace), parse.GetValue(quick), parse.GetValue(block)));
        return command;
    }

    public static int Run(string shape, string? checkpoint, int context, int capacity, int[] sizes, int repeat, int decode, string? outputPath,
        TextWriter output, TextWriter error, bool trace = false, bool quick = false, int kvBlock = 64)
    {
        if (GraphProbeCommand.RequireCudaGraphs("tree-kernels", error, out string version) is int missing)
        {
            return missing;
        }
        if (sizes.Any(s => s is < 2 or > KernelTreeStep.MaxRows))
        {
            error.WriteLine($"--entries: tree sizes from 2 to {KernelTreeStep.MaxRows} (the root and at least one draft node).");
            return 2;
        }
        ModelConfig config = checkpoint is null ? ModelShapes.Get(shape) : ModelConfig.Load(checkpoint);
        var options = new TargetModelOptions { Device = CUDA, DType = ScalarType.BFloat16, MaxContext = capacity, CudaGraphs = true, KvBlockSize = kvBlock };
        using TargetModel target = checkpoint is null ? TargetModel.CreateRandom(config, options, seed: 1) : TargetModel.Load(checkpoint, options);
        string gpu = VerifyCostCommand.GpuName();
        output.WriteLine($"libtorch {version}, {gpu}, {checkpoint ?? shape}, context {context}, KV blocks of {kvBlock}, tree kernels: {target.UsesTreeKernels}");
        if (!target.UsesTreeKernels)
        {
            error.WriteLine("The tree kernels do not run this model here: " + (DecodeKernels.IsAvailable ? KernelTreeStep.Unsupported(config) ?? "the decode-step kernels are off" : DecodeKernels.UnavailableReason));
            return GraphProbeCommand.MismatchExitCode;
        }
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"memory (TargetModel.Memory): weights {target.Memory.WeightBytes / 1e9:F2} GB, KV cache {target.Memory.KvCacheBytes / 1e9:F2} GB, kernel buffers {target.Memory.KernelBufferBytes / 1e6:F1} MB"));
        var random = new Random(11);
        int[] prompt = Enumerable.Range(0, context).Select(_ => random.Next(config.VocabSize)).ToArray();
        target.Prefill([(0, prompt[..^1])]);
        int root = prompt[^1], cached = context - 1;

        // (1) logits
        var checks = new List<TreeLogitCheck>();
        foreach (int size in sizes)
        {
            var input = new TreeInput(0, root, CostCurve.RandomTree(random, size - 1, config.VocabSize));
            using var scope = NewDisposeScope();
            Tensor usual = target.TreeLogits([input])[0];
            Tensor kernels = target.KernelTreeLogits(input);
            Tensor again = target.KernelTreeLogits(input);
            double relative = ((kernels - usual).norm() / usual.norm()).item<float>();
            double largest = (kernels - usual).abs().max().item<float>();
            Tensor other = kernels.argmax(-1).ne(usual.argmax(-1));
            (Tensor top, _) = usual.topk(2);
            Tensor margin = top.select(-1, 0) - top.select(-1, 1);
            int different = (int)other.sum().item<long>();
            double worst = different == 0 ? 0 : margin.masked_select(other).max().item<float>();
            var check = new TreeLogitCheck(size, relative, largest, different, worst, kernels.eq(again).all().item<bool>());
            checks.Add(check);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"logits, {size} entries: relative error {relative:E2}, largest difference {largest:E2}, {different} rows with another argmax " +
                $"(usual path's top-two margin there at most {worst:G3}), repeatable: {check.Repeatable}"));
        }

        bool compactionExact = true;
        int kernelDiff = -1, usualDiff = -1;
        double perStep = 0;
        if (!quick)
        {
            (compactionExact, kernelDiff, usualDiff, perStep) = Decoding(target, config, root, cached, decode, sizes.Max(), trace, output);
        }

        // (3) step times
        target.Truncate(0, cached);
        (_, List<double> plainTimes, _) = DecodeGraphsCommand.TimePlainSteps(target, root, repeat + 3);
        double plainMedian = plainTimes[plainTimes.Count / 2];
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"plain step (kernels, graphed): median {plainMedian:F3} ms (min {plainTimes[0]:F3})"));
        var timings = new List<TreeKernelTiming>();
        foreach (int size in sizes)
        {
            var input = new TreeInput(0, root, CostCurve.RandomTree(random, size - 1, config.VocabSize));
            (double kernelMedian, double kernelMin) = Time(target, input, cached, repeat);
            double usualMedian = double.NaN, usualMin = double.NaN;
            if (!quick)
            {
                target.SuspendTreeKernels = true;
                (usualMedian, usualMin) = Time(target, input, cached, repeat);
                target.SuspendTreeKernels = false;
            }
            var timing = new TreeKernelTiming(size, KernelTreeStep.PaddedRows(size), kernelMedian, kernelMin, usualMedian, usualMin,
                kernelMedian / plainMedian, usualMedian / plainMedian);
            timings.Add(timing);
            string usual = quick ? "" : string.Create(CultureInfo.InvariantCulture, $", usual path {usualMedian:F3} ms ({timing.UsualToPlain:F2}x plain)");
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{size,2} entries: kernels {kernelMedian:F3} ms (min {kernelMin:F3}, {timing.KernelToPlain:F2}x plain){usual}"));
        }
        bool passed = compactionExact && checks.All(c => c.Repeatable);
        output.WriteLine(passed ? "PASS" : "FAIL");
        if (outputPath is not null)
        {
            var result = new TreeKernelsResult(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), version, gpu, checkpoint ?? shape, context,
                plainMedian, plainTimes[0], checks, timings, quick ? 0 : decode, kernelDiff, usualDiff, perStep, passed);
            File.WriteAllText(outputPath, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true }));
        }
        return passed ? 0 : GraphProbeCommand.MismatchExitCode;
    }

    /// <summary>(2a) the compaction check and (2) speculative decoding against plain decoding (on the usual path, which
    /// gives the truth for both): whether the compaction was bitwise exact, the first token where the kernels' and the usual
    /// path's speculative decoding leave plain decoding (-1: never), and the kernels' tokens per step.</summary>
    private static (bool CompactionExact, int KernelDiff, int UsualDiff, double PerStep) Decoding(TargetModel target, ModelConfig config, int root,
        int cached, int decode, int most, bool trace, TextWriter output)
    {
        target.Truncate(0, cached);
        int[] plainTokens = UsualPathTokens(target, root, Math.Max(decode, 8));
        int[] plain = plainTokens[..decode];

        // (2a) the compaction: after a graphed step, the accepted path's rows at length + 1 .. must be the rows the same
        // kernels wrote at length + entry (the eager logits run leaves them there), bit for bit
        bool compactionExact;
        {
            int[] truth = plainTokens[..8];
            target.Truncate(0, cached);
            // a chain of the true continuation and a wrong sibling under each chain node, so accepted entries are not
            // already at their final positions
            var tokens = new List<int>();
            var parents = new List<int>();
            int previous = -1;
            for (int d = 0; d < truth.Length - 1; d++)
            {
                tokens.Add((truth[d] + 1) % config.VocabSize);
                parents.Add(previous);
                tokens.Add(truth[d]);
                parents.Add(previous);
                previous = tokens.Count - 1;
            }
            var input = new TreeInput(0, root, DraftTree.Create(tokens.ToArray(), parents.ToArray(), []));
            using var scope = NewDisposeScope();
            _ = target.KernelTreeLogits(input);
            Tensor written = target.CacheRows(0, cached, tokens.Count + 1);
            VerifiedStep step = target.VerifyGreedy([input])[0];
            Tensor moved = target.CacheRows(0, cached, step.AcceptedNodes.Length + 1);
            compactionExact = step.AcceptedNodes.Length > 0 && moved.select(3, 0).eq(written.select(3, 0)).all().item<bool>();
            for (int d = 0; d < step.AcceptedNodes.Length; d++)
            {
                compactionExact &= moved.select(3, d + 1).eq(written.select(3, step.AcceptedNodes[d] + 1)).all().item<bool>();
            }
            output.WriteLine($"compaction: {step.AcceptedNodes.Length} of {truth.Length - 1} chain nodes accepted (entries {string.Join(' ', step.AcceptedNodes.Select(n => n + 1))}), " +
                $"moved rows bitwise equal to the rows written at their entries: {compactionExact}");
            target.Truncate(0, cached);
        }

        // (2) speculative decoding against plain decoding
        if (trace)
        {
            _ = SpeculativeFirstDifference(target, root, cached, plain, most, new Random(5), kernels: true, out _, output);
        }
        int kernelDiff = SpeculativeFirstDifference(target, root, cached, plain, most, new Random(5), kernels: true, out double perStep);
        int usualDiff = SpeculativeFirstDifference(target, root, cached, plain, most, new Random(5), kernels: false, out _);
        string tie = "";
        if (kernelDiff >= 0)
        {
            // the usual path's top two logits where the kernels' tokens leave plain decoding's (after plain's own tokens)
            target.Truncate(0, cached);
            _ = UsualPathTokens(target, root, kernelDiff);
            int at = kernelDiff == 0 ? root : plain[kernelDiff - 1];
            using var scope = NewDisposeScope();
            (Tensor top, _) = target.TreeLogits([new TreeInput(0, at, DraftTree.Empty)])[0][0].topk(2);
            tie = string.Create(CultureInfo.InvariantCulture, $"; the usual path's top-two margin there: {(top[0] - top[1]).item<float>():G3}");
        }
        output.WriteLine($"speculative decoding of {decode} tokens, trees with the true continuation and wrong branches: kernels " +
            (kernelDiff < 0 ? "IDENTICAL to plain" : $"DIFFER from token {kernelDiff}") + ", usual path " +
            (usualDiff < 0 ? "identical to plain" : $"differs from token {usualDiff}") +
            string.Create(CultureInfo.InvariantCulture, $" ({perStep:F2} tokens per step){tie}"));
        return (compactionExact, kernelDiff, usualDiff, perStep);
    }

    /// <summary>Greedy speculative decoding from <paramref name="root"/> (slot 0 rolled back to <paramref name="cached"/>)
    /// until <paramref name="plain"/>'s length, each step's tree built from the true continuation: a chain of the next
    /// 1-8 true tokens, one of them replaced by another token 30% of the time, and wrong siblings on random chain nodes,
    /// at most <paramref name="most"/> entries. Returns the first index where the tokens leave <paramref name="plain"/>,
    /// or -1.</summary>
    internal static int SpeculativeFirstDifference(TargetModel target, int root, int cached, int[] plain, int most, Random random, bool kernels,
        out double tokensPerStep, TextWriter? trace = null)
    {
        target.Truncate(0, cached);
        target.SuspendTreeKernels = !kernels;
        var produced = new List<int>();
        int steps = 0;
        while (produced.Count < plain.Length)
        {
            (DraftTree tree, int chain, int wrong) = TruthTree(random, plain, produced.Count, most, target.Config.VocabSize);
            var input = new TreeInput(0, root, tree);
            int length = cached + produced.Count;
            VerifiedStep step = target.VerifyGreedy([input])[0];
            if (kernels && trace is not null)
            {
                // the same step on the usual path; report a disagreement and go on from the usual path's result
                int[] graphedArgmax = target.LastKernelTreeArgmax();
                target.Truncate(0, length);
                target.SuspendTreeKernels = true;
                VerifiedStep usual = target.VerifyGreedy([input])[0];
                target.SuspendTreeKernels = false;
                if (!usual.Tokens.SequenceEqual(step.Tokens))
                {
                    target.Truncate(0, length);
                    using var scope = NewDisposeScope();
                    long[] eager = target.KernelTreeLogits(input).argmax(-1).data<long>().ToArray();
                    long[] reference = target.TreeLogits([input])[0].argmax(-1).data<long>().ToArray();
                    trace.WriteLine($"step {steps} (length {length}, {tree.Count + 1} entries, chain {chain}, wrong {wrong}): kernels accepted [{string.Join(' ', step.Tokens)}], " +
                        $"usual [{string.Join(' ', usual.Tokens)}]");
                    trace.WriteLine($"  parents  {string.Join(' ', tree.Parents.ToArray())}");
                    trace.WriteLine($"  tokens   {root} {string.Join(' ', tree.Tokens.ToArray())}");
                    trace.WriteLine($"  usual    {string.Join(' ', reference)}");
                    trace.WriteLine($"  eager    {string.Join(' ', eager)}");
                    trace.WriteLine($"  graphed  {string.Join(' ', graphedArgmax.Take(tree.Count + 1))}");
                    target.Truncate(0, length);
                    target.SuspendTreeKernels = true;
                    usual = target.VerifyGreedy([input])[0];
                    target.SuspendTreeKernels = false;
                }
                step = usual;
            }
            produced.AddRange(step.Tokens);
            root = step.Bonus;
            steps++;
        }
        target.SuspendTreeKernels = false;
        tokensPerStep = (double)produced.Count / steps;
        for (int i = 0; i < plain.Length; i++)
        {
            if (produced[i] != plain[i])
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>A tree of at most <paramref name="most"/> entries built from the true continuation <paramref name="plain"/>
    /// after its first <paramref name="at"/> tokens: a chain of the next 1-8 true tokens, one of them replaced by another
    /// token 30% of the time (<c>Wrong</c>, -1: none), and wrong siblings on random chain nodes (siblings carry distinct
    /// tokens).</summary>
    internal static (DraftTree Tree, int Chain, int Wrong) TruthTree(Random random, int[] plain, int at, int most, int vocab)
    {
        int chain = Math.Min(random.Next(1, 9), Math.Min(plain.Length - at, most - 1));
        var tokens = new List<int>();
        var parents = new List<int>();
        int wrong = random.NextDouble() < 0.3 ? random.Next(chain) : -1;
        for (int d = 0; d < chain; d++)
        {
            int t = plain[at + d];
            tokens.Add(d == wrong ? (t + 1) % vocab : t);
            parents.Add(d - 1);
        }
        while (tokens.Count < most - 1 && random.NextDouble() < 0.9)
        {
            int parent = random.Next(-1, chain);
            int truth = plain[Math.Min(at + parent + 1, plain.Length - 1)];
            int t = (truth + 2 + random.Next(1000)) % vocab;
            if (Enumerable.Range(0, tokens.Count).Any(i => parents[i] == parent && tokens[i] == t) || (parent + 1 < chain && tokens[parent + 1] == t))
            {
                continue;
            }
            tokens.Add(t);
            parents.Add(parent);
        }
        return (DraftTree.Create(tokens.ToArray(), parents.ToArray(), []), chain, wrong);
    }

    /// <summary>Median and minimum of <paramref name="repeat"/> steps over one tree after 3 untimed ones (which capture the
    /// graph), slot 0 at <paramref name="cached"/> before and after each.</summary>
    private static (double Median, double Min) Time(TargetModel target, TreeInput input, int cached, int repeat)
    {
        target.Truncate(0, cached);
        return CostCurve.TimeSteps(target, cached, 1, 3, repeat, () => target.VerifyGreedy([input]));
    }

    /// <summary>Plain greedy decoding of <paramref name="count"/> tokens from <paramref name="root"/> in slot 0 on the usual
    /// path (graphs suspended), from the slot's present length.</summary>
    private static int[] UsualPathTokens(TargetModel target, int root, int count)
    {
        target.SuspendCudaGraphs = true;
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            root = tokens[i] = target.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0].Bonus;
        }
        target.SuspendCudaGraphs = false;
        return tokens;
    }
}
