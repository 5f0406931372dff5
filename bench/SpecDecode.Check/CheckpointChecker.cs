using System.Diagnostics;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Check;

/// <summary>What to check and how.</summary>
public sealed class CheckSettings
{
    /// <summary>The checkpoint folder: config.json, weights, expected.json and expected.safetensors.</summary>
    public required string Folder { get; init; }

    /// <summary>The device type (CPU or CUDA, device 0); null picks <see cref="TorchRuntime.DefaultDevice"/>.</summary>
    public DeviceType? Device { get; init; }

    /// <summary>The dtype to compute in; null picks float32 on the CPU and the checkpoint's dtype elsewhere.</summary>
    public ScalarType? DType { get; init; }

    /// <summary>The relative-error tolerance of the logits; null picks 1e-4 when a float32 checkpoint is computed in
    /// float32, else 2e-2.</summary>
    public double? Tolerance { get; init; }

    /// <summary>The seed of the random draft trees.</summary>
    public int Seed { get; init; } = 20250101;
}

/// <summary>
/// Checks a checkpoint against transformers' reference outputs through the serving <see cref="TargetModel"/>: the
/// prompt's logits (one chain on an empty cache), the reference tree's logits after a prefill, both prompts' logits in
/// one ragged batch, and greedy decoding with no draft, with correct chains among wrong siblings, with seeded random
/// trees, and for both prompts at once in one verification call per step.
/// </summary>
/// <remarks>Greedy speculative decoding with tree verification is lossless: it must emit exactly plain greedy's tokens
/// (SpecInfer, Miao et al. 2024; Medusa, Cai et al. 2024).</remarks>
public static class CheckpointChecker
{
    /// <summary>Tolerance of a float32 checkpoint computed in float32: the fixtures' relative error bound.</summary>
    public const double Float32Tolerance = 1e-4;

    /// <summary>Tolerance when either side is bfloat16 or float16.</summary>
    public const double HalfTolerance = 2e-2;

    /// <summary>Runs every check; <paramref name="progress"/> hears what it is doing.</summary>
    /// <exception cref="CheckInputException">The folder, its files or the device are unusable.</exception>
    public static CheckReport Run(CheckSettings settings, Action<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        progress ??= _ => { };
        var clock = Stopwatch.StartNew();
        ReferenceFixture fixture = ReferenceFixture.Load(settings.Folder);
        ModelConfig config;
        string libtorch;
        try
        {
            config = ModelConfig.Load(settings.Folder);
            libtorch = TorchRuntime.EnsureLoaded();
        }
        catch (Exception e) when (e is ModelConfigException or InvalidOperationException)
        {
            throw new CheckInputException(e.Message, e);
        }
        if (settings.Device == DeviceType.CUDA && !torch.cuda.is_available())
        {
            throw new CheckInputException($"--device cuda: no CUDA device is available to libtorch {libtorch}. Set {TorchRuntime.LibTorchVariable} " +
                "to a CUDA PyTorch's torch/lib folder on a machine with a GPU, or check on the CPU.");
        }
        Device device = settings.Device switch
        {
            null => TorchRuntime.DefaultDevice,
            DeviceType.CPU => CPU,
            DeviceType.CUDA => CUDA,
            DeviceType other => throw new CheckInputException($"Device {other} is not supported; use cpu or cuda."),
        };
        string checkpointDType = config.DType ?? fixture.DType ?? "float32";
        ScalarType dtype = settings.DType ?? (device.type == DeviceType.CPU ? ScalarType.Float32 : DTypeOf(checkpointDType));
        double tolerance = settings.Tolerance
            ?? (dtype == ScalarType.Float32 && DTypeOf(checkpointDType) == ScalarType.Float32 ? Float32Tolerance : HalfTolerance);
        CheckIds(fixture, config);

        int longest = Math.Max(fixture.PromptIds.Length, fixture.SecondPromptIds.Length);
        var options = new TargetModelOptions
        {
            Device = device,
            DType = dtype,
            MaxBatch = 2,
            MaxContext = longest + Math.Max(fixture.GreedyContinuation.Length, fixture.TreeTokens.Length) + 64,
        };
        progress($"loading {settings.Folder} ({config.Architecture}, {checkpointDType}) on {device.type.ToString().ToLowerInvariant()} in {DTypeName(dtype)}");
        TargetModel model;
        try
        {
            model = TargetModel.Load(settings.Folder, options);
        }
        catch (Exception e) when (e is ModelConfigException or SafeTensorsException)
        {
            throw new CheckInputException(e.Message, e);
        }
        using (model)
        {
            progress("logits");
            List<LogitsCheck> logits = CheckLogits(model, fixture, tolerance);
            progress("greedy decoding");
            List<GenerationCheck> generation = CheckGeneration(model, fixture, DTypeOf(checkpointDType) == dtype, tolerance, settings.Seed);
            return new CheckReport
            {
                Folder = Path.GetFullPath(settings.Folder),
                Architecture = config.Architecture.ToString(),
                Device = device.type.ToString().ToLowerInvariant(),
                DType = DTypeName(dtype),
                CheckpointDType = checkpointDType,
                Tolerance = tolerance,
                LibTorch = libtorch,
                Logits = logits,
                Generation = generation,
                Seconds = clock.Elapsed.TotalSeconds,
            };
        }
    }

    /// <summary>The ScalarType of a config dtype name (float32 for anything but bfloat16 and float16).</summary>
    public static ScalarType DTypeOf(string name) => name switch
    {
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        _ => ScalarType.Float32,
    };

    /// <summary>The Hugging Face name of a dtype.</summary>
    public static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        ScalarType.Float32 => "float32",
        _ => dtype.ToString(),
    };

    private static void CheckIds(ReferenceFixture fixture, ModelConfig config)
    {
        if (fixture.VocabSize != config.VocabSize)
        {
            throw new CheckInputException($"{fixture.Folder}: the reference logits have {fixture.VocabSize} columns but config.json's vocab_size is {config.VocabSize}.");
        }
        foreach ((string field, int[] ids) in new[]
        {
            ("prompt_ids", fixture.PromptIds), ("greedy_continuation", fixture.GreedyContinuation),
            ("tree_tokens", fixture.TreeTokens), ("second_prompt_ids", fixture.SecondPromptIds),
        })
        {
            int bad = Array.FindIndex(ids, id => (uint)id >= (uint)config.VocabSize);
            if (bad >= 0)
            {
                throw new CheckInputException($"{fixture.Folder}: expected.json's {field}[{bad}] = {ids[bad]} is outside the vocabulary (0 .. {config.VocabSize - 1}).");
            }
        }
    }

    private static List<LogitsCheck> CheckLogits(TargetModel model, ReferenceFixture fixture, double tolerance)
    {
        int[] prompt = fixture.PromptIds;
        int[] second = fixture.SecondPromptIds;
        int vocab = fixture.VocabSize;
        DraftTree tree;
        try
        {
            tree = DraftTree.Create(fixture.TreeTokens, fixture.TreeParents, []);
        }
        catch (InvalidDraftTreeException e)
        {
            throw new CheckInputException($"{fixture.Folder}: expected.json's tree_tokens/tree_parents are not a valid tree: {e.Message}", e);
        }
        var checks = new List<LogitsCheck>();

        using (Tensor ours = model.TreeLogits([new TreeInput(0, prompt[0], DraftTree.Chain(prompt[1..]))]))
        {
            checks.Add(Compare("prompt_logits", "the prompt as one chain after its first token, empty cache",
                fixture.PromptLogits, Rows(ours, 0, 0, prompt.Length), vocab, tolerance));
        }

        model.Prefill([(0, prompt[..^1])]);
        using (Tensor ours = model.TreeLogits([new TreeInput(0, prompt[^1], tree)]))
        {
            checks.Add(Compare("prompt_logits[-1] after prefill", "the root's row after prefilling the prompt but its last token",
                fixture.PromptLogits[^vocab..], Rows(ours, 0, 0, 1), vocab, tolerance));
            checks.Add(Compare("tree_logits", $"the {fixture.TreeTokens.Length}-node reference tree after prefilling the prompt",
                fixture.TreeLogits, Rows(ours, 0, 1, fixture.TreeTokens.Length), vocab, tolerance));
        }
        model.Truncate(0, 0);

        using (Tensor ours = model.TreeLogits(
            [new TreeInput(0, prompt[0], DraftTree.Chain(prompt[1..])), new TreeInput(1, second[0], DraftTree.Chain(second[1..]))]))
        {
            checks.Add(Compare("second_prompt_logits", "batched with the prompt (ragged batch of 2), empty caches",
                fixture.SecondPromptLogits, Rows(ours, 1, 0, second.Length), vocab, tolerance));
            checks.Add(Compare("prompt_logits (batched)", "batched with the second prompt",
                fixture.PromptLogits, Rows(ours, 0, 0, prompt.Length), vocab, tolerance));
        }
        return checks;
    }

    private static float[] Rows(Tensor logits, int slot, int from, int count) =>
        logits[slot].narrow(0, from, count).contiguous().data<float>().ToArray();

    /// <summary>max |ours - theirs| / max |theirs| over all rows, and the rows whose argmax agrees.</summary>
    internal static LogitsCheck Compare(string name, string description, ReadOnlySpan<float> theirs, ReadOnlySpan<float> ours, int vocab, double tolerance)
    {
        if (theirs.Length != ours.Length || theirs.Length % vocab != 0)
        {
            throw new ArgumentException($"{name}: {ours.Length} values against {theirs.Length} (vocab {vocab}).");
        }
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < theirs.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)ours[i] - theirs[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs((double)theirs[i]));
        }
        int rows = theirs.Length / vocab;
        int agree = 0;
        for (int r = 0; r < rows; r++)
        {
            agree += ArgMax(theirs.Slice(r * vocab, vocab)) == ArgMax(ours.Slice(r * vocab, vocab)) ? 1 : 0;
        }
        double relative = maxAbs > 0 ? maxDiff / maxAbs : maxDiff;
        return new LogitsCheck(name, description, rows, maxDiff, maxAbs, relative, agree, relative < tolerance);
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++)
        {
            if (row[i] > row[best])
            {
                best = i;
            }
        }
        return best;
    }

    private static List<GenerationCheck> CheckGeneration(TargetModel model, ReferenceFixture fixture, bool sameDType, double tolerance, int seed)
    {
        int[] prompt = fixture.PromptIds;
        int[] second = fixture.SecondPromptIds;
        int[] continuation = fixture.GreedyContinuation;
        int count = continuation.Length;
        int vocab = fixture.VocabSize;
        var checks = new List<GenerationCheck>();

        Decoded plain = Generate(model, 0, prompt, count, (_, _) => DraftTree.Empty);
        // transformers computed in the checkpoint's dtype: in another dtype its continuation is only informative, and the
        // speculative runs must reproduce this model's own plain greedy output instead.
        checks.Add(Check(model, tolerance, "plain greedy", "no draft: one token per step", sameDType ? "transformers" : "transformers (info)",
            prompt, continuation, plain, required: sameDType));
        int[] reference = sameDType ? continuation : plain.Tokens;
        string referenceName = sameDType ? "transformers" : "plain greedy";

        Decoded chain = Generate(model, 0, prompt, count,
            (done, step) => CheckDrafts.ChainWithSiblings(reference, done, step, vocab));
        checks.Add(Check(model, tolerance, "speculative: chain + siblings", "the next 1-6 reference tokens as a chain with wrong siblings; every 7th draft wrong",
            referenceName, prompt, reference, chain, required: true));

        var random = new Random(seed);
        Decoded randomTrees = Generate(model, 0, prompt, count,
            (done, _) => CheckDrafts.Random(random, reference, done, vocab));
        checks.Add(Check(model, tolerance, "speculative: random trees", $"1-16 random nodes, half starting with a correct path (seed {seed})",
            referenceName, prompt, reference, randomTrees, required: true));

        int[] secondPlain = Generate(model, 1, second, count, (_, _) => DraftTree.Empty).Tokens;
        (Decoded first, Decoded other) = GenerateBatch(model, prompt, second, count,
            (done, step) => CheckDrafts.ChainWithSiblings(reference, done, step, vocab),
            (done, step) => step % 2 == 0 ? CheckDrafts.Random(random, secondPlain, done, vocab) : CheckDrafts.ChainWithSiblings(secondPlain, done, step + 3, vocab));
        checks.Add(Check(model, tolerance, "batched: prompt", "with the second prompt in one VerifyGreedy call per step; chain + siblings",
            referenceName, prompt, reference, first, required: true));
        checks.Add(Check(model, tolerance, "batched: second prompt", "with the prompt; random trees and chains; against its plain greedy decoding alone",
            "plain greedy", second, secondPlain, other, required: true));
        return checks;
    }

    private static GenerationCheck Check(TargetModel model, double tolerance, string name, string description, string referenceName, int[] prompt, int[] expected, Decoded actual, bool required)
    {
        int mismatch = -1;
        for (int i = 0; i < expected.Length && mismatch < 0; i++)
        {
            mismatch = i < actual.Tokens.Length && actual.Tokens[i] == expected[i] ? -1 : i;
        }
        double? margin = mismatch < 0 || mismatch >= actual.Tokens.Length
            ? null
            : TieMargin(model, prompt, expected, mismatch, actual.Tokens[mismatch]);
        bool nearTie = margin < tolerance;
        return new GenerationCheck(name, description, referenceName, expected.Length, actual.Steps, actual.Accepted, mismatch,
            expected, actual.Tokens, margin, nearTie, !required || mismatch < 0 || nearTie);
    }

    /// <summary>After <paramref name="prompt"/> + <paramref name="expected"/>[..index], computed afresh as one chain: how
    /// far the lower of the expected and the actual token's logits lies below the top logit, over max |logit|.</summary>
    private static double TieMargin(TargetModel model, int[] prompt, int[] expected, int index, int actual)
    {
        model.Truncate(0, 0);
        int[] sequence = [.. prompt, .. expected.AsSpan(0, index)];
        using Tensor logits = model.TreeLogits([new TreeInput(0, sequence[0], DraftTree.Chain(sequence.AsSpan(1)))]);
        float[] row = Rows(logits, 0, sequence.Length - 1, 1);
        float top = row.Max();
        double scale = row.Max(v => Math.Abs(v));
        return (top - Math.Min(row[expected[index]], row[actual])) / (scale > 0 ? scale : 1);
    }

    private readonly record struct Decoded(int[] Tokens, int Steps, int Accepted);

    /// <summary>Greedy decoding of <paramref name="count"/> tokens in one slot with drafts from <paramref name="draft"/>
    /// (given the tokens decoded so far and the step).</summary>
    private static Decoded Generate(TargetModel model, int slot, int[] prompt, int count, Func<int, int, DraftTree> draft)
    {
        model.Truncate(slot, 0);
        model.Prefill([(slot, prompt[..^1])]);
        var output = new List<int>();
        int root = prompt[^1], steps = 0, accepted = 0;
        while (output.Count < count)
        {
            VerifiedStep step = model.VerifyGreedy([new TreeInput(slot, root, draft(output.Count, steps))])[0];
            output.AddRange(step.Tokens);
            accepted += step.AcceptedCount;
            root = step.Bonus;
            steps++;
        }
        model.Truncate(slot, 0);
        return new Decoded(output.Take(count).ToArray(), steps, accepted);
    }

    /// <summary>Both prompts decoded together in slots 0 and 1, one verification call per step for the sequences not yet
    /// done, in alternating order.</summary>
    private static (Decoded First, Decoded Second) GenerateBatch(TargetModel model, int[] first, int[] second, int count,
        Func<int, int, DraftTree> firstDraft, Func<int, int, DraftTree> secondDraft)
    {
        model.Truncate(0, 0);
        model.Truncate(1, 0);
        model.Prefill([(0, first[..^1]), (1, second[..^1])]);
        var outputs = new[] { new List<int>(), new List<int>() };
        int[] roots = [first[^1], second[^1]];
        int[] accepted = new int[2];
        int[] stepCounts = new int[2];
        Func<int, int, DraftTree>[] drafts = [firstDraft, secondDraft];
        for (int step = 0; outputs.Any(o => o.Count < count); step++)
        {
            var inputs = new List<TreeInput>();
            foreach (int slot in step % 2 == 0 ? new[] { 0, 1 } : [1, 0])
            {
                if (outputs[slot].Count < count)
                {
                    inputs.Add(new TreeInput(slot, roots[slot], drafts[slot](outputs[slot].Count, step)));
                }
            }
            foreach (VerifiedStep result in model.VerifyGreedy(inputs))
            {
                outputs[result.Slot].AddRange(result.Tokens);
                accepted[result.Slot] += result.AcceptedCount;
                roots[result.Slot] = result.Bonus;
                stepCounts[result.Slot]++;
            }
        }
        model.Truncate(0, 0);
        model.Truncate(1, 0);
        return (new Decoded(outputs[0].Take(count).ToArray(), stepCounts[0], accepted[0]),
            new Decoded(outputs[1].Take(count).ToArray(), stepCounts[1], accepted[1]));
    }
}
