using SpecDecode.EngineBench;

namespace SpecDecode.Tree.Tests;

/// <summary>EngineBench's floor for issue 18's "plain decoding at 0.8x the floor rate": the mean cached length over
/// plain decoding's steps, and B tokens per step that reads the weights and B × C tokens' keys and values once.</summary>
public sealed class EngineBenchFloorTests
{
    [Fact]
    public void TheMeanDecodeContextWeighsEachCallByItsResponseTokens()
    {
        TraceCallTokens[] calls =
        [
            new("a", 0, new int[10], new int[4]),   // steps at 10, 11, 12, 13 cached tokens
            new("b", 0, new int[100], new int[2]),  // at 100, 101
        ];
        Assert.Equal((10 + 11 + 12 + 13 + 100 + 101) / 6.0, BenchCommand.MeanDecodeContext(calls), 9);
        Assert.Equal(0, BenchCommand.MeanDecodeContext([]));
    }

    [Fact]
    public void TheFloorRateIsTheBatchPerStepThatReadsWeightsAndCacheOnce()
    {
        var memory = new MemoryEstimate(WeightBytes: 1_000_000_000, KvCacheBytes: 0, KvBytesPerToken: 1000);
        // 1e9 + 2 × 1000 × 1000 bytes at 100 GB/s: 10.02 ms a step, 2 tokens a step
        Assert.Equal(2 / 0.01002, BenchCommand.FloorTokensPerSecond(memory, batch: 2, context: 1000, copyGBps: 100), 6);
        Assert.Equal(0, BenchCommand.FloorTokensPerSecond(memory, batch: 2, context: 1000, copyGBps: 0)); // not measured (CPU)
    }

    [Fact]
    public void AReportWithoutAPlainRunShowsNoSpeedup_NotNaN()
    {
        VariantResult Variant(string name, double tokensPerSecond) =>
            new(name, 1, 24, 3079, 3079 / tokensPerSecond, tokensPerSecond, 1323, 1323, 2.327, 0.354, 3.75, 0.05, 7.0, 0.03, 1.0, 0, GraphsCaptured: 7);
        BenchReport Report(params VariantResult[] results) => new("today", "cuda", "2.10", "simple", "llama", null, 256, "BFloat16", 8192, 32, 40,
            1283, 0, 4.2, [new ReferencePoint(1, 24, 3079, 2.327, 0.354, 5161)], results);

        string alone = BenchCommand.Markdown(Report(Variant("suffix-adaptive", 295.7), Variant("hybrid-adaptive", 350.1)));
        Assert.DoesNotContain("NaN", alone);
        Assert.Contains("| 1 | 24 | hybrid-adaptive | 350.1 | - | 2.327 | 2.327 |  |", alone);

        string withPlain = BenchCommand.Markdown(Report(Variant("plain", 150.0), Variant("suffix-adaptive", 300.0)));
        Assert.Contains("| 1 | 24 | suffix-adaptive | 300.0 | 2.00x | 2.327 | 2.327 | 0.86 |", withPlain);
        Assert.EndsWith("| 7 | - |", withPlain.TrimEnd().Split('\n')[^1]); // graphs captured (the variant-order bias); no full-batch figure

        string full = BenchCommand.Markdown(Report(Variant("plain", 150.0) with { FullBatchTokensPerSecond = 100, FullBatchShare = 0.9 },
            Variant("suffix-adaptive", 300.0) with { FullBatchTokensPerSecond = 150, FullBatchShare = 0.8 }));
        Assert.EndsWith("| 100.0 (90 %) |", full.TrimEnd().Split('\n')[^2]);
        Assert.EndsWith("| 150.0 (80 %), 1.50x |", full.TrimEnd().Split('\n')[^1]);

        // --rounds 2: each round's speedup is against plain of the same round; the plots draw the last round
        BenchReport rounds = Report(Variant("plain", 150.0), Variant("suffix-adaptive", 300.0),
            Variant("plain", 200.0) with { Round = 2 }, Variant("suffix-adaptive", 500.0) with { Round = 2, GraphsCaptured = 0 });
        string twice = BenchCommand.Markdown(rounds);
        Assert.Contains("| 1 | 24 | suffix-adaptive | 300.0 | 2.00x |", twice);
        Assert.Contains("| 1 | 24 | plain, round 2 | 200.0 | 1.00x |", twice);
        Assert.Contains("| 1 | 24 | suffix-adaptive, round 2 | 500.0 | 2.50x |", twice);
        Assert.Equal([200.0, 500.0], rounds.LastRound.Select(r => r.TokensPerSecond));
    }
}
