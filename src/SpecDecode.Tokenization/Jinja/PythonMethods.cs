using System.Text;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>Python's whitespace and the string operations the filters and methods share.</summary>
internal static class PythonText
{
    /// <summary>Python's <c>str.isspace</c> for one character (.NET's whitespace plus the separators U+001C..U+001F).</summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary>Whether <c>s[from..]</c> is all whitespace.</summary>
    public static bool IsAllSpace(string s, int from)
    {
        for (int i = from; i < s.Length; i++)
        {
            if (!IsSpace(s[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The characters of <paramref name="s"/> as Python counts them (code points: a surrogate pair is one),
    /// or null when every UTF-16 unit is one character (the common case).</summary>
    public static string[]? CodePoints(string s)
    {
        if (!s.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF'))
        {
            return null;
        }

        var points = new List<string>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            points.Add(char.IsSurrogatePair(s, i) ? s.Substring(i++, 2) : s[i].ToString());
        }

        return [.. points];
    }

    /// <summary>Python's <c>str.rstrip()</c>.</summary>
    public static string RStrip(string s) => Strip(s, null, left: false, right: true);

    /// <summary>Python's <c>strip</c>, <c>lstrip</c> and <c>rstrip</c>: whitespace, or any of <paramref name="chars"/>.</summary>
    public static string Strip(string s, string? chars, bool left, bool right)
    {
        bool Strippable(char c) => chars is null ? IsSpace(c) : chars.Contains(c);
        int start = 0, end = s.Length;
        if (left)
        {
            while (start < end && Strippable(s[start]))
            {
                start++;
            }
        }

        if (right)
        {
            while (end > start && Strippable(s[end - 1]))
            {
                end--;
            }
        }

        return s[start..end];
    }

    /// <summary>Python's <c>str.split(sep, maxsplit)</c> (and <c>rsplit</c> when <paramref name="fromRight"/>): without
    /// a separator, runs of whitespace split and empty pieces are dropped.</summary>
    public static List<object?> Split(string s, string? separator, long maxSplit, bool fromRight)
    {
        if (separator is { Length: 0 })
        {
            throw new JinjaRuntimeException("empty separator");
        }

        var parts = new List<string>();
        long splits = maxSplit < 0 ? long.MaxValue : maxSplit;
        if (separator is null)
        {
            if (!fromRight)
            {
                int i = 0;
                while (true)
                {
                    while (i < s.Length && IsSpace(s[i]))
                    {
                        i++;
                    }

                    if (i >= s.Length)
                    {
                        break;
                    }

                    if (parts.Count == splits)
                    {
                        parts.Add(Strip(s[i..], null, left: false, right: true));
                        break;
                    }

                    int start = i;
                    while (i < s.Length && !IsSpace(s[i]))
                    {
                        i++;
                    }

                    parts.Add(s[start..i]);
                }
            }
            else
            {
                int i = s.Length;
                while (true)
                {
                    while (i > 0 && IsSpace(s[i - 1]))
                    {
                        i--;
                    }

                    if (i <= 0)
                    {
                        break;
                    }

                    if (parts.Count == splits)
                    {
                        parts.Add(Strip(s[..i], null, left: true, right: false));
                        break;
                    }

                    int end = i;
                    while (i > 0 && !IsSpace(s[i - 1]))
                    {
                        i--;
                    }

                    parts.Add(s[i..end]);
                }

                parts.Reverse();
            }

            return [.. parts];
        }

        if (!fromRight)
        {
            int start = 0;
            while (parts.Count < splits)
            {
                int at = s.IndexOf(separator, start, StringComparison.Ordinal);
                if (at < 0)
                {
                    break;
                }

                parts.Add(s[start..at]);
                start = at + separator.Length;
            }

            parts.Add(s[start..]);
        }
        else
        {
            int end = s.Length;
            while (parts.Count < splits && end >= separator.Length)
            {
                int at = s.LastIndexOf(separator, end - 1, end, StringComparison.Ordinal);
                if (at < 0)
                {
                    break;
                }

                parts.Add(s[(at + separator.Length)..end]);
                end = at;
            }

            parts.Add(s[..end]);
            parts.Reverse();
        }

        return [.. parts];
    }

    /// <summary>Python's <c>str.replace(old, new, count)</c>; an empty <paramref name="old"/> inserts between all
    /// characters, as Python does.</summary>
    public static string Replace(string s, string old, string replacement, long count)
    {
        if (count < 0)
        {
            count = long.MaxValue;
        }

        var sb = new StringBuilder();
        if (old.Length == 0)
        {
            long done = 0;
            for (int i = 0; i <= s.Length; i++)
            {
                if (done < count)
                {
                    sb.Append(replacement);
                    done++;
                }

                if (i < s.Length)
                {
                    sb.Append(s[i]);
                }
            }

            return sb.ToString();
        }

        int start = 0;
        long replaced = 0;
        while (replaced < count)
        {
            int at = s.IndexOf(old, start, StringComparison.Ordinal);
            if (at < 0)
            {
                break;
            }

            sb.Append(s, start, at - start).Append(replacement);
            start = at + old.Length;
            replaced++;
        }

        return sb.Append(s, start, s.Length - start).ToString();
    }

    /// <summary>Python's <c>str.capitalize()</c>.</summary>
    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Python's <c>str.splitlines()</c> (without keepends).</summary>
    public static List<string> SplitLines(string s)
    {
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is '\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')
            {
                lines.Add(s[start..i]);
                if (c == '\r' && i + 1 < s.Length && s[i + 1] == '\n')
                {
                    i++;
                }

                start = i + 1;
            }
        }

        if (start < s.Length)
        {
            lines.Add(s[start..]);
        }

        return lines;
    }
}

/// <summary>
/// The methods templates call on strings and dicts. Strings: <c>strip lstrip rstrip split rsplit startswith endswith
/// replace upper lower capitalize title find count join isdigit isspace isalpha isalnum</c>; dicts: <c>get items keys
/// values</c>. Methods that would change a list or dict (<c>append</c>, <c>update</c>, <c>pop</c>, ...) are refused, as
/// transformers' immutable sandbox refuses them.
/// </summary>
internal static class PythonMethods
{
    private static readonly HashSet<string> StringMethods = new(StringComparer.Ordinal)
    {
        "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "replace", "upper", "lower",
        "capitalize", "title", "find", "count", "join", "isdigit", "isspace", "isalpha", "isalnum",
    };

    private static readonly HashSet<string> DictMethods = new(StringComparer.Ordinal) { "get", "items", "keys", "values" };

    private static readonly HashSet<string> MutatingMethods = new(StringComparer.Ordinal)
    {
        "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update", "setdefault", "popitem",
    };

    /// <summary>The method <paramref name="name"/> of <paramref name="target"/>, or null when it has none.</summary>
    public static object? Find(object target, string name) => target switch
    {
        string when StringMethods.Contains(name) => new BoundMethod(target, name),
        JinjaDict when DictMethods.Contains(name) => new BoundMethod(target, name),
        JinjaDict or List<object?> when MutatingMethods.Contains(name) =>
            new Undefined($"access to attribute '{name}' of '{Python.TypeName(target)}' object is unsafe (transformers renders chat templates in an immutable sandbox)"),
        _ => null,
    };

    /// <summary>Calls a method found by <see cref="Find"/>.</summary>
    public static object? Call(BoundMethod method, CallArguments args)
    {
        string name = method.Name;
        if (method.Target is JinjaDict dict)
        {
            switch (name)
            {
                case "get":
                    {
                        object?[] a = args.Bind("get", ["key", "default"], CallArguments.Required, null);
                        return dict.TryGetValue(a[0], out object? value) ? value : a[1];
                    }

                case "items":
                    args.Bind("items", []);
                    return new PythonSequence("dict_items", dict.Select(e => (object?)new object?[] { e.Key, e.Value }).ToList());
                case "keys":
                    args.Bind("keys", []);
                    return new PythonSequence("dict_keys", dict.Keys.ToList());
                default:
                    args.Bind("values", []);
                    return new PythonSequence("dict_values", dict.Values.ToList());
            }
        }

        string s = (string)method.Target;
        switch (name)
        {
            case "strip":
            case "lstrip":
            case "rstrip":
                {
                    object?[] a = args.Bind(name, ["chars"], [null]);
                    string? chars = a[0] is null ? null : ExpectString(a[0], name);
                    return PythonText.Strip(s, chars, left: name != "rstrip", right: name != "lstrip");
                }

            case "split":
            case "rsplit":
                {
                    object?[] a = args.Bind(name, ["sep", "maxsplit"], null, -1L);
                    return PythonText.Split(s, a[0] is null ? null : ExpectString(a[0], name), Python.ToLong(a[1]), name == "rsplit");
                }

            case "startswith":
            case "endswith":
                {
                    object?[] a = args.Bind(name, ["prefix"], CallArguments.Required);
                    IEnumerable<object?> options = a[0] is object?[] tuple ? tuple : [a[0]];
                    return options.Any(o => name == "startswith"
                        ? s.StartsWith(ExpectString(o, name), StringComparison.Ordinal)
                        : s.EndsWith(ExpectString(o, name), StringComparison.Ordinal));
                }

            case "replace":
                {
                    object?[] a = args.Bind(name, ["old", "new", "count"], CallArguments.Required, CallArguments.Required, -1L);
                    return PythonText.Replace(s, ExpectString(a[0], name), ExpectString(a[1], name), Python.ToLong(a[2]));
                }

            case "upper":
                args.Bind(name, []);
                return s.ToUpperInvariant();
            case "lower":
                args.Bind(name, []);
                return s.ToLowerInvariant();
            case "capitalize":
                args.Bind(name, []);
                return PythonText.Capitalize(s);
            case "title":
                args.Bind(name, []);
                return Title(s);
            case "find":
                {
                    object?[] a = args.Bind(name, ["sub"], CallArguments.Required);
                    return (long)s.IndexOf(ExpectString(a[0], name), StringComparison.Ordinal);
                }

            case "count":
                {
                    object?[] a = args.Bind(name, ["sub"], CallArguments.Required);
                    string sub = ExpectString(a[0], name);
                    if (sub.Length == 0)
                    {
                        return (long)s.Length + 1;
                    }

                    long n = 0;
                    for (int at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0; at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal))
                    {
                        n++;
                    }

                    return n;
                }

            case "join":
                {
                    object?[] a = args.Bind(name, ["iterable"], CallArguments.Required);
                    return string.Join(s, Python.Iterate(a[0]).Select(x => x is string t
                        ? t
                        : throw new JinjaRuntimeException($"sequence item: expected str instance, {Python.TypeName(x)} found")));
                }

            default:
                args.Bind(name, []);
                Func<char, bool> test = name switch
                {
                    "isdigit" => char.IsDigit,
                    "isspace" => PythonText.IsSpace,
                    "isalpha" => char.IsLetter,
                    _ => char.IsLetterOrDigit,
                };
                return s.Length > 0 && s.All(test);
        }
    }

    private static string ExpectString(object? value, string method) =>
        value as string ?? throw new JinjaRuntimeException($"{method}() argument must be str, not {Python.TypeName(value)}");

    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (char c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }

        return sb.ToString();
    }
}
