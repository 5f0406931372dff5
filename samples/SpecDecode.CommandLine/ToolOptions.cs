using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace SpecDecode.CommandLine;

/// <summary>
/// Options whose values are parsed by the tools' own rules instead of System.CommandLine's type conversion, so that a
/// bad value gets a message that names the option and what to give (<c>--budget: 'abc' is not a whole number; give one
/// from 0 to 4095.</c>) instead of a .NET type name or an exception thrown from a validator, and an out-of-range value is
/// refused while parsing, before any model loads.
/// </summary>
/// <remarks>Hand-written on purpose: System.CommandLine 3 reports a conversion failure as "Cannot parse argument 'abc'
/// for option '--seed' as expected type 'System.Nullable`1[System.Int64]'" and throws from
/// <c>GetValueOrDefault</c> when a validator reads such a value; its <c>CustomParser</c> hook is the documented way to own
/// both the conversion and the message.</remarks>
public static class ToolOptions
{
    /// <summary>A whole-number option in [<paramref name="min"/>, <paramref name="max"/>] with a default.</summary>
    public static Option<int> Int(string name, string description, int defaultValue, int min, int max = int.MaxValue, params string[] aliases)
    {
        var option = new Option<int>(name, aliases) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = r => (int)ParseWhole(r, name, min, max);
        return option;
    }

    /// <summary>A whole-number option in [<paramref name="min"/>, <paramref name="max"/>], null when not given.</summary>
    public static Option<int?> OptionalInt(string name, string description, int min, int max = int.MaxValue, params string[] aliases)
    {
        var option = new Option<int?>(name, aliases) { Description = description };
        option.CustomParser = r => (int)ParseWhole(r, name, min, max);
        return option;
    }

    /// <summary>A 64-bit whole-number option in [<paramref name="min"/>, <paramref name="max"/>] with a default.</summary>
    public static Option<long> Long(string name, string description, long defaultValue, long min, long max = long.MaxValue, params string[] aliases)
    {
        var option = new Option<long>(name, aliases) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = r => ParseWhole(r, name, min, max);
        return option;
    }

    /// <summary>A 64-bit whole-number option in [<paramref name="min"/>, <paramref name="max"/>], null when not given
    /// (a seed).</summary>
    public static Option<long?> OptionalLong(string name, string description, long min, long max = long.MaxValue, params string[] aliases)
    {
        var option = new Option<long?>(name, aliases) { Description = description };
        option.CustomParser = r => ParseWhole(r, name, min, max);
        return option;
    }

    /// <summary>A number option within <paramref name="range"/> with a default.</summary>
    public static Option<float> Float(string name, string description, float defaultValue, NumberRange range, params string[] aliases)
    {
        var option = new Option<float>(name, aliases) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = r => (float)ParseNumber(r, name, range);
        return option;
    }

    /// <summary>A number option within <paramref name="range"/> with a default.</summary>
    public static Option<double> Double(string name, string description, double defaultValue, NumberRange range, params string[] aliases)
    {
        var option = new Option<double>(name, aliases) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = r => ParseNumber(r, name, range);
        return option;
    }

    /// <summary>A number option within <paramref name="range"/>, null when not given.</summary>
    public static Option<double?> OptionalDouble(string name, string description, NumberRange range, params string[] aliases)
    {
        var option = new Option<double?>(name, aliases) { Description = description };
        option.CustomParser = r => ParseNumber(r, name, range);
        return option;
    }

    /// <summary>An option that takes one of <paramref name="choices"/> (case-sensitive), with a default (null: none); a
    /// value outside them is refused naming the option and the choices.</summary>
    public static Option<string?> Choice(string name, string description, string? defaultValue, IReadOnlyList<string> choices, params string[] aliases)
    {
        ArgumentNullException.ThrowIfNull(choices);
        var option = new Option<string?>(name, aliases) { Description = description };
        if (defaultValue is not null)
        {
            option.DefaultValueFactory = _ => defaultValue;
        }
        option.CompletionSources.Add(choices.ToArray());
        option.CustomParser = r =>
        {
            string? token = Single(r);
            if (token is null || choices.Contains(token, StringComparer.Ordinal))
            {
                return token;
            }
            r.AddError($"{name}: '{token}' is not one of {string.Join(", ", choices)}; give one of them.");
            return null;
        };
        return option;
    }

    /// <summary>A repeatable option whose every value is one of <paramref name="choices"/>; a value outside them is
    /// refused naming the option and the choices.</summary>
    public static Option<string[]> Choices(string name, string description, IReadOnlyList<string> choices, params string[] aliases)
    {
        ArgumentNullException.ThrowIfNull(choices);
        var option = new Option<string[]>(name, aliases) { Description = description, AllowMultipleArgumentsPerToken = false };
        option.CompletionSources.Add(choices.ToArray());
        option.Validators.Add(r =>
        {
            foreach (string token in r.Tokens.Select(t => t.Value).Where(t => !choices.Contains(t, StringComparer.Ordinal)))
            {
                r.AddError($"{name}: '{token}' is not one of {string.Join(", ", choices)}; give one of them.");
                return;
            }
        });
        return option;
    }

    /// <summary>An existing, non-empty file, null when not given: a missing path, a folder or an empty file is refused
    /// while parsing, each with its own message.</summary>
    public static Option<FileInfo?> InputFile(string name, string description, params string[] aliases)
    {
        var option = new Option<FileInfo?>(name, aliases) { Description = description };
        option.CustomParser = r =>
        {
            string? path = Single(r);
            if (path is null)
            {
                return null;
            }
            string full = Path.GetFullPath(path);
            if (Directory.Exists(full))
            {
                r.AddError($"{name}: {full} is a folder; give a file.");
                return null;
            }
            var file = new FileInfo(full);
            if (!file.Exists)
            {
                r.AddError($"{name}: {full} does not exist; give an existing file.");
                return null;
            }
            if (file.Length == 0)
            {
                r.AddError($"{name}: {full} is empty; give a file with content.");
                return null;
            }
            return file;
        };
        return option;
    }

    /// <summary>Parses the option's one token as a whole number in [<paramref name="min"/>, <paramref name="max"/>],
    /// adding an error that names the option otherwise.</summary>
    public static long ParseWhole(ArgumentResult result, string name, long min, long max)
    {
        ArgumentNullException.ThrowIfNull(result);
        string? token = Single(result);
        if (token is null)
        {
            return 0;
        }
        string range = new NumberRange(min, max == long.MaxValue || max == int.MaxValue ? double.PositiveInfinity : max).Describe(whole: true);
        if (!long.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            bool number = double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d);
            string why = !number ? "is not a whole number"
                : d != Math.Floor(d) ? "is not a whole number"
                : Math.Abs(d) < 1e18 ? "is not written as a whole number (write the digits out)"
                : "is far too large";
            result.AddError($"{name}: '{token}' {why}; give one {range}.");
            return 0;
        }
        if (value < min || value > max)
        {
            string text = value.ToString(CultureInfo.InvariantCulture);
            result.AddError(value > max
                ? $"{name}: {text} is too large; give a whole number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}."
                : $"{name}: {text} is too small; give a whole number {range}.");
            return 0;
        }
        return value;
    }

    /// <summary>Parses the option's one token as a finite number within <paramref name="range"/>, adding an error that
    /// names the option otherwise.</summary>
    public static double ParseNumber(ArgumentResult result, string name, NumberRange range)
    {
        ArgumentNullException.ThrowIfNull(result);
        string? token = Single(result);
        if (token is null)
        {
            return 0;
        }
        if (!double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) || !double.IsFinite(value))
        {
            result.AddError($"{name}: '{token}' is not a number; give one {range.Describe(whole: false)}.");
            return 0;
        }
        if (!range.Contains(value))
        {
            result.AddError($"{name}: {token} is out of range; give a number {range.Describe(whole: false)}.");
            return 0;
        }
        return value;
    }

    /// <summary>The option's single token, or null when it has none (System.CommandLine reports a missing value itself).</summary>
    private static string? Single(ArgumentResult result) => result.Tokens.Count == 0 ? null : result.Tokens[^1].Value;
}
