using System.Globalization;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// The filters chat templates use, with Jinja 3.1's semantics (and transformers' <c>tojson</c>): <c>abs capitalize
/// count default d first float indent int items join last length list lower map reject rejectattr replace reverse safe
/// select selectattr string title tojson trim upper</c>. A template naming another filter fails to parse.
/// </summary>
internal static class JinjaFilters
{
    private static readonly Dictionary<string, Func<object?, CallArguments, object?>> Filters = new(StringComparer.Ordinal)
    {
        ["abs"] = (v, a) =>
        {
            a.Bind("abs", []);
            return v switch
            {
                long l => l == long.MinValue ? throw new JinjaRuntimeException("integer overflow in abs()") : (object)Math.Abs(l),
                double d => (object)Math.Abs(d),
                bool b => (object)(b ? 1L : 0L),
                _ => throw new JinjaRuntimeException($"bad operand type for abs(): '{Python.TypeName(v)}'"),
            };
        },
        ["capitalize"] = (v, a) =>
        {
            a.Bind("capitalize", []);
            return PythonText.Capitalize(Python.Str(v));
        },
        ["count"] = Length,
        ["length"] = Length,
        ["default"] = Default,
        ["d"] = Default,
        ["first"] = (v, a) =>
        {
            a.Bind("first", []);
            if (v is JinjaIterator iterator)
            {
                return iterator.TryNext(out object? next) ? next : new Undefined("No first item, sequence was empty.");
            }

            List<object?> items = Python.Iterate(v);
            return items.Count > 0 ? items[0] : new Undefined("No first item, sequence was empty.");
        },
        ["last"] = (v, a) =>
        {
            a.Bind("last", []);
            if (v is JinjaIterator iterator)
            {
                throw new JinjaRuntimeException($"'{iterator.TypeName}' object is not reversible");
            }

            List<object?> items = Python.Iterate(v);
            return items.Count > 0 ? items[^1] : new Undefined("No last item, sequence was empty.");
        },
        ["float"] = (v, a) =>
        {
            object?[] p = a.Bind("float", ["default"], 0.0);
            return ToFloat(v) ?? p[0];
        },
        ["int"] = (v, a) =>
        {
            object?[] p = a.Bind("int", ["default", "base"], 0L, 10L);
            return ToInt(v, (int)Python.ToLong(p[1])) ?? p[0];
        },
        ["indent"] = Indent,
        ["items"] = (v, a) =>
        {
            a.Bind("items", []);
            return new JinjaIterator("generator", Items(v));
        },
        ["join"] = (v, a) =>
        {
            object?[] p = a.Bind("join", ["d", "attribute"], "", null);
            IEnumerable<object?> items = Python.Iterate(v);
            if (p[1] is not null)
            {
                items = items.Select(AttributeGetter(p[1], null));
            }

            return string.Join(Python.Str(p[0]), items.Select(Python.Str));
        },
        ["list"] = (v, a) =>
        {
            a.Bind("list", []);
            return Python.Iterate(v);
        },
        ["lower"] = (v, a) =>
        {
            a.Bind("lower", []);
            return Python.Str(v).ToLowerInvariant();
        },
        ["upper"] = (v, a) =>
        {
            a.Bind("upper", []);
            return Python.Str(v).ToUpperInvariant();
        },
        ["title"] = (v, a) => PythonMethods.Call(new BoundMethod(Python.Str(v), "title"), a),
        ["map"] = Map,
        ["select"] = (v, a) => Select(v, a, "select", byAttribute: false, keep: true),
        ["reject"] = (v, a) => Select(v, a, "reject", byAttribute: false, keep: false),
        ["selectattr"] = (v, a) => Select(v, a, "selectattr", byAttribute: true, keep: true),
        ["rejectattr"] = (v, a) => Select(v, a, "rejectattr", byAttribute: true, keep: false),
        ["replace"] = (v, a) =>
        {
            object?[] p = a.Bind("replace", ["old", "new", "count"], CallArguments.Required, CallArguments.Required, null);
            return PythonText.Replace(Python.Str(v), Python.Str(p[0]), Python.Str(p[1]), p[2] is null ? -1 : Python.ToLong(p[2]));
        },
        ["reverse"] = (v, a) =>
        {
            a.Bind("reverse", []);
            if (v is string s)
            {
                return string.Concat(Python.Iterate(s).Cast<string>().Reverse());
            }

            List<object?> items = Python.Iterate(v);
            items.Reverse();
            return v is JinjaIterator ? items : new JinjaIterator(v is List<object?> ? "list_reverseiterator" : "reversed", items);
        },
        ["safe"] = (v, a) =>
        {
            a.Bind("safe", []);
            return v;
        },
        ["string"] = (v, a) =>
        {
            a.Bind("string", []);
            return Python.Str(v);
        },
        ["tojson"] = (v, a) =>
        {
            object?[] p = a.Bind("tojson", ["ensure_ascii", "indent", "separators", "sort_keys"], false, null, null, false);
            string? indent = p[1] switch
            {
                null => null,
                long n => new string(' ', (int)Math.Max(0, n)),
                string s => s,
                _ => throw new JinjaRuntimeException("tojson indent must be an integer or a string"),
            };
            string? itemSeparator = null, keySeparator = null;
            if (p[2] is IReadOnlyList<object?> { Count: 2 } separators && separators[0] is string item && separators[1] is string key)
            {
                (itemSeparator, keySeparator) = (item, key);
            }
            else if (p[2] is not null)
            {
                throw new JinjaRuntimeException("tojson separators must be a pair of strings");
            }

            return PythonJson.Dumps(v, indent, itemSeparator, keySeparator, Python.Truthy(p[3]), Python.Truthy(p[0]));
        },
        ["trim"] = (v, a) =>
        {
            object?[] p = a.Bind("trim", ["chars"], [null]);
            return PythonText.Strip(Python.Str(v), p[0] is null ? null : Python.Str(p[0]), left: true, right: true);
        },
    };

    /// <summary>Whether a filter of that name exists.</summary>
    public static bool IsKnown(string name) => Filters.ContainsKey(name);

    /// <summary>Applies the filter <paramref name="name"/>.</summary>
    /// <exception cref="JinjaRuntimeException">An unknown filter, bad arguments, or a value the filter rejects.</exception>
    public static object? Apply(string name, object? value, CallArguments args) =>
        Filters.TryGetValue(name, out Func<object?, CallArguments, object?>? filter)
            ? filter(value, args)
            : throw new JinjaRuntimeException($"no filter named '{name}'");

    private static IEnumerable<object?> Items(object? value)
    {
        switch (value)
        {
            case Undefined:
                yield break;
            case JinjaDict dict:
                foreach ((object? key, object? item) in dict)
                {
                    yield return new object?[] { key, item };
                }

                yield break;
            default:
                throw new JinjaRuntimeException("Can only get item pairs from a mapping.");
        }
    }

    private static object? Length(object? value, CallArguments args)
    {
        args.Bind("length", []);
        return Python.Length(value);
    }

    private static object? Default(object? value, CallArguments args)
    {
        object?[] p = args.Bind("default", ["default_value", "boolean"], "", false);
        return value is Undefined || (Python.Truthy(p[1]) && !Python.Truthy(value)) ? p[0] : value;
    }

    private static object? Indent(object? value, CallArguments args)
    {
        object?[] p = args.Bind("indent", ["width", "first", "blank"], 4L, false, false);
        string indentation = p[0] is string s ? s : new string(' ', (int)Math.Max(0, Python.ToLong(p[0])));
        List<string> lines = PythonText.SplitLines(Python.Str(value) + "\n");
        string result;
        if (Python.Truthy(p[2]))
        {
            result = string.Join("\n" + indentation, lines);
        }
        else
        {
            result = lines[0];
            if (lines.Count > 1)
            {
                result += "\n" + string.Join("\n", lines.Skip(1).Select(line => line.Length > 0 ? indentation + line : line));
            }
        }

        return Python.Truthy(p[1]) ? indentation + result : result;
    }

    /// <summary>The items of <paramref name="value"/>, iterated only when enumerated (so errors surface lazily, as in a
    /// Python generator); nothing for a falsey value, as Jinja's <c>select_or_reject</c> and <c>do_map</c> check
    /// <c>if value</c> first.</summary>
    private static IEnumerable<object?> Lazy(object? value)
    {
        if (!Python.Truthy(value))
        {
            yield break;
        }

        foreach (object? item in Python.Iterate(value))
        {
            yield return item;
        }
    }

    private static object? Map(object? value, CallArguments args)
    {
        if (args.Positional.Count == 0)
        {
            object?[] p = args.Bind("map", ["attribute", "default"], CallArguments.Required, null);
            bool hasDefault = args.Keywords.Any(k => k.Key == "default");
            Func<object?, object?> getter = AttributeGetter(p[0], hasDefault ? p[1] : null, hasDefault);
            return new JinjaIterator("generator", Lazy(value).Select(getter));
        }

        string filter = args.Positional[0] as string ?? throw new JinjaRuntimeException("map() needs a filter name or attribute=");
        if (!IsKnown(filter))
        {
            throw new JinjaRuntimeException($"no filter named '{filter}'");
        }

        var rest = new CallArguments([.. args.Positional.Skip(1)], args.Keywords);
        return new JinjaIterator("generator", Lazy(value).Select(item => Apply(filter, item, rest)));
    }

    private static object? Select(object? value, CallArguments args, string callee, bool byAttribute, bool keep)
    {
        IReadOnlyList<object?> positional = args.Positional;
        int at = 0;
        Func<object?, object?> pick = x => x;
        if (byAttribute)
        {
            if (positional.Count == 0)
            {
                throw new JinjaRuntimeException($"{callee}() needs an attribute name");
            }

            pick = AttributeGetter(positional[0], null);
            at = 1;
        }

        Func<object?, bool> test;
        if (positional.Count > at)
        {
            string name = positional[at] as string ?? throw new JinjaRuntimeException($"{callee}() test name must be a string");
            var testArgs = new CallArguments([.. positional.Skip(at + 1)], args.Keywords);
            test = x => JinjaTestFunctions.Apply(name, x, testArgs);
        }
        else
        {
            test = Python.Truthy;
        }

        return new JinjaIterator("generator", Lazy(value).Where(item => test(pick(item)) == keep));
    }

    /// <summary>Jinja's <c>make_attrgetter</c>: a dotted path of item lookups (<c>"function.name"</c>; digits index
    /// lists).</summary>
    private static Func<object?, object?> AttributeGetter(object? attribute, object? fallback, bool hasFallback = false)
    {
        object?[] parts = attribute switch
        {
            string s => [.. s.Split('.').Select(p => long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? (object?)n : p)],
            long n => [n],
            _ => throw new JinjaRuntimeException("attribute must be a string or an integer"),
        };
        return item =>
        {
            object? current = item;
            foreach (object? part in parts)
            {
                current = JinjaAccess.GetItem(current, part);
                if (current is Undefined && hasFallback)
                {
                    return fallback;
                }
            }

            return current;
        };
    }

    private static object? ToInt(object? value, int radix)
    {
        switch (value)
        {
            case Undefined u: throw u.Fail();
            case long l: return l;
            case bool b: return b ? 1L : 0L;
            case double d when !double.IsNaN(d) && !double.IsInfinity(d) && Math.Abs(d) < 9.2e18: return (long)Math.Truncate(d);
            case string s:
                {
                    string text = PythonText.Strip(s, null, true, true).Replace("_", "", StringComparison.Ordinal);
                    if (radix == 10 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long parsed))
                    {
                        return parsed;
                    }

                    if (radix != 10)
                    {
                        try
                        {
                            return Convert.ToInt64(text, radix);
                        }
                        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
                        {
                            return null;
                        }
                    }

                    return ToFloat(s) is double f ? ToInt(f, 10) : null;
                }

            default: return null;
        }
    }

    private static double? ToFloat(object? value) => value switch
    {
        Undefined u => throw u.Fail(),
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        string s when double.TryParse(PythonText.Strip(s, null, true, true).Replace("_", "", StringComparison.Ordinal),
            NumberStyles.Float, CultureInfo.InvariantCulture, out double parsed) => parsed,
        _ => null,
    };
}
