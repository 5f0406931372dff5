namespace SpecDecode.Core.Tests;

/// <summary>SamplingOptions' validation and its greedy rule (issue 16 item 4: tiny temperatures overflowed the division
/// by the temperature and turned the probabilities into NaN).</summary>
public sealed class SamplingOptionsTests
{
    [Theory]
    [InlineData(0f, true)]
    [InlineData(float.Epsilon, true)]
    [InlineData(1e-38f, true)]
    [InlineData(9.9e-6f, true)]
    [InlineData(1e-5f, false)]
    [InlineData(0.7f, false)]
    public void TemperaturesBelowTheMinimum_AreGreedy(float temperature, bool greedy)
    {
        var options = new SamplingOptions { Temperature = temperature };
        Assert.Equal(greedy, options.IsGreedy);
        Assert.Equal(temperature, options.Temperature);
    }

    [Theory]
    [InlineData(-1e-30f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void NegativeOrNonFiniteTemperatures_AreRefused(float temperature) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new SamplingOptions { Temperature = temperature });
}
