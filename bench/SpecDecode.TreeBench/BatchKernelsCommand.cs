using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SpecDecode.CommandLine;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>One batch's logits check: the batched tree-kernel step against the usual path and against each sequence run
/// alone through the kernels.</summary>
internal sealed record BatchLogitCheck(string Batch, int Sequences, int Rows, double RelativeError, double WorstSequenceRelativeError,
    int RowsWithOtherArgmax, double LargestUsualMarginWhereDifferent, double AloneRelativeError, bool Repeatable);

/// <summary>One batch's step time: the tree kernels (graphed) and the usual path, against the floor.</summary>
internal sealed record BatchTiming(string Batch, int Context, int Sequences, int EntriesEach, double KernelMedianMs, double KernelMinMs,
    double UsualMedianMs, double SampledMedianMs, double FloorMs, double KernelToFloor, double KernelToPlain);

/// <summary>The sampled check: the first token's frequencies over many sampled steps of one tree against the target's
/// distribution (temperature 1, top-k), as a total variation distance.</summary>
internal sealed record SampledCheck(int Steps, int TopK, double TotalVariation, double Bound, double UsualTotalVariation, int UsualSteps);

internal sealed record BatchKernelsResult(string Date, string LibTorch, string Gpu, string Model, int Context, int LongContext, double CopyGBps,
    IReadOnlyList<BatchLogitCheck> Logits, bool CompactionExact, bool ForcedTokensRight, int DecodedTokens, int[] SpeculativeFirstDifference,
    int[] KernelPlainFirstDifference, int[] WideSpeculativeFirstDifference, int[] WideKernelPlainFirstDifference, SampledCheck Sampled,
    IReadOnlyList<BatchTiming> Timings, bool Passed);

/// <summary>
/// <c>batch-kernels</c>: steps of several sequences through the tree kernels (<see cref="KernelTreeStep"/>: batches of
/// plain steps and of trees, up to 512 rows; past 64 rows with cuBLAS's products) on the GPU, against the usual path on
/// the same model (random weights, each slot's cache random, the slots at different lengths). Four parts: (1) every
/// entry's logits for batches of plain steps and of trees, against the usual path and against each sequence run alone
/// through the kernels, and bitwise repeatability; (2) the compaction of a batch of trees under forced acceptance, bit
/// for bit, and the forced tokens; (3) batched speculative greedy decoding with trees holding the true continuation
/// against batched plain decoding (both through the kernels), and the kernels' plain decoding against the usual path's;
/// (4) the median step of batches of plain steps and of trees, kernels and usual path, against the floor (weights and
/// every sequence's cached keys and values once, at the copy bandwidth measured in the same process), and sampled steps
/// (temperature 0.7) against greedy ones, and at the long context a batch of plain steps; (5) sampled verification
/// through the kernels: the first token's frequencies over thousands of steps of one tree (two of the target's top
/// tokens and two others as children) against the target's distribution at temperature 1 and top-k 8. Passes when the
/// kernels repeat bitwise, the compaction is exact, the forced tokens are the recorded ones, every batch's logits are
/// within 0.1 of the usual path's (relative, the batch-1 tree kernels' own figure on this random model is 5.5e-2; a
/// sequence reading another's cache gives about 1) and the sampled frequencies are within Hoeffding's bound of the
/// target's (see <c>CheckSampled</c>).
/// </summary>
internal static class BatchKernelsCommand
{
    public static Command Build()
    {
        var model = new Option<string>("--model") { Description = "Model shape (llama-3.1-8b or a config.json).", DefaultValueFactory = _ => "llama-3.1-8b" };
        var context = ToolOptions.Int("--context", "Cached tokens per sequence (random keys and values) for the checks and the short-context times.", 2048, 64);
        var longContext = ToolOptions.Int("--long-context", "Cached tokens per sequence for the long-context plain batch (0: skip).", 16384, 0);
        var longBatch = ToolOptions.Int("--long-batch", "Sequences of the long-context plain batch.", 8, 2);
        var batches = new Option<string>("--batches") { Description = "Comma-separated plain batch sizes timed (2 to 64).", DefaultValueFactory = _ => "8,16,32,64" };
        var trees = new Option<string>("--trees")
        {
            Description = "Comma-separated tree batches timed, sequences x entries (64 entries a sequence and 512 rows at most; past 64 rows the products are cuBLAS's).",
            DefaultValueFactory = _ => "8x8,4x16,2x32,8x16,32x4,32x8,32x16",
        };
        var repeat = ToolOptions.Int("--repeat", "Timed steps per batch and path.", 20, 1);
        var decode = ToolOptions.Int("--decode", "Tokens per sequence of the decoding check.", 32, 1);
        var sampledSteps = ToolOptions.Int("--sampled-steps", "Sampled steps of the distribution check through the kernels (a quarter of them on the usual path).", 2000, 100);
        var output = new Option<string?>("--out") { Description = "JSON file for the results." };
        var timesOnly = new Option<bool>("--times-only") { Description = "Only the step times (no checks, no PASS/FAIL): for short device calls after the checks have passed." };
        var command = new Command("batch-kernels", "Batches of plain steps and trees through the tree kernels against the usual path: logits, compaction, tokens, step time; needs CUDA.")
        {
            model, context, longContext, longBatch, batches, trees, repeat, decode, sampledSteps, output, timesOnly,
        };
        command.SetAction(parse => Run(parse.GetValue(model)!, parse.GetValue(context), parse.GetValue(longContext), parse.GetValue(longBatch),
            Ints(parse.GetValue(batches)!), parse.GetValue(trees)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => t.Split('x')).Select(p => (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture))).ToArray(),
            parse.GetValue(repeat), parse.GetValue(decode), parse.GetValue(sampledSteps), parse.GetValue(output), parse.InvocationConfiguration.Output,
            parse.InvocationConfiguration.Error, parse.GetValue(timesOnly)));
        return command;
    }

    private static int[] Ints(string list) =>
        list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    public static int Run(string shape, int context, int longContext, int longBatch, int[] batches, (int Sequences, int Entries)[] trees, int repeat,
        int decode, int sampledSteps, string? outputPath, TextWriter output, TextWriter error, bool timesOnly = false)
    {
        if (batches.Any(b => b is < 2 or > KernelTreeStep.MaxSequences)
            || trees.Any(t => t.Sequences < 1 || t.Entries < 1 || t.Entries > KernelTreeStep.MaxRows || t.Sequences * t.Entries > KernelTreeStep.StepRowLimit))
        {
            error.WriteLine($"--batches: 2 to {KernelTreeStep.MaxSequences}; --trees: sequences x entries of at most {KernelTreeStep.MaxRows} entries and {KernelTreeStep.StepRowLimit} rows.");
            return 2;
        }
        if (GraphProbeCommand.RequireCudaGraphs("batch-kernels", error, out string version) is int missing)
        {
            return missing;
        }
        ModelConfig config = ModelShapes.Get(shape);
        string gpu = VerifyCostCommand.GpuName();
        (double copyGBps, double tflops) = Ceilings.Measure(CUDA);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"libtorch {version}, {gpu}, {shape}; copy {copyGBps:F0} GB/s, bf16 matmul {tflops:F0} TFLOP/s"));
        var checks = new List<BatchLogitCheck>();
        var timings = new List<BatchTiming>();
        bool compactionExact, forcedRight;
        SampledCheck sampled = new(0, 0, double.NaN, double.NaN, double.NaN, 0);
        int[] speculative = [], kernelPlain = [], wideSpeculative = [], wideKernelPlain = [];
        compactionExact = forcedRight = false;
        bool sharedGraphs = false;
        int sequencesNeeded = Math.Max(KernelTreeStep.MaxSequences, batches.Max());
        using (TargetModel target = Create(config, sequencesNeeded, context + 2 * KernelTreeStep.MaxRows))
        {
            var curve = new CostCurve(target, copyGBps, tflops);
            var random = new Random(17);
            // (1) logits: the slots at different lengths (context - 0 .. 255), each slot's cache its own random values
            target.FillCacheForBenchmark(context);
            long? freeBefore = FreeDeviceMemory(); // before any step: every graph below is captured after this
            int[] lengths = Enumerable.Range(0, sequencesNeeded).Select(s => context - s * 37 % 256).ToArray();
            Rewind(target, lengths, sequencesNeeded);
            (string Name, TreeInput[] Inputs)[] cases =
            [
                ("8 plain", Plain(random, config, 0, 8)),
                ("32 plain", Plain(random, config, 0, 32)),
                ("64 plain", Plain(random, config, 0, 64)),
                ("8 trees of 8", Trees(random, config, 0, 8, 8)),
                ("4 trees of 16", Trees(random, config, 0, 4, 16)),
                ("2 trees of 32", Trees(random, config, 0, 2, 32)),
                ("a tree of 32, 16 plain, 4 trees of 4", [.. Trees(random, config, 0, 1, 32), .. Plain(random, config, 1, 16), .. Trees(random, config, 17, 4, 4)]),
                ("1 tree of 64 (the batch-1 path)", Trees(random, config, 0, 1, 64)),
                // wide steps: cuBLAS's products between the kernels
                ("8 trees of 16 (128 rows)", Trees(random, config, 0, 8, 16)),
                ("32 trees of 4, 16 plain (144 rows)", [.. Trees(random, config, 0, 32, 4), .. Plain(random, config, 32, 16)]),
                ("32 trees of 16 (512 rows)", Trees(random, config, 0, 32, 16)),
            ];
            foreach ((string name, TreeInput[] inputs) in timesOnly ? [] : cases)
            {
                BatchLogitCheck check = CheckLogits(target, name, inputs);
                checks.Add(check);
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"logits, {name} ({check.Rows} rows): relative error {check.RelativeError:E2} (worst sequence {check.WorstSequenceRelativeError:E2}), " +
                    $"{check.RowsWithOtherArgmax} rows with another argmax (usual path's top-two margin there at most {check.LargestUsualMarginWhereDifferent:G3}); " +
                    $"against each sequence alone through the kernels {check.AloneRelativeError:E2}; repeatable: {check.Repeatable}"));
            }

            // (2) compaction and forced tokens: seven sequences, each a chain of four recorded tokens with a wrong sibling
            // under every chain node (9 entries), so accepted entries are not already at their final positions
            if (!timesOnly)
            {
                (compactionExact, forcedRight) = CheckCompaction(target, random, lengths);
                output.WriteLine($"compaction of 7 forced chains: moved rows bitwise equal to the rows written at their entries: {compactionExact}; tokens are the recorded ones: {forcedRight}");

                // (3) decoding: batched plain decoding through the kernels (the truth), through the usual path, and batched
                // speculative decoding through the kernels with trees of the truth
                (speculative, kernelPlain) = CheckDecoding(target, random, lengths, 8, decode, output);
                // 32 sequences with trees of up to 8 entries: steps of up to 256 rows, wide ones among them
                (wideSpeculative, wideKernelPlain) = CheckDecoding(target, random, lengths, 32, decode, output);

                // (5) sampled verification through the kernels against the target's distribution
                sampled = CheckSampled(target, random, lengths[0], sampledSteps, output);

                // (6) lone plain steps of 8 slots through the graphed decode-step kernels, whose graphs the slots share
                sharedGraphs = CheckSharedPlainGraphs(target, random, lengths, output);
            }

            // (4) times, every slot at the context (filled again: the checks left the slots at other lengths)
            target.FillCacheForBenchmark(context);
            int root = random.Next(config.VocabSize);
            (_, List<double> plainOne, _) = DecodeGraphsCommand.TimePlainSteps(target, root, repeat + 3);
            target.Truncate(0, context);
            double oneMedian = plainOne[plainOne.Count / 2];
            double oneFloor = curve.Floor(context, 1, 1).Ms;
            timings.Add(new BatchTiming("1 plain (decode-step kernels)", context, 1, 1, oneMedian, plainOne[0], double.NaN, double.NaN, oneFloor, oneMedian / oneFloor, 1));
            Report(output, timings[^1]);
            var plainMedians = new Dictionary<int, double> { [1] = oneMedian };
            foreach (int b in batches)
            {
                BatchTiming t = Time(target, curve, $"{b} plain", Plain(random, config, 0, b), context, 1, repeat, plainMedians);
                plainMedians[b] = t.KernelMedianMs;
                timings.Add(t with { KernelToPlain = 1 });
                Report(output, timings[^1]);
            }
            foreach ((int sequences, int entries) in trees)
            {
                timings.Add(Time(target, curve, $"{sequences} trees of {entries}", Trees(random, config, 0, sequences, entries), context, entries, repeat, plainMedians));
                Report(output, timings[^1]);
            }
            GraphMemory(output, target, freeBefore);
        }
        if (longContext > 0)
        {
            using TargetModel target = Create(config, longBatch, longContext + 2 * KernelTreeStep.MaxRows);
            var curve = new CostCurve(target, copyGBps, tflops);
            var random = new Random(23);
            target.FillCacheForBenchmark(longContext);
            TreeInput[] inputs = Plain(random, config, 0, longBatch);
            if (!timesOnly)
            {
                BatchLogitCheck check = CheckLogits(target, $"{longBatch} plain at {longContext}", inputs);
                checks.Add(check);
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"logits, {check.Batch}: relative error {check.RelativeError:E2} (worst sequence {check.WorstSequenceRelativeError:E2}), against each alone {check.AloneRelativeError:E2}; repeatable: {check.Repeatable}"));
            }
            timings.Add(Time(target, curve, $"{longBatch} plain at {longContext}", inputs, longContext, 1, repeat, new Dictionary<int, double>()) with { KernelToPlain = 1 });
            Report(output, timings[^1]);
        }
        bool passed = compactionExact && forcedRight && sharedGraphs && sampled.TotalVariation <= sampled.Bound
            && checks.All(c => c.Repeatable && c.RelativeError <= 0.1 && c.WorstSequenceRelativeError <= 0.1);
        output.WriteLine(timesOnly ? "times only: no checks ran" : passed ? "PASS" : "FAIL");
        if (outputPath is not null)
        {
            var result = new BatchKernelsResult(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture), version, gpu, shape, context, longContext,
                copyGBps, checks, compactionExact, forcedRight, decode, speculative, kernelPlain,
                wideSpeculative, wideKernelPlain, sampled, timings, passed);
            File.WriteAllText(outputPath, JsonSerializer.Serialize(result, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
        }
        return timesOnly || passed ? 0 : GraphProbeCommand.MismatchExitCode;
    }

    /// <summary>The graphs this model keeps and the device memory taken since <paramref name="freeBefore"/>: an upper
    /// bound of what one graph holds (the steps' workspaces and the allocator's growth count too), for choosing
    /// <see cref="TargetModelOptions.MaxCudaGraphs"/>.</summary>
    private static void GraphMemory(TextWriter output, TargetModel target, long? freeBefore)
    {
        int graphs = target.CapturedGraphCount + target.CapturedTreeGraphCount;
        long? freeAfter = FreeDeviceMemory();
        string taken = freeBefore is long before && freeAfter is long after
            ? string.Create(CultureInfo.InvariantCulture, $"{(before - after) / 1048576.0:F1} MiB taken since the first step, at most {(before - after) / 1048576.0 / Math.Max(1, graphs):F2} MiB a graph")
            : "device memory not readable";
        output.WriteLine($"graphs kept: {target.CapturedGraphCount} plain, {target.CapturedTreeGraphCount} tree ({target.CudaGraphChurn.Evicted} evicted); {taken}");
    }

    /// <summary>The device's free bytes from the driver the kernels loaded through; null where they did not load.</summary>
    private static long? FreeDeviceMemory() => DecodeKernels.IsAvailable ? DecodeKernels.Get().FreeDeviceMemory() : null;

    private static TargetModel Create(ModelConfig config, int sequences, int capacity) =>
        TargetModel.CreateRandom(config, new TargetModelOptions
        {
            Device = CUDA, DType = ScalarType.BFloat16, MaxBatch = sequences, MaxContext = capacity, CudaGraphs = true,
        }, seed: 1);

    /// <summary>Slots <paramref name="first"/> .. first + count − 1, each a random root without a draft.</summary>
    private static TreeInput[] Plain(Random random, ModelConfig config, int first, int count) =>
        Enumerable.Range(first, count).Select(s => new TreeInput(s, random.Next(config.VocabSize), DraftTree.Empty)).ToArray();

    /// <summary>Slots <paramref name="first"/> .. first + count − 1, each a random root with a random tree of
    /// <paramref name="entries"/> − 1 nodes.</summary>
    private static TreeInput[] Trees(Random random, ModelConfig config, int first, int count, int entries) =>
        Enumerable.Range(first, count).Select(s => new TreeInput(s, random.Next(config.VocabSize), CostCurve.RandomTree(random, entries - 1, config.VocabSize))).ToArray();

    private static BatchLogitCheck CheckLogits(TargetModel target, string name, TreeInput[] inputs)
    {
        using var scope = NewDisposeScope();
        Tensor usualAll = target.TreeLogits(inputs);
        Tensor[] usual = inputs.Select(i => usualAll[i.Slot].narrow(0, 0, i.Draft.Count + 1)).ToArray();
        Tensor[] kernels = target.KernelTreeLogits(inputs);
        Tensor[] again = target.KernelTreeLogits(inputs);
        Tensor[] alone = inputs.Select(i => target.KernelTreeLogits(i)).ToArray();
        Tensor u = cat(usual, 0), k = cat(kernels, 0), a = cat(alone, 0);
        double relative = ((k - u).norm() / u.norm()).item<float>();
        double worst = inputs.Select((_, i) => (double)((kernels[i] - usual[i]).norm() / usual[i].norm()).item<float>()).Max();
        Tensor other = k.argmax(-1).ne(u.argmax(-1));
        (Tensor top, _) = u.topk(2);
        Tensor margin = top.select(-1, 0) - top.select(-1, 1);
        int different = (int)other.sum().item<long>();
        double largestMargin = different == 0 ? 0 : margin.masked_select(other).max().item<float>();
        double aloneError = ((k - a).norm() / a.norm()).item<float>();
        bool repeatable = kernels.Zip(again).All(p => p.First.eq(p.Second).all().item<bool>());
        return new BatchLogitCheck(name, inputs.Length, (int)k.shape[0], relative, worst, different, largestMargin, aloneError, repeatable);
    }

    private static (bool Exact, bool ForcedRight) CheckCompaction(TargetModel target, Random random, int[] lengths)
    {
        int vocab = target.Config.VocabSize;
        var inputs = new TreeInput[7];
        var references = new int[7][];
        for (int s = 0; s < inputs.Length; s++)
        {
            int[] chain = Enumerable.Range(0, 5).Select(_ => random.Next(vocab)).ToArray();
            var tokens = new List<int>();
            var parents = new List<int>();
            int previous = -1;
            for (int d = 0; d < 4; d++)
            {
                tokens.Add((chain[d] + 1) % vocab); // the wrong sibling first
                parents.Add(previous);
                tokens.Add(chain[d]);
                parents.Add(previous);
                previous = tokens.Count - 1;
            }
            inputs[s] = new TreeInput(s, random.Next(vocab), DraftTree.Create(tokens.ToArray(), parents.ToArray(), []));
            references[s] = chain;
        }
        using var scope = NewDisposeScope();
        _ = target.KernelTreeLogits(inputs);
        Tensor[] written = inputs.Select(i => target.CacheRows(i.Slot, lengths[i.Slot], i.Draft.Count + 1)).ToArray();
        VerifiedStep[] steps = target.VerifyForced(inputs, references);
        bool exact = true, right = true;
        for (int s = 0; s < inputs.Length; s++)
        {
            VerifiedStep step = steps[s];
            right &= step.Tokens.SequenceEqual(references[s]) && step.AcceptedNodes.SequenceEqual([1, 3, 5, 7]);
            Tensor moved = target.CacheRows(s, lengths[s], step.AcceptedNodes.Length + 1);
            exact &= moved.select(3, 0).eq(written[s].select(3, 0)).all().item<bool>();
            for (int d = 0; d < step.AcceptedNodes.Length; d++)
            {
                exact &= moved.select(3, d + 1).eq(written[s].select(3, step.AcceptedNodes[d] + 1)).all().item<bool>();
            }
            target.Truncate(s, lengths[s]);
        }
        return (exact, right);
    }

    /// <summary>Batched plain decoding of <paramref name="decode"/> tokens per sequence through the kernels (the truth) and
    /// through the usual path, then batched speculative decoding through the kernels with trees of at most 8 entries built
    /// from the truth (<see cref="TreeKernelsCommand.TruthTree"/>: tree-kernels' generator), every slot rolled
    /// back to its length first. Returns per sequence the first token where speculative decoding leaves the kernels' plain
    /// decoding, and where the kernels' plain decoding leaves the usual path's (-1: never).</summary>
    private static (int[] Speculative, int[] KernelPlain) CheckDecoding(TargetModel target, Random random, int[] lengths, int sequences, int decode, TextWriter output)
    {
        int vocab = target.Config.VocabSize;
        int[] roots = Enumerable.Range(0, sequences).Select(_ => random.Next(vocab)).ToArray();
        int[][] PlainDecoding()
        {
            var tokens = Enumerable.Range(0, sequences).Select(_ => new List<int>()).ToArray();
            int[] next = (int[])roots.Clone();
            Rewind(target, lengths, sequences);
            for (int i = 0; i < decode; i++)
            {
                VerifiedStep[] steps = target.VerifyGreedy(Enumerable.Range(0, sequences).Select(s => new TreeInput(s, next[s], DraftTree.Empty)).ToArray());
                for (int s = 0; s < sequences; s++)
                {
                    tokens[s].Add(next[s] = steps[s].Bonus);
                }
            }
            return tokens.Select(t => t.ToArray()).ToArray();
        }
        int[][] truth = PlainDecoding();
        target.SuspendCudaGraphs = true;
        int[][] usual = PlainDecoding();
        target.SuspendCudaGraphs = false;
        int[] kernelPlain = truth.Zip(usual).Select(p => FirstDifference(p.First, p.Second)).ToArray();

        var produced = Enumerable.Range(0, sequences).Select(_ => new List<int>()).ToArray();
        int[] root = (int[])roots.Clone();
        Rewind(target, lengths, sequences);
        int stepsTaken = 0;
        while (produced.Any(p => p.Count < decode))
        {
            var inputs = new List<TreeInput>();
            for (int s = 0; s < sequences; s++)
            {
                if (produced[s].Count >= decode)
                {
                    continue;
                }
                inputs.Add(new TreeInput(s, root[s], TreeKernelsCommand.TruthTree(random, truth[s], produced[s].Count, 8, vocab).Tree));
            }
            VerifiedStep[] steps = target.VerifyGreedy(inputs);
            foreach (VerifiedStep step in steps)
            {
                produced[step.Slot].AddRange(step.Tokens);
                root[step.Slot] = step.Bonus;
            }
            stepsTaken++;
        }
        int[] speculative = Enumerable.Range(0, sequences).Select(s => FirstDifference(produced[s].Take(decode).ToArray(), truth[s])).ToArray();
        // where speculative decoding leaves plain, the plain step's top-two margin there (its own batched kernel logits,
        // the slots brought to that point by forced steps that write what plain decoding wrote)
        string MarginAt(int s, int d)
        {
            Rewind(target, lengths, sequences);
            for (int i = 0; i < d; i++)
            {
                target.VerifyForced(Enumerable.Range(0, sequences).Select(q => new TreeInput(q, i == 0 ? roots[q] : truth[q][i - 1], DraftTree.Empty)).ToArray(),
                    Enumerable.Range(0, sequences).Select(q => new[] { truth[q][i] }).ToArray());
            }
            using var scope = NewDisposeScope();
            Tensor logits = target.KernelTreeLogits(Enumerable.Range(0, sequences).Select(q => new TreeInput(q, d == 0 ? roots[q] : truth[q][d - 1], DraftTree.Empty)).ToArray())[s][0];
            (Tensor top, _) = logits.topk(2);
            return string.Create(CultureInfo.InvariantCulture, $"sequence {s} token {d}: plain's top-two margin {(top[0] - top[1]).item<float>():G3}");
        }
        string margins = string.Join("; ", Enumerable.Range(0, sequences).Where(s => speculative[s] >= 0).Select(s => MarginAt(s, speculative[s])));
        output.WriteLine($"decoding {decode} tokens in each of {sequences} sequences: batched speculative (kernels, trees of 8) against batched plain (kernels): " +
            $"first difference per sequence [{string.Join(' ', speculative)}] (-1: identical), {(double)produced.Sum(p => p.Count) / stepsTaken / sequences:F2} tokens per sequence-step; " +
            $"batched plain, kernels against the usual path: [{string.Join(' ', kernelPlain)}]" + (margins.Length > 0 ? $"; where speculative leaves plain: {margins}" : ""));
        Rewind(target, lengths, sequences);
        return (speculative, kernelPlain);
    }

    /// <summary>Sampled steps of one tree in slot 0 (rolled back to <paramref name="length"/> after each): the root's children
    /// are two of the target's top-8 tokens at the root and two tokens outside them. The first emitted token's frequencies
    /// against the top-8 distribution at temperature 1 of the root's logits in the same step (each path its own: on this
    /// random model two paths' logits differ by about 5 %), as a total variation distance; the bound is Hoeffding's with a
    /// union over the 2^8 subsets at probability 1e-6 (as the CPU test of the sampler), 0.069 for 2,000 draws. The usual
    /// path runs a quarter of the steps for comparison.</summary>
    private static SampledCheck CheckSampled(TargetModel target, Random random, int length, int steps, TextWriter output)
    {
        const int topK = 8;
        int vocab = target.Config.VocabSize;
        target.Truncate(0, length);
        int root = random.Next(vocab);
        int[] top0;
        using (var scope = NewDisposeScope())
        {
            top0 = target.KernelTreeLogits(new TreeInput(0, root, DraftTree.Empty))[0].topk(topK).indexes.data<long>().Select(i => (int)i).ToArray();
        }
        int outside = Enumerable.Range(0, vocab).Select(_ => random.Next(vocab)).First(t => !top0.Contains(t));
        int outside2 = Enumerable.Range(0, vocab).Select(_ => random.Next(vocab)).First(t => !top0.Contains(t) && t != outside);
        var input = new TreeInput(0, root, DraftTree.Create([top0[0], top0[2], outside, outside2], [-1, -1, -1, -1], []));
        var options = new SamplingOptions { Temperature = 1f, TopK = topK, Seed = 99 };
        double Distance(int n, bool kernels, out string detail)
        {
            double[] p;
            int[] top;
            bool tie;
            using (var scope = NewDisposeScope())
            {
                Tensor logits = kernels ? target.KernelTreeLogits(input)[0] : target.TreeLogits([input])[0][0];
                (Tensor values, Tensor indices) = logits.topk(topK + 1);
                float[] v = values.data<float>().ToArray();
                tie = v[topK - 1] == v[topK];
                p = values.narrow(0, 0, topK).softmax(0).to(float64).data<double>().ToArray();
                top = indices.narrow(0, 0, topK).data<long>().Select(i => (int)i).ToArray();
            }
            target.SuspendTreeKernels = !kernels;
            var counts = new Dictionary<int, int>();
            for (int i = 0; i < n; i++)
            {
                int first = target.VerifySampled([input], options)[0].Tokens[0];
                counts[first] = counts.GetValueOrDefault(first) + 1;
                target.Truncate(0, length);
            }
            target.SuspendTreeKernels = false;
            double tv = 0;
            for (int k = 0; k < topK; k++)
            {
                tv += Math.Abs(counts.GetValueOrDefault(top[k]) / (double)n - p[k]);
            }
            int outsideCount = counts.Where(c => !top.Contains(c.Key)).Sum(c => c.Value); // none expected
            tv = (tv + outsideCount / (double)n) / 2;
            detail = string.Create(CultureInfo.InvariantCulture,
                $"counts [{string.Join(' ', top.Select(t => counts.GetValueOrDefault(t)))}] outside {outsideCount}, p [{string.Join(' ', p.Select(x => x.ToString("F3", CultureInfo.InvariantCulture)))}]{(tie ? ", a tie at the 8th logit" : "")}");
            return tv;
        }
        double Bound(int n) => Math.Sqrt((topK * Math.Log(2) + Math.Log(1e6)) / (2.0 * n));
        double kernelsTv = Distance(steps, kernels: true, out string kernelDetail);
        int usualSteps = steps / 4;
        double usualTv = Distance(usualSteps, kernels: false, out string usualDetail);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sampled verification, {steps} steps of a tree with two of the top-{topK} tokens and two others as children: first token against the target's distribution, " +
            $"total variation {kernelsTv:F4} (bound {Bound(steps):F3}; {kernelDetail}); usual path over {usualSteps} steps {usualTv:F4} (bound {Bound(usualSteps):F3}; {usualDetail})"));
        return new SampledCheck(steps, topK, kernelsTv, Bound(steps), usualTv, usualSteps);
    }

    /// <summary>
    /// Lone plain steps of 8 slots in turn, three rounds, through the graphed decode-step kernels: one graph per key bucket
    /// serves every slot, reading a copy of the stepping slot's block table (a bucket's first use runs eagerly, its second
    /// captures, the rest replay). Each step's logits must be bitwise those of the same slot's eager kernel step, which
    /// reads the slot's own table row. True when every step matched.
    /// </summary>
    private static bool CheckSharedPlainGraphs(TargetModel target, Random random, int[] lengths, TextWriter output)
    {
        const int slots = 8, rounds = 3;
        int matched = 0;
        for (int round = 0; round < rounds; round++)
        {
            for (int s = 0; s < slots; s++)
            {
                int root = random.Next(target.Config.VocabSize), length = target.CachedLength(s);
                _ = target.VerifyGreedy([new TreeInput(s, root, DraftTree.Empty)]);
                using Tensor graphed = target.LastKernelDecodeLogits();
                target.Truncate(s, length);
                using Tensor eager = target.KernelDecodeLogits(s, root);
                matched += graphed.eq(eager).all().item<bool>() ? 1 : 0;
                _ = target.VerifyGreedy([new TreeInput(s, root, DraftTree.Empty)]); // the slot moves on by one token
            }
        }
        Rewind(target, lengths, slots);
        output.WriteLine($"lone plain steps of {slots} slots through shared graphs ({target.CapturedGraphCount} plain graphs kept): " +
            $"{matched} of {slots * rounds} steps bitwise equal to the slot's own eager kernel step");
        return matched == slots * rounds;
    }

    /// <summary>Slots 0 .. <paramref name="count"/> − 1 back to their <paramref name="lengths"/>.</summary>
    private static void Rewind(TargetModel target, int[] lengths, int count)
    {
        for (int s = 0; s < count; s++)
        {
            target.Truncate(s, lengths[s]);
        }
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

    /// <summary>The median step of <paramref name="inputs"/> (every slot at <paramref name="context"/> before each), through
    /// the kernels and the usual path, against the floor and against the plain batch of as many sequences.</summary>
    private static BatchTiming Time(TargetModel target, CostCurve curve, string name, TreeInput[] inputs, int context, int entries, int repeat,
        Dictionary<int, double> plainMedians)
    {
        int batch = inputs.Max(i => i.Slot) + 1;
        (double kernel, double kernelMin) = CostCurve.TimeSteps(target, context, batch, 3, repeat, () => target.VerifyGreedy(inputs));
        var warm = new SamplingOptions { Temperature = 0.7f, Seed = 3 };
        (double sampled, _) = CostCurve.TimeSteps(target, context, batch, 3, repeat, () => target.VerifySampled(inputs, warm));
        target.SuspendTreeKernels = true;
        (double usual, _) = CostCurve.TimeSteps(target, context, batch, 2, Math.Max(3, repeat / 4), () => target.VerifyGreedy(inputs));
        target.SuspendTreeKernels = false;
        double floor = curve.Floor(context, inputs.Length, entries).Ms;
        double plain = plainMedians.TryGetValue(inputs.Length, out double p) ? p : double.NaN;
        return new BatchTiming(name, context, inputs.Length, entries, kernel, kernelMin, usual, sampled, floor, kernel / floor, kernel / plain);
    }

    private static void Report(TextWriter output, BatchTiming t)
    {
        string vsPlain = double.IsNaN(t.KernelToPlain) || t.EntriesEach == 1 ? "" : string.Create(CultureInfo.InvariantCulture, $", {t.KernelToPlain:F2}x the plain batch of {t.Sequences}");
        string usual = double.IsNaN(t.UsualMedianMs) ? "" : string.Create(CultureInfo.InvariantCulture, $"; usual path {t.UsualMedianMs:F3} ms ({t.UsualMedianMs / t.KernelMedianMs:F2}x the kernels)");
        usual += double.IsNaN(t.SampledMedianMs) ? "" : string.Create(CultureInfo.InvariantCulture, $"; sampled (temperature 0.7) {t.SampledMedianMs:F3} ms ({t.SampledMedianMs / t.KernelMedianMs:F2}x greedy)");
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{t.Batch,-34} context {t.Context,6}: kernels {t.KernelMedianMs:F3} ms (min {t.KernelMinMs:F3}), {t.KernelToFloor:F2}x the floor {t.FloorMs:F3} ms") + vsPlain + usual);
    }
}
