namespace SpecDecode.Replay.Tests;

public sealed class SampleBufferTests
{
    [Fact]
    public void Percentiles_are_nearest_rank()
    {
        var buffer = new SampleBuffer(2);
        for (int i = 100; i >= 1; i--)
        {
            buffer.Add(i);
        }
        LatencySummary s = buffer.Summarize(scale: 2);
        Assert.Equal(100, s.Count);
        Assert.Equal(100, s.Median); // 50th of 1..100 is 50, times 2
        Assert.Equal(198, s.P99);
        Assert.Equal(200, s.Max);
        Assert.Equal(101, s.Mean);
    }

    [Fact]
    public void Empty_buffer_summarizes_to_none() => Assert.Equal(LatencySummary.None, new SampleBuffer().Summarize(1));
}
