using SpecDecode.EngineBench;

namespace SpecDecode.Tree.Tests;

/// <summary>EngineBench's full-batch throughput (<see cref="FullBatchThroughput"/>): a step's tokens are paired with its
/// batch size and durations in the order the engine records them, and on a real engine every step is counted once.</summary>
public sealed class EngineBenchFullBatchTests
{
    [Fact]
    public void AStepsTokensGoWithItsBatchSize_AndPrefillIsLeftOut()
    {
        var meter = new FullBatchThroughput(fullBatch: 2);
        // a prefill that chose two requests' first tokens: recorded before its duration, and no step's
        meter.Tokens(1);
        meter.Tokens(1);
        meter.Duration("prefill", 0.2);
        // a full step: two requests emit 3 and 1 tokens, batch 2, 1 + 4 + 1 ms
        meter.Tokens(3);
        meter.Tokens(1);
        meter.BatchSize(2);
        meter.Duration("draft", 0.001);
        meter.Duration("verify", 0.004);
        meter.Duration("host", 0.001);
        // a prefill between steps counts nowhere
        meter.Duration("prefill", 0.5);
        // the tail: one request, 2 tokens, 5 ms
        meter.Tokens(2);
        meter.BatchSize(1);
        meter.Duration("draft", 0);
        meter.Duration("verify", 0.005);
        meter.Duration("host", 0);

        Assert.Equal(1, meter.Steps);
        Assert.Equal(4, meter.EmittedTokens);
        Assert.Equal(0.006, meter.Seconds, 9);
        Assert.Equal(0.011, meter.AllStepSeconds, 9);
        Assert.Equal(4 / 0.006, meter.TokensPerSecond, 6);
    }

    [Fact]
    public async Task OnARealEngine_EveryStepIsCountedOnce_AndFullStepsCarryTheirTokens()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null,
            new SpeculativeEngineOptions { MaxBatch = 2, EndOfSequenceTokenIds = [] });
        using var meter = new FullBatchThroughput(engine, fullBatch: 2);
        // two requests side by side for 6 steps, then the longer one alone for 4
        Task<GenerationResult> shorter = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(1, 20), MaxNewTokens = 6 });
        Task<GenerationResult> longer = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(2, 20), MaxNewTokens = 10 });
        await Task.WhenAll(shorter, longer).WaitAsync(TimeSpan.FromMinutes(2));

        EngineStatistics s = engine.Statistics;
        // Plain decoding emits one token per request and step: the full steps' tokens are twice their count.
        Assert.True(meter.Steps is > 0 and <= 6, $"{meter.Steps} full-batch steps");
        Assert.Equal(2 * meter.Steps, meter.EmittedTokens);
        Assert.True(meter.Steps < s.Batches, $"{meter.Steps} full steps of {s.Batches}: the tail must not count");
        double stepSeconds = (s.Totals.DraftingTime + s.Totals.VerificationTime + s.HostTime).TotalSeconds;
        // The engine's three totals are TimeSpans, truncated to 100 ns ticks; the meter sums each step's seconds as
        // doubles. The bound allows one tick per part and step, more than the truncation and summation can lose.
        double tolerance = 3 * s.Batches * 1e-7 + 1e-9;
        Assert.Equal(stepSeconds, meter.AllStepSeconds, tolerance);
    }

    /// <summary>The bench skips prefill, so a whole batch of long prompts is admitted at once and its first step runs at
    /// the full batch; the engine's default step budget (2,048 tokens) paced admission to half a long prompt a step.</summary>
    [Fact]
    public async Task TheBenchsEngine_AdmitsAWholeBatchOfLongPromptsAtOnce()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 4, maxContext: 2112);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null,
            EngineRunner.EngineOptions(Variant.Parse("plain"), batch: 4, budget: 32, cost: null));
        using var meter = new FullBatchThroughput(engine, fullBatch: 4);
        // 4 x 2,000 prompt tokens: four steps' worth of the default budget
        Task<GenerationResult>[] calls = Enumerable.Range(0, 4)
            .Select(i => engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(10 + i, 2000), MaxNewTokens = 4 })).ToArray();
        await Task.WhenAll(calls).WaitAsync(TimeSpan.FromMinutes(2));
        // The engine may start a step before the last call is submitted; after that, every step runs the whole batch.
        // Paced by the default budget, the fourth call would join the first's last step: one full step at most.
        Assert.True(meter.Steps >= 2, $"{meter.Steps} full-batch steps of {engine.Statistics.Batches}");
    }
}
