using System.Globalization;

namespace SpecDecode.CommandLine;

/// <summary>The values a number option accepts: an interval with open or closed ends, and how it reads in a message
/// ("from 0 to 4095", "of 1 or more", "in (0, 1]").</summary>
/// <param name="Min">The lower end.</param>
/// <param name="Max">The upper end (<see cref="double.PositiveInfinity"/>: none).</param>
/// <param name="MinExclusive">Whether <paramref name="Min"/> itself is refused.</param>
/// <param name="MaxExclusive">Whether <paramref name="Max"/> itself is refused.</param>
public readonly record struct NumberRange(double Min, double Max, bool MinExclusive = false, bool MaxExclusive = false)
{
    /// <summary>Numbers of at least <paramref name="min"/>.</summary>
    public static NumberRange AtLeast(double min) => new(min, double.PositiveInfinity);

    /// <summary>Numbers above <paramref name="min"/>.</summary>
    public static NumberRange Above(double min) => new(min, double.PositiveInfinity, MinExclusive: true);

    /// <summary>Whether <paramref name="value"/> lies in the range (never NaN or an infinity).</summary>
    public bool Contains(double value) =>
        double.IsFinite(value)
        && (MinExclusive ? value > Min : value >= Min)
        && (MaxExclusive ? value < Max : value <= Max);

    /// <summary>The range in words, for whole numbers ("from 0 to 4095", "of 1 or more") or for any number
    /// ("in (0, 1]", "of 0 or more").</summary>
    public string Describe(bool whole)
    {
        string F(double v) => v.ToString(whole ? "0" : "G", CultureInfo.InvariantCulture);
        if (double.IsPositiveInfinity(Max))
        {
            return MinExclusive ? $"above {F(Min)}" : $"of {F(Min)} or more";
        }
        return whole && !MinExclusive && !MaxExclusive
            ? $"from {F(Min)} to {F(Max)}"
            : $"in {(MinExclusive ? "(" : "[")}{F(Min)}, {F(Max)}{(MaxExclusive ? ")" : "]")}";
    }
}
