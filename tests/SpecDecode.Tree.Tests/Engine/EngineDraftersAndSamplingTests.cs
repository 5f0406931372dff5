using SpecDecode.Tokenization;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The engine with a draft model, the hybrid drafter and sampled requests: lossless greedy output for the model and
/// hybrid drafters, sampled output that follows the target's distribution, per-request seeds, a draft model of another
/// vocabulary refused, and chat prompts rendered with a template.
/// </summary>
public sealed class EngineDraftersAndSamplingTests
{
    private static DraftModelDrafter SameCheckpointDraft(int slots) =>
        DraftModelDrafter.Create(EngineFixture.LoadModel(slots, 400), new DraftModelOptions { MaxRequests = slots, Device = CPU, MaxContext = 400, MaxDepth = 4 });

    private static int[] Reference(int seed, int promptLength, int count) =>
        EngineFixture.PlainGreedy(EngineFixture.Prompt(seed, promptLength), count);

    [Theory]
    [InlineData("draft-model")]
    [InlineData("hybrid")]
    public async Task ModelAndHybridDrafters_EmitPlainGreedy_AndGetAccepted(string kind)
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 3);
        using DraftModelDrafter draft = SameCheckpointDraft(3);
        using IDrafter suffix = EngineFixture.Drafter("suffix");
        // The hybrid's cost rule off, as adaptive speculation below: both depend on measured drafting time (a busy CI
        // machine makes the draft model look slow), and this test needs every draft verified to show they are accepted.
        using var hybrid = new HybridDrafter(suffix, draft, new HybridDrafterOptions { WeighDraftCost = false });
        IDrafter drafter = kind == "hybrid" ? hybrid : draft;
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 8,
            AdaptiveSpeculation = false,
            EndOfSequenceTokenIds = [],
        });
        var cases = Enumerable.Range(0, 5).Select(i => (Seed: 300 + i, PromptLength: 12 + 5 * i, Count: 15 + 4 * i)).ToArray();
        GenerationResult[] results = await Task.WhenAll(cases.Select(c => engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(c.Seed, c.PromptLength),
            MaxNewTokens = c.Count,
        })));
        for (int i = 0; i < cases.Length; i++)
        {
            Assert.Equal(Reference(cases[i].Seed, cases[i].PromptLength, cases[i].Count), results[i].TokenIds);
        }
        // The draft model is the target itself: its drafts are right, so most tokens come from accepted drafts.
        GenerationStatistics totals = engine.Statistics.Totals;
        Assert.True(totals.AcceptedTokens > totals.GeneratedTokens / 2, $"{kind}: {totals.AcceptedTokens} of {totals.GeneratedTokens} tokens accepted");
        if (kind == "hybrid")
        {
            Assert.True(hybrid.ModelDrafts > 0, "the hybrid never used the draft model");
        }
    }

    /// <summary>Issue 16 item 4: temperatures at or below 1e-38 passed validation, the division overflowed, the
    /// probabilities became NaN and the sampler picked the last token id, so the request ended at once. Temperatures
    /// below <see cref="SamplingOptions.MinTemperature"/> decode greedily (as vLLM does below its 1e-5).</summary>
    [Theory]
    [InlineData(1e-38f)]
    [InlineData(float.Epsilon)]
    [InlineData(1e-6f)]
    public async Task TinyTemperature_DecodesGreedily(float temperature)
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [] });
        // With a plain sampled request beside it, the batch goes through the sampling verifier.
        Task<GenerationResult> sampled = engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(91, 20), MaxNewTokens = 16, Sampling = new SamplingOptions { Temperature = 1f, Seed = 1 },
        });
        GenerationResult tiny = await engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(90, 20), MaxNewTokens = 16, Sampling = new SamplingOptions { Temperature = temperature, Seed = 2 },
        });
        Assert.Equal(Reference(90, 20, 16), tiny.TokenIds);
        Assert.Equal(16, (await sampled).TokenIds.Count);
    }

    /// <summary>The target distribution at a tiny temperature is the argmax point mass, never NaN.</summary>
    [Fact]
    public void TinyTemperature_TargetProbabilitiesAreTheArgmaxPointMass()
    {
        using Tensor logits = tensor(new float[] { 3f, 90f, -50f, 89.5f, 0f });
        using Tensor probabilities = SamplingTreeVerifier.TargetProbabilities(logits, 1e-38f, 0, 1f);
        Assert.Equal(new float[] { 0, 1, 0, 0, 0 }, probabilities.data<float>().ToArray());
    }

    [Fact]
    public void DraftModelOfAnotherVocabulary_IsRefusedWhenTheEngineIsCreated()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        using DraftModelDrafter other = DraftModelDrafter.Create(
            TargetModel.Load(SharedFixtures.TinyCheckpoint("qwen2-tied"), new TargetModelOptions { Device = CPU, MaxContext = 64 }),
            new DraftModelOptions { MaxRequests = 1, Device = CPU });
        VocabularyMismatchException refused = Assert.Throws<VocabularyMismatchException>(() =>
            SpeculativeEngine.Create(model, ByteTokenizer.Instance, other, new SpeculativeEngineOptions { AdaptiveSpeculation = false }));
        Assert.Contains("1200", refused.Message);
    }

    [Fact]
    public void DraftModelWithFewerSlotsThanTheBatch_IsRefused()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using DraftModelDrafter draft = SameCheckpointDraft(1);
        Assert.Throws<ArgumentException>(() => SpeculativeEngine.Create(model, ByteTokenizer.Instance, draft,
            new SpeculativeEngineOptions { AdaptiveSpeculation = false }));
    }

    [Theory]
    [InlineData("suffix")]
    [InlineData("draft-model")]
    public async Task SampledRequests_FollowTheTargetDistribution_WhileGreedyOnesStayExact(string kind)
    {
        int[] prompt = EngineFixture.Prompt(77, 30);
        // The target's distribution of the first generated token after temperature and top-k.
        using TargetModel reference = EngineFixture.LoadModel(1);
        reference.Prefill([(0, prompt[..^1])]);
        float[] logits = reference.TreeLogits([new TreeInput(0, prompt[^1], DraftTree.Empty)]).data<float>().ToArray();
        const int topK = 4;
        int[] top = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).Take(topK).ToArray();
        float temperature = 1f;
        double[] p = Softmax(top.Select(i => logits[i] / temperature).ToArray());
        while (p.Max() > 0.7 && temperature < 64)
        {
            temperature *= 2;
            p = Softmax(top.Select(i => logits[i] / temperature).ToArray());
        }
        Assert.True(p.Max() <= 0.7, "the control needs a spread distribution: a greedy bug must be visible");

        using TargetModel model = EngineFixture.LoadModel(maxBatch: 4);
        using IDrafter drafter = kind == "suffix" ? EngineFixture.Drafter("suffix") : SameCheckpointDraft(4);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 4,
            CostModel = EngineFixture.FlatCost(4),
            EndOfSequenceTokenIds = [],
        });
        const int n = 400;
        Task<GenerationResult> greedy = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(5, 20), MaxNewTokens = 40 });
        GenerationResult[] samples = await Task.WhenAll(Enumerable.Range(0, n).Select(seed => engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = prompt,
            MaxNewTokens = 3,
            Sampling = new SamplingOptions { Temperature = temperature, TopK = topK, Seed = seed },
        })));

        Assert.Equal(Reference(5, 20, 40), (await greedy).TokenIds);
        Assert.True(engine.Statistics.Totals.DraftTokens > 0, "sampled requests must be verified against drafts");
        // Hoeffding: each frequency is within 0.12 of its probability with probability 1 - 2e-6 per category.
        for (int k = 0; k < topK; k++)
        {
            double frequency = samples.Count(s => s.TokenIds[0] == top[k]) / (double)n;
            Assert.True(Math.Abs(frequency - p[k]) <= 0.12, $"token {top[k]}: frequency {frequency:F3}, probability {p[k]:F3}");
        }
        Assert.All(samples, s => Assert.Contains(s.TokenIds[0], top));
    }

    /// <summary>A seed fixes a request's random stream whatever shares its batch. The drafts must be the same too (a
    /// different draft changes which random numbers decide what, though not the distribution): prompt lookup drafts from
    /// the request's own context only, so they are.</summary>
    [Fact]
    public async Task SeededRequest_GivesTheSameTokensAloneAndInABusyBatch()
    {
        GenerationRequest Request(int seed) => new()
        {
            PromptTokens = EngineFixture.Prompt(9, 25),
            MaxNewTokens = 30,
            Sampling = new SamplingOptions { Temperature = 1.5f, TopP = 0.95f, Seed = seed },
        };
        async Task<GenerationResult[]> Run(params int[] seeds)
        {
            using TargetModel model = EngineFixture.LoadModel(maxBatch: 4);
            using IDrafter drafter = EngineFixture.Drafter("prompt-lookup");
            using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
                new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(4), EndOfSequenceTokenIds = [] });
            GenerationResult[] results = await Task.WhenAll(seeds.Select(seed => engine.GenerateAsync(Request(seed))));
            Assert.True(engine.Statistics.Totals.DraftTokens > 0);
            return results;
        }
        GenerationResult[] alone = await Run(42);
        GenerationResult[] busy = await Run(1, 42, 2, 3);
        Assert.Equal(alone[0].TokenIds, busy[1].TokenIds);
        Assert.NotEqual(busy[0].TokenIds, busy[1].TokenIds);
    }

    [Fact]
    public async Task ChatMessages_AreRenderedWithTheTemplate_AndStopAtTheEndOfSequenceToken()
    {
        const string chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        PromptMessage[] messages = [PromptMessage.System("be brief"), PromptMessage.User("hello hello hello")];
        string rendered = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhello hello hello<|im_end|>\n<|im_start|>assistant\n";
        int[] expected = EngineFixture.PlainGreedy(Bytes(rendered), 20);
        int stop = expected[12];
        using IDrafter drafter = EngineFixture.Drafter("prompt-lookup");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { ChatTemplate = ChatTemplate.Parse(chatml), EndOfSequenceTokenIds = [stop], CostModel = EngineFixture.FlatCost(1) });

        GenerationResult result = await engine.GenerateAsync(new GenerationRequest { Messages = messages, MaxNewTokens = 20 });

        Assert.Equal(Bytes(rendered).Length, result.Statistics.PromptTokens);
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(expected[..Array.IndexOf(expected, stop)], result.TokenIds);
    }

    private static int[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    private static double[] Softmax(float[] x)
    {
        double max = x.Max();
        double[] e = x.Select(v => Math.Exp(v - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }
}
