using System.Collections.Concurrent;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The engine end to end on a tiny checkpoint on the CPU: lossless greedy output for every drafter with requests joining
/// and leaving mid-batch and many submitting threads, stop tokens and stop strings, streaming, cancellation, refusal,
/// context limits, and adaptive speculation switching itself off when drafts cannot pay.
/// </summary>
public sealed class SpeculativeEngineTests
{
    private static readonly ConcurrentDictionary<(int, int, int), int[]> References = new();

    private static int[] Reference(int seed, int promptLength, int count) =>
        References.GetOrAdd((seed, promptLength, count), k => EngineFixture.PlainGreedy(EngineFixture.Prompt(k.Item1, k.Item2), k.Item3));

    [Theory]
    [InlineData("none", false)]
    [InlineData("suffix", false)]
    [InlineData("suffix", true)]
    [InlineData("suffix-tree", true)]
    [InlineData("prompt-lookup", true)]
    public async Task ManyThreadsAndJoiningRequests_EmitPlainGreedyForEveryRequest(string drafterKind, bool adaptive)
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 3);
        using IDrafter? drafter = drafterKind == "none" ? null : EngineFixture.Drafter(drafterKind);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 12,
            AdaptiveSpeculation = adaptive,
            CostModel = adaptive ? EngineFixture.FlatCost(3) : null,
            EndOfSequenceTokenIds = [],
        });
        // 8 requests with different prompt lengths and budgets on 3 slots: they queue, join and leave mid-batch.
        var cases = Enumerable.Range(0, 8).Select(i => (Seed: 100 + i, PromptLength: 10 + 7 * i, Count: 12 + 9 * (i % 4))).ToArray();
        var tasks = cases.Select(c => Task.Run(() => engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(c.Seed, c.PromptLength),
            MaxNewTokens = c.Count,
        }))).ToArray();
        GenerationResult[] results = await Task.WhenAll(tasks);

        for (int i = 0; i < cases.Length; i++)
        {
            Assert.Equal(Reference(cases[i].Seed, cases[i].PromptLength, cases[i].Count), results[i].TokenIds);
            Assert.Equal(FinishReason.Length, results[i].FinishReason);
            Assert.Equal(ByteTokenizer.Instance.Decode(results[i].TokenIds), results[i].Text);
            Assert.Equal(results[i].TokenIds.Count, results[i].Statistics.GeneratedTokens);
        }
        EngineStatistics stats = engine.Statistics;
        Assert.Equal(8, stats.Completed);
        Assert.Equal(results.Sum(r => r.Statistics.Steps), stats.Totals.Steps);
        Assert.True(stats.Batches < stats.Totals.Steps, "requests must share forwards");
        if (drafterKind != "none")
        {
            // The drafts must really be verified and accepted, or this test would prove nothing about speculation.
            Assert.True(stats.Totals.AcceptedTokens > 0, $"{drafterKind}: no draft token was accepted");
            Assert.True(stats.Totals.Steps < results.Sum(r => r.TokenIds.Count), "speculation should save steps");
        }
        else
        {
            Assert.Equal(0, stats.Totals.DraftTokens);
        }
    }

    [Fact]
    public async Task SteepCostModel_SwitchesSpeculationOff_AndStaysLossless()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            CostModel = EngineFixture.SteepCost(2),
            EndOfSequenceTokenIds = [],
        });
        int[] prompt = EngineFixture.Prompt(7, 40);
        GenerationResult result = await engine.GenerateAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 40 });

        Assert.Equal(Reference(7, 40, 40), result.TokenIds);
        Assert.Equal(0, result.Statistics.DraftTokens);
        Assert.Equal(40, result.Statistics.Steps);
    }

    [Fact]
    public async Task StopTokenAndStopString_EndGenerationWhereThePlainOutputHasThem()
    {
        int[] reference = Reference(3, 30, 60);
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [] });

        // Stop token: the 10th token of the plain output; output = everything before its first occurrence.
        int stopToken = reference[9];
        GenerationResult byToken = await engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(3, 30),
            MaxNewTokens = 60,
            StopTokenIds = [stopToken],
        });
        int first = Array.IndexOf(reference, stopToken);
        Assert.Equal(FinishReason.Stop, byToken.FinishReason);
        Assert.Equal(reference[..first], byToken.TokenIds);

        // Stop string: three characters of the plain text, which span tokens; the text ends just before them.
        string text = ByteTokenizer.Instance.Decode(reference);
        int at = text.Length / 2;
        string stop = text.Substring(at, 3);
        GenerationResult byString = await engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = EngineFixture.Prompt(3, 30),
            MaxNewTokens = 60,
            StopStrings = ["\u0001never", stop],
        });
        Assert.Equal(FinishReason.Stop, byString.FinishReason);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], byString.Text);
    }

    [Fact]
    public async Task Streaming_ChunksConcatenateToTheResult_AndEndWithIt()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(1), EndOfSequenceTokenIds = [] });
        var request = new GenerationRequest { PromptTokens = EngineFixture.Prompt(11, 25), MaxNewTokens = 30, StopStrings = ["zz"] };

        var chunks = new List<GenerationChunk>();
        await foreach (GenerationChunk chunk in engine.StreamAsync(request))
        {
            chunks.Add(chunk);
        }
        GenerationResult final = Assert.IsType<GenerationResult>(chunks[^1].Final);
        Assert.All(chunks[..^1], c => Assert.Null(c.Final));
        Assert.Equal(final.Text, string.Concat(chunks.Select(c => c.Text)));
        Assert.Equal(final.TokenIds, chunks.SelectMany(c => c.TokenIds));
        Assert.True(chunks.Count > 2, "a 30-token generation streams in several chunks");
    }

    [Fact]
    public async Task CancellingOneRequestMidGeneration_LeavesTheOthersServedCorrectly()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 3, maxContext: 600);
        using var cancel = new CancellationTokenSource();
        var longRequest = new GenerationRequest { PromptTokens = EngineFixture.Prompt(21, 20), MaxNewTokens = 500 };
        // The engine could otherwise finish all 500 tokens before a starved consumer cancels (seen on a loaded CI machine):
        // at its second step the long request waits until the consumer, holding its first chunk, has cancelled.
        using IDrafter suffix = EngineFixture.Drafter("suffix");
        using var drafter = new GatedDrafter(suffix, gateAt: 2, longRequest.PromptTokens);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(3), EndOfSequenceTokenIds = [] });

        Task<List<GenerationChunk>> cancelled = Task.Run(async () =>
        {
            var seen = new List<GenerationChunk>();
            await foreach (GenerationChunk chunk in engine.StreamAsync(longRequest, cancel.Token))
            {
                seen.Add(chunk);
                cancel.Cancel();
                drafter.Release.Set();
            }
            return seen;
        });
        Task<GenerationResult> a = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(22, 15), MaxNewTokens = 30 });
        Task<GenerationResult> b = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(23, 35), MaxNewTokens = 30 });

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        Assert.Equal(Reference(22, 15, 30), (await a).TokenIds);
        Assert.Equal(Reference(23, 35, 30), (await b).TokenIds);
        // The cancelled request's slot is free again: a new request is served.
        GenerationResult after = await engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(24, 12), MaxNewTokens = 10 });
        Assert.Equal(Reference(24, 12, 10), after.TokenIds);
        Assert.Equal(0, engine.Statistics.Active);
    }

    [Fact]
    public async Task PromptLongerThanTheContext_IsRefused_AndContextLimitEndsGeneration()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1, maxContext: 64);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null,
            new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });

        var tooLong = new GenerationRequest { PromptTokens = EngineFixture.Prompt(1, 65), MaxNewTokens = 5 };
        RequestRejectedException refused = await Assert.ThrowsAsync<RequestRejectedException>(() => engine.GenerateAsync(tooLong));
        Assert.Contains("MaxContext", refused.Message);

        GenerationResult filled = await engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(1, 60), MaxNewTokens = 50 });
        Assert.Equal(FinishReason.ContextFull, filled.FinishReason);
        Assert.Equal(Reference(1, 60, 5), filled.TokenIds);   // 60 prompt tokens + 5 = 64 + the last one uncached
    }

    [Fact]
    public async Task BadRequests_GetTypedErrors()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null);

        await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync(new GenerationRequest()));
        await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync(new GenerationRequest { Prompt = "a", PromptTokens = [1] }));
        await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync(new GenerationRequest { PromptTokens = [5000] }));
        await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync(new GenerationRequest { Messages = [PromptMessage.User("hi")] }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => engine.GenerateAsync(new GenerationRequest { PromptTokens = [1], MaxNewTokens = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, new SpeculativeEngineOptions { MaxBatch = 2 }));
    }

    [Fact]
    public async Task TextPrompt_GetsTheCheckpointBos_AndMatchesTheTokenPrompt()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });
        int bos = model.Config.BosTokenId!.Value;

        GenerationResult fromText = await engine.GenerateAsync(new GenerationRequest { Prompt = "hello hello", MaxNewTokens = 8 });
        GenerationResult fromIds = await engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = [bos, .. "hello hello"u8.ToArray().Select(b => (int)b)],
            MaxNewTokens = 8,
        });
        Assert.Equal(fromIds.TokenIds, fromText.TokenIds);
        Assert.Equal(12, fromText.Statistics.PromptTokens);
    }
}
