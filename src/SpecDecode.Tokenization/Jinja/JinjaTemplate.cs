using System.Collections;
using System.Text.Json;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// A parsed Jinja template, rendered as transformers renders chat templates: <c>trim_blocks</c> and
/// <c>lstrip_blocks</c> on, <c>break</c>/<c>continue</c> enabled, and the globals <c>range</c>, <c>dict</c>,
/// <c>namespace</c>, <c>raise_exception(message)</c> and <c>strftime_now(format)</c>. Immutable; rendering is
/// thread-safe.
/// </summary>
internal sealed class JinjaTemplate
{
    private const int MaxRange = 100_000;

    private readonly JinjaSource _source;
    private readonly IReadOnlyList<JinjaStatement> _body;
    private readonly IReadOnlyDictionary<object, string[]> _undefinedAtEntry;

    private JinjaTemplate(JinjaSource source, IReadOnlyList<JinjaStatement> body)
    {
        _source = source;
        _body = body;
        _undefinedAtEntry = JinjaScopeAnalysis.Analyze(body);
    }

    /// <summary>Parses <paramref name="template"/>.</summary>
    /// <exception cref="ChatTemplateException">A syntax error or an unsupported tag, filter or test, with its line and
    /// column.</exception>
    public static JinjaTemplate Parse(string template)
    {
        var source = new JinjaSource(template);
        return new JinjaTemplate(source, JinjaParser.Parse(source));
    }

    /// <summary>Renders the template with <paramref name="variables"/> (C# values, converted by
    /// <see cref="ToJinja"/>); <c>strftime_now</c> reads the local time of <paramref name="clock"/>.</summary>
    /// <exception cref="ChatTemplateException">A runtime error or the template's <c>raise_exception</c>.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables, TimeProvider clock)
    {
        var converted = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach ((string name, object? value) in variables)
        {
            converted[name] = ToJinja(value);
        }

        return JinjaInterpreter.Render(_source, _body, _undefinedAtEntry, Globals(clock), converted);
    }

    private static Dictionary<string, object?> Globals(TimeProvider clock) => new(StringComparer.Ordinal)
    {
        ["range"] = new JinjaCallable("range", (_, args) => Range(args)),
        ["dict"] = new JinjaCallable("dict", (_, args) =>
        {
            var dict = new JinjaDict();
            if (args.Positional.Count > 0)
            {
                CopyInto(dict, args.Positional.Count == 1 ? args.Positional[0] : throw new JinjaRuntimeException("dict expected at most 1 argument"));
            }

            foreach ((string key, object? value) in args.Keywords)
            {
                dict.Set(key, value);
            }

            return dict;
        }),
        ["namespace"] = new JinjaCallable("namespace", (_, args) =>
        {
            var ns = new JinjaNamespace();
            if (args.Positional.Count > 0)
            {
                CopyInto(ns.Attributes, args.Positional.Count == 1 ? args.Positional[0] : throw new JinjaRuntimeException("namespace expected at most 1 positional argument"));
            }

            foreach ((string key, object? value) in args.Keywords)
            {
                ns.Attributes.Set(key, value);
            }

            return ns;
        }),
        ["raise_exception"] = new JinjaCallable("raise_exception", (_, args) =>
        {
            object?[] p = args.Bind("raise_exception", ["message"], CallArguments.Required);
            throw new JinjaInterpreter.TemplateRaisedException(Python.Str(p[0]));
        }),
        ["strftime_now"] = new JinjaCallable("strftime_now", (_, args) =>
        {
            object?[] p = args.Bind("strftime_now", ["format"], CallArguments.Required);
            return PythonStrftime.Format(clock.GetLocalNow(), p[0] as string ?? throw new JinjaRuntimeException("strftime_now() format must be a string"));
        }),
    };

    private static void CopyInto(JinjaDict dict, object? source)
    {
        if (source is JinjaDict other)
        {
            foreach ((object? key, object? value) in other)
            {
                dict.Set(key, value);
            }

            return;
        }

        foreach (object? pair in Python.Iterate(source))
        {
            List<object?> kv = Python.Iterate(pair);
            if (kv.Count != 2)
            {
                throw new JinjaRuntimeException("dictionary update sequence element has the wrong length; 2 is required");
            }

            dict.Set(kv[0], kv[1]);
        }
    }

    private static PythonSequence Range(CallArguments args)
    {
        IReadOnlyList<object?> p = args.Positional;
        if (args.Keywords.Count > 0 || p.Count is 0 or > 3)
        {
            throw new JinjaRuntimeException("range() takes 1 to 3 positional integer arguments");
        }

        long start = p.Count == 1 ? 0 : Python.ToLong(p[0]);
        long stop = Python.ToLong(p.Count == 1 ? p[0] : p[1]);
        long step = p.Count == 3 ? Python.ToLong(p[2]) : 1;
        if (step == 0)
        {
            throw new JinjaRuntimeException("range() arg 3 must not be zero");
        }

        var result = new List<object?>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            if (result.Count >= MaxRange)
            {
                throw new JinjaRuntimeException($"range too big; the sandbox allows at most {MaxRange} items");
            }

            result.Add(i);
        }

        string repr = step == 1 ? $"range({start}, {stop})" : $"range({start}, {stop}, {step})";
        return new PythonSequence("range", result, repr);
    }

    /// <summary>
    /// Converts a C# value to the value a template sees: null, string, bool, integers (as int), floating-point numbers
    /// (as float), <see cref="PromptMessage"/> (a dict with <c>role</c> and <c>content</c>),
    /// <see cref="JsonElement"/> (objects become dicts, arrays lists, integral numbers ints), dictionaries with string
    /// keys (dicts, in their enumeration order) and other sequences (lists).
    /// </summary>
    /// <exception cref="ArgumentException">A value of another type.</exception>
    public static object? ToJinja(object? value)
    {
        switch (value)
        {
            case null: return null;
            case string or bool or long or double: return value;
            case int or short or sbyte or byte or ushort or uint: return Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
            case float f: return (double)f;
            case decimal m: return (double)m;
            case PromptMessage message:
                {
                    var dict = new JinjaDict();
                    dict.Set("role", message.Role);
                    dict.Set("content", message.Content);
                    return dict;
                }

            case JsonElement element:
                return FromJson(element);
            case IEnumerable<KeyValuePair<string, object?>> pairs:
                {
                    var dict = new JinjaDict();
                    foreach ((string key, object? item) in pairs)
                    {
                        dict.Set(key, ToJinja(item));
                    }

                    return dict;
                }

            case IDictionary dictionary:
                {
                    var dict = new JinjaDict();
                    foreach (DictionaryEntry entry in dictionary)
                    {
                        dict.Set(entry.Key as string ?? throw new ArgumentException("dictionary keys passed to a chat template must be strings."), ToJinja(entry.Value));
                    }

                    return dict;
                }

            case IEnumerable sequence:
                return sequence.Cast<object?>().Select(ToJinja).ToList();
            default:
                throw new ArgumentException($"a value of type {value.GetType().Name} cannot be passed to a chat template (use strings, numbers, booleans, null, lists, string-keyed dictionaries or JsonElement).");
        }
    }

    private static object? FromJson(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                {
                    var dict = new JinjaDict();
                    foreach (JsonProperty property in element.EnumerateObject())
                    {
                        dict.Set(property.Name, FromJson(property.Value));
                    }

                    return dict;
                }

            case JsonValueKind.Array:
                return element.EnumerateArray().Select(FromJson).ToList();
            case JsonValueKind.String:
                return element.GetString();
            case JsonValueKind.Number:
                {
                    string raw = element.GetRawText();
                    return raw.IndexOfAny(['.', 'e', 'E']) < 0 && element.TryGetInt64(out long l) ? (object)l : element.GetDouble();
                }

            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            default:
                return null;
        }
    }
}
