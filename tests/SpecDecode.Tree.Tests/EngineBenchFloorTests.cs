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
}
