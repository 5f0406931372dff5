using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The first token from the prefill's last row (<see cref="TargetModel.PrefillAndChoose"/>): the logits after a
/// prompt's last token, computed by the prefill forward that caches it, equal those of a verification step whose root is
/// that token after a prefill without it (the path every first token took before), on every prefill path; the choice
/// follows them (greedy, and sampled from the same random stream); the engine's first token needs no step.
/// </summary>
public sealed class PrefillFirstTokenTests
{
    private const double Float32Tolerance = 5e-6; // as CausalPrefillTests: a few float32 roundings

    private static int[] Ids(string folder, string field)
    {
        using var expected = SharedFixtures.Expected(folder);
        return SharedFixtures.Ids(expected, field).Select(i => (int)i).ToArray();
    }

    private static TargetModel Load(string folder, PrefillAttention prefill, int chunk, int causalChunk, bool scripted = true,
        ScalarType dtype = ScalarType.Float32) =>
        TargetModel.Load(folder, new TargetModelOptions
        {
            Device = CPU, DType = dtype, MaxBatch = 4, MaxContext = 64, PrefillChunk = chunk, CausalPrefillChunk = causalChunk,
            ScriptedLayers = scripted, PrefillAttention = prefill, KvBlockSize = 16,
        });

    /// <summary>The GPU's dtype: in bfloat16 the last rows' logits stay within the half-precision tolerance of a step's
    /// (as PackedPrefillTests' bfloat16 case), on the masked and the packed path.</summary>
    [Theory]
    [InlineData("Masked", 5, 0)]
    [InlineData("Packed", 512, 7)]
    public void InBFloat16_TheLastRowsLogitsStayWithinTheHalfPrecisionTolerance(string path, int chunk, int causalChunk)
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        PrefillAttention prefill = Enum.Parse<PrefillAttention>(path);
        float[] ours, reference;
        using (TargetModel model = Load(folder, prefill, chunk, causalChunk, dtype: ScalarType.BFloat16))
        {
            using Tensor logits = model.PrefillWithLogits([(1, prompt)], [true])!;
            ours = logits.data<float>().ToArray();
        }
        using (TargetModel model = Load(folder, prefill, chunk, causalChunk, dtype: ScalarType.BFloat16))
        {
            model.Prefill([(1, prompt[..^1])]);
            using Tensor step = model.TreeLogits([new TreeInput(1, prompt[^1], DraftTree.Empty)]);
            reference = step.data<float>().ToArray()[ours.Length..]; // slot 1's row
        }
        CausalPrefillTests.AssertClose(reference, ours, 2e-2, $"bfloat16 {path}: logits after the prompt");
    }

    public static TheoryData<string, string, int, int, bool> Paths()
    {
        var data = new TheoryData<string, string, int, int, bool>();
        foreach (string fixture in new[] { "llama-gqa", "qwen2-tied" })
        {
            data.Add(fixture, "Masked", 5, 0, true);     // masked chunks of 5: every prompt's end in a later forward
            data.Add(fixture, "Masked", 32, 8192, true); // causal first chunks, grouped by length
            data.Add(fixture, "Masked", 5, 0, false);    // the eager layers
            data.Add(fixture, "Packed", 512, 7, true);   // packed forwards of 7 tokens: prompts cut across forwards
            data.Add(fixture, "Packed", 512, 8192, true);
        }
        return data;
    }

    /// <summary>Three sequences in one call, the first and third marked: a long fresh prompt, a short one that ends in an
    /// earlier forward than the first (so the rows come out of order), and one that continues cached tokens.</summary>
    [Theory]
    [MemberData(nameof(Paths))]
    public void LogitsAfterThePrefillsLastRow_EqualAStepsWithThatTokenAsRoot(string fixture, string path, int chunk, int causalChunk, bool scripted)
    {
        string folder = SharedFixtures.TinyCheckpoint(fixture);
        int[] prompt = Ids(folder, "prompt_ids"); // 37 tokens
        int[] second = Ids(folder, "second_prompt_ids"); // 23 tokens
        PrefillAttention prefill = Enum.Parse<PrefillAttention>(path);
        (int Slot, int[] Tokens)[] sequences = [(2, prompt), (0, second[..6]), (1, second[10..])];
        bool[] marks = [true, false, true];

        float[] ours, reference, oursAfter, referenceAfter;
        TreeInput[] next = [new TreeInput(2, 7, DraftTree.Chain([9, 11])), new TreeInput(0, second[6], DraftTree.Empty), new TreeInput(1, 5, DraftTree.Empty)];
        using (TargetModel model = Load(folder, prefill, chunk, causalChunk, scripted))
        {
            model.Prefill([(1, second[..10])]);
            using Tensor? logits = model.PrefillWithLogits(sequences, marks);
            Assert.NotNull(logits);
            Assert.Equal(new long[] { 2, model.Config.VocabSize }, logits!.shape);
            ours = logits.data<float>().ToArray();
            Assert.Equal([prompt.Length, 6, 23], new[] { 2, 0, 1 }.Select(model.CachedLength).ToArray());
            using Tensor after = model.TreeLogits(next); // the caches the prefill left, whole last layer or not
            oursAfter = after.data<float>().ToArray();
        }
        using (TargetModel model = Load(folder, prefill, chunk, causalChunk, scripted))
        {
            model.Prefill([(1, second[..10])]);
            model.Prefill([(2, prompt[..^1]), (0, second[..6]), (1, second[10..^1])]);
            using Tensor step = model.TreeLogits([new TreeInput(2, prompt[^1], DraftTree.Empty), new TreeInput(1, second[^1], DraftTree.Empty)]);
            reference = step.data<float>().ToArray(); // [2 slots' rows ... ] laid out by slot: slot 1 then slot 2
            model.VerifyForced([new TreeInput(2, prompt[^1], DraftTree.Empty), new TreeInput(1, second[^1], DraftTree.Empty)], [[0], [0]]);
            using Tensor after = model.TreeLogits(next);
            referenceAfter = after.data<float>().ToArray();
        }
        int vocab = ours.Length / 2;
        // TreeLogits' rows are by slot (B = highest slot + 1, one row each): slot 2 is the first marked sequence, slot 1 the second
        CausalPrefillTests.AssertClose(reference[(2 * vocab)..(3 * vocab)], ours[..vocab], Float32Tolerance, $"{fixture} {path}: logits after the long prompt");
        CausalPrefillTests.AssertClose(reference[vocab..(2 * vocab)], ours[vocab..], Float32Tolerance, $"{fixture} {path}: logits after the continued prompt");
        // the cache the prefill wrote (its last layer whole) serves the next step as the reference's cache does; the forced
        // steps above cached each root, so both models hold the same tokens
        CausalPrefillTests.AssertClose(referenceAfter, oursAfter, Float32Tolerance, $"{fixture} {path}: the next step's logits");
    }

    [Fact]
    public void AGreedyChoiceIsTheArgmax_AndASampledOneDrawsWhatAStepWouldFromTheSameSeed()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        int draws = 24;
        var fromPrefill = new int[draws];
        var fromStep = new int[draws];
        var greedy = new SamplingOptions { Temperature = 0 };
        int greedyFromPrefill, greedyFromStep;
        using (TargetModel model = Load(folder, PrefillAttention.Masked, 8, 0))
        {
            greedyFromPrefill = model.PrefillAndChoose([(0, prompt)], [new NextTokenChoice(greedy)])[0];
            for (int i = 0; i < draws; i++)
            {
                model.Truncate(1, 0);
                var sampled = new SamplingOptions { Temperature = 1.5f, Seed = 1000 + i };
                fromPrefill[i] = model.PrefillAndChoose([(1, prompt[..(20 + i % 10)])], [new NextTokenChoice(sampled)])[0];
            }
        }
        using (TargetModel model = Load(folder, PrefillAttention.Masked, 8, 0))
        {
            model.Prefill([(0, prompt[..^1])]);
            greedyFromStep = model.VerifyGreedy([new TreeInput(0, prompt[^1], DraftTree.Empty)])[0].Bonus;
            for (int i = 0; i < draws; i++)
            {
                model.Truncate(1, 0);
                int[] tokens = prompt[..(20 + i % 10)];
                model.Prefill([(1, tokens[..^1])]);
                var sampled = new SamplingOptions { Temperature = 1.5f, Seed = 1000 + i };
                fromStep[i] = model.VerifySampled([new TreeInput(1, tokens[^1], DraftTree.Empty)], [sampled])[0].Bonus;
            }
        }
        Assert.Equal(greedyFromStep, greedyFromPrefill);
        Assert.Equal(fromStep, fromPrefill);
        // at temperature 1.5 on random weights the seeds do not all draw one token: the comparison above is about the draws
        Assert.True(fromPrefill.Distinct().Count() > 3, $"the draws: {string.Join(", ", fromPrefill)}");
    }

    [Fact]
    public void ForcedChoices_TakeTheRecordedToken_AndUnmarkedSequencesGetNone()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        int[] prompt = Ids(folder, "prompt_ids");
        using TargetModel model = Load(folder, PrefillAttention.Masked, 8, 0);
        int[] chosen = model.PrefillAndChoose([(0, prompt[..10]), (1, prompt[..20]), (2, prompt)],
            [new NextTokenChoice(new SamplingOptions { Temperature = 0 }, [77, 1]), null, new NextTokenChoice(new SamplingOptions { Temperature = 0.8f, Seed = 3 }, [5])]);
        Assert.Equal([77, -1, 5], chosen);
        Assert.Equal([10, 20, prompt.Length], new[] { 0, 1, 2 }.Select(model.CachedLength).ToArray());
        var error = Assert.Throws<ArgumentException>(() => model.PrefillAndChoose([(3, Array.Empty<int>())], [new NextTokenChoice(new SamplingOptions())]));
        Assert.Contains("no token", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheEnginesFirstToken_NeedsNoVerificationStep()
    {
        int[] prompt = EngineFixture.Prompt(5, 40);
        int[] expected = EngineFixture.PlainGreedy(prompt, 3);
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, EngineFixture.Drafter("suffix"),
            new SpeculativeEngineOptions { MaxBatch = 2, EndOfSequenceTokenIds = [] });
        GenerationResult one = await engine.GenerateAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 1 }).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(expected[..1], one.TokenIds);
        Assert.Equal(0L, engine.Statistics.Batches); // the prefill chose it: no step ran
        GenerationResult three = await engine.GenerateAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 3 }).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(expected, three.TokenIds);
        Assert.True(engine.Statistics.Batches is > 0 and <= 2, $"{engine.Statistics.Batches} steps for the two tokens after the first");
    }
}
