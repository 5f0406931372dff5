using System.Globalization;
using System.Text;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Python's <c>json.dumps</c> as transformers' <c>tojson</c> filter calls it: <c>ensure_ascii=False</c> by default (no
/// HTML escaping, unlike Jinja's own filter), separators <c>(', ', ': ')</c> or, with an indent, <c>(',', ': ')</c>,
/// keys in insertion order unless <c>sort_keys</c>. Floats are written as Python's <c>repr</c>; tuples as arrays.
/// </summary>
internal static class PythonJson
{
    /// <summary>Serializes <paramref name="value"/>.</summary>
    /// <exception cref="JinjaRuntimeException">A value JSON cannot hold (undefined, a namespace, a function).</exception>
    public static string Dumps(object? value, string? indent, string? itemSeparator, string? keySeparator, bool sortKeys, bool ensureAscii)
    {
        var sb = new StringBuilder();
        var settings = new Settings(indent, itemSeparator ?? (indent is null ? ", " : ","), keySeparator ?? ": ", sortKeys, ensureAscii);
        Write(sb, value, settings, 0);
        return sb.ToString();
    }

    private sealed record Settings(string? Indent, string ItemSeparator, string KeySeparator, bool SortKeys, bool EnsureAscii);

    private static void Write(StringBuilder sb, object? value, Settings settings, int level)
    {
        switch (value)
        {
            case null:
                sb.Append("null");
                break;
            case bool b:
                sb.Append(b ? "true" : "false");
                break;
            case long l:
                sb.Append(l.ToString(CultureInfo.InvariantCulture));
                break;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : Python.FloatRepr(d));
                break;
            case string s:
                WriteString(sb, s, settings.EnsureAscii);
                break;
            case List<object?> or object?[]:
                {
                    var items = (IReadOnlyList<object?>)value;
                    if (items.Count == 0)
                    {
                        sb.Append("[]");
                        break;
                    }

                    sb.Append('[');
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0)
                        {
                            sb.Append(settings.ItemSeparator);
                        }

                        NewLine(sb, settings, level + 1);
                        Write(sb, items[i], settings, level + 1);
                    }

                    NewLine(sb, settings, level);
                    sb.Append(']');
                    break;
                }

            case JinjaDict dict:
                {
                    if (dict.Count == 0)
                    {
                        sb.Append("{}");
                        break;
                    }

                    IEnumerable<(string Key, object? Value)> entries = dict.Select(e => (KeyText(e.Key), e.Value));
                    if (settings.SortKeys)
                    {
                        entries = entries.OrderBy(e => e.Key, StringComparer.Ordinal);
                    }

                    sb.Append('{');
                    bool first = true;
                    foreach ((string key, object? item) in entries)
                    {
                        if (!first)
                        {
                            sb.Append(settings.ItemSeparator);
                        }

                        first = false;
                        NewLine(sb, settings, level + 1);
                        WriteString(sb, key, settings.EnsureAscii);
                        sb.Append(settings.KeySeparator);
                        Write(sb, item, settings, level + 1);
                    }

                    NewLine(sb, settings, level);
                    sb.Append('}');
                    break;
                }

            case Undefined u:
                throw new JinjaRuntimeException($"Object of type Undefined is not JSON serializable ({u.Message})");
            default:
                throw new JinjaRuntimeException($"Object of type {Python.TypeName(value)} is not JSON serializable");
        }
    }

    private static string KeyText(object? key) => key switch
    {
        string s => s,
        null => "null",
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => Python.FloatRepr(d),
        _ => throw new JinjaRuntimeException($"keys must be str, int, float, bool or None, not {Python.TypeName(key)}"),
    };

    private static void NewLine(StringBuilder sb, Settings settings, int level)
    {
        if (settings.Indent is null)
        {
            return;
        }

        sb.Append('\n');
        for (int i = 0; i < level; i++)
        {
            sb.Append(settings.Indent);
        }
    }

    private static void WriteString(StringBuilder sb, string s, bool ensureAscii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7f))
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }

                    break;
            }
        }

        sb.Append('"');
    }
}
