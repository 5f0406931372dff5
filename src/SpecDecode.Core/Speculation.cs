namespace SpecDecode;

/// <summary>What a speculation policy knows about a request when it chooses the request's budget for one step.</summary>
/// <param name="Request">The request.</param>
/// <param name="BatchSize">How many requests take part in this verification step.</param>
/// <param name="ContextLength">The request's context length in tokens.</param>
/// <param name="RecentMeanAccepted">Mean accepted draft tokens per step over the request's recent steps (0 before any).</param>
public readonly record struct SpeculationInput(RequestId Request, int BatchSize, int ContextLength, double RecentMeanAccepted);

/// <summary>Chooses how many draft tokens a request may propose in a step (its budget).</summary>
public interface ISpeculationPolicy
{
    /// <summary>The budget for this request and step; 0 turns speculation off for it.</summary>
    int ChooseBudget(in SpeculationInput input);
}

/// <summary>The same budget for every request and step.</summary>
public sealed class FixedBudgetPolicy : ISpeculationPolicy
{
    /// <summary>Creates a policy that always answers <paramref name="maxTokens"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTokens"/> is negative.</exception>
    public FixedBudgetPolicy(int maxTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        MaxTokens = maxTokens;
    }

    /// <summary>The budget every step gets.</summary>
    public int MaxTokens { get; }

    /// <inheritdoc />
    public int ChooseBudget(in SpeculationInput input) => MaxTokens;
}

/// <summary>
/// SuffixDecoding's adaptive speculation length: a draft grown from a context match of length <c>m</c> may have at most
/// <c>min(MaxSpecTokens, floor(m * MaxSpecFactor + MaxSpecOffset))</c> tokens, so long matches speculate far and short,
/// unreliable matches speculate little.
/// </summary>
/// <remarks>Note that <c>default(MatchLengthRule)</c> has <see cref="MaxSpecTokens"/> 0 and so allows no draft at all; build
/// the rule with its constructor. Oliaro et al., 2024, "SuffixDecoding: Extreme Speculative Decoding for Emerging AI Applications", section on
/// adaptive speculation length; the same rule as ArcticInference's <c>max_spec_factor</c> and <c>max_spec_offset</c>.</remarks>
public readonly record struct MatchLengthRule
{
    /// <summary>Creates the rule.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is negative or not finite.</exception>
    public MatchLengthRule(int maxSpecTokens, float maxSpecFactor = 1f, float maxSpecOffset = 0f)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSpecTokens);
        if (!float.IsFinite(maxSpecFactor) || maxSpecFactor < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(maxSpecFactor), maxSpecFactor, "The factor must be a finite number >= 0.");
        }
        if (!float.IsFinite(maxSpecOffset))
        {
            throw new ArgumentOutOfRangeException(nameof(maxSpecOffset), maxSpecOffset, "The offset must be a finite number.");
        }
        MaxSpecTokens = maxSpecTokens;
        MaxSpecFactor = maxSpecFactor;
        MaxSpecOffset = maxSpecOffset;
    }

    /// <summary>Upper bound on draft tokens, whatever the match length.</summary>
    public int MaxSpecTokens { get; }

    /// <summary>Draft tokens allowed per matched context token.</summary>
    public float MaxSpecFactor { get; }

    /// <summary>Draft tokens added to (or, if negative, removed from) the match-proportional allowance.</summary>
    public float MaxSpecOffset { get; }

    /// <summary>The number of draft tokens allowed for a match of <paramref name="matchLength"/> tokens (never negative).</summary>
    public int Limit(int matchLength)
    {
        // The small epsilon makes e.g. 3 * (1/3) count as 1, as ArcticInference does.
        double allowed = Math.Floor(matchLength * (double)MaxSpecFactor + MaxSpecOffset + 1e-6);
        return (int)Math.Clamp(allowed, 0, MaxSpecTokens);
    }
}
