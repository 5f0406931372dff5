namespace SpecDecode.Core.Tests;

public sealed class MatchLengthRuleTests
{
    [Theory]
    // maxSpecTokens, factor, offset, match length, limit = clamp(floor(m * factor + offset + 1e-6), 0, maxSpecTokens)
    [InlineData(32, 1f, 0f, 0, 0)]
    [InlineData(32, 1f, 0f, 5, 5)]
    [InlineData(32, 2f, 0f, 5, 10)]
    [InlineData(32, 0.5f, 0f, 5, 2)]        // floor(2.5)
    [InlineData(32, 1f, 3f, 5, 8)]          // offset adds
    [InlineData(32, 1f, 0.5f, 5, 5)]        // floor(5.5)
    [InlineData(32, 1f, -2f, 5, 3)]         // negative offset removes
    [InlineData(32, 1f, -2f, 1, 0)]         // ... and clamps at 0
    [InlineData(32, 0f, -1f, 100, 0)]
    [InlineData(32, 0f, 4f, 100, 4)]        // factor 0: the offset alone
    [InlineData(8, 1f, 0f, 100, 8)]         // cap
    [InlineData(8, 10f, 100f, int.MaxValue, 8)]
    [InlineData(0, 1f, 10f, 10, 0)]         // cap 0 turns speculation off
    [InlineData(32, 1f, 0f, -5, 0)]         // a negative match clamps at 0
    // The 1e-6 epsilon: float factors slightly below the decimal they spell still give the integer product.
    [InlineData(32, 1f / 3f, 0f, 3, 1)]
    [InlineData(32, 1f / 3f, 0f, 6, 2)]
    [InlineData(32, 0.7f, 0f, 10, 7)]       // 0.7f = 0.69999998..., 10 * 0.7f = 6.9999998...
    [InlineData(32, 0.9f, 0f, 10, 9)]       // 0.9f = 0.89999997...
    [InlineData(32, 0.7f, 0.3f, 1, 1)]      // 0.69999998 + 0.30000001 in float terms
    [InlineData(32, 0.1f, 0.7f, 3, 1)]
    public void Limit_FollowsTheRule(int maxSpecTokens, float factor, float offset, int matchLength, int limit)
    {
        var rule = new MatchLengthRule(maxSpecTokens, factor, offset);

        Assert.Equal(limit, rule.Limit(matchLength));
    }

    [Fact]
    public void Epsilon_IsNeededForPointSeven()
    {
        // Documents why the epsilon exists: without it, 10 * 0.7f floors to 6.
        Assert.Equal(6, (int)Math.Floor(10 * (double)0.7f));
        Assert.Equal(7, new MatchLengthRule(32, 0.7f).Limit(10));
    }

    [Fact]
    public void Defaults_AreFactorOneOffsetZero()
    {
        var rule = new MatchLengthRule(16);

        Assert.Equal(16, rule.MaxSpecTokens);
        Assert.Equal(1f, rule.MaxSpecFactor);
        Assert.Equal(0f, rule.MaxSpecOffset);
        Assert.Equal(7, rule.Limit(7));
        Assert.Equal(16, rule.Limit(70));
    }

    [Fact]
    public void Limit_NeverDecreasesWithTheMatch()
    {
        var rules = new[] { new MatchLengthRule(20, 0.3f, -1f), new MatchLengthRule(64, 1.7f, 0.2f), new MatchLengthRule(5, 0f, 2f) };
        foreach (MatchLengthRule rule in rules)
        {
            for (int m = 0; m < 200; m++)
            {
                Assert.True(rule.Limit(m) <= rule.Limit(m + 1), $"{rule}: Limit({m}) > Limit({m + 1})");
                Assert.InRange(rule.Limit(m), 0, rule.MaxSpecTokens);
            }
        }
    }

    [Theory]
    [InlineData(-1, 1f, 0f, "maxSpecTokens")]
    [InlineData(4, -0.5f, 0f, "maxSpecFactor")]
    [InlineData(4, float.NaN, 0f, "maxSpecFactor")]
    [InlineData(4, float.PositiveInfinity, 0f, "maxSpecFactor")]
    [InlineData(4, 1f, float.NaN, "maxSpecOffset")]
    [InlineData(4, 1f, float.NegativeInfinity, "maxSpecOffset")]
    [InlineData(4, 1f, float.PositiveInfinity, "maxSpecOffset")]
    public void Constructor_RejectsBadValues(int maxSpecTokens, float factor, float offset, string parameter)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MatchLengthRule(maxSpecTokens, factor, offset));
        Assert.Equal(parameter, ex.ParamName);
    }

    [Fact]
    public void Constructor_AcceptsNegativeOffsetAndZeroFactor()
    {
        var rule = new MatchLengthRule(0, 0f, -3f);

        Assert.Equal(0, rule.Limit(1000));
    }
}
