using System.Globalization;
using System.Text;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Python's semantics for the values templates see (Jinja compiles templates to Python): truthiness, <c>str()</c> and
/// <c>repr()</c>, <c>==</c> across int/float/bool, ordering, arithmetic (<c>//</c> and <c>%</c> floor, <c>/</c> always
/// float, <c>+</c> joins strings, lists and tuples), <c>in</c>, <c>len()</c> and iteration.
/// </summary>
internal static class Python
{
    /// <summary>The Python type name of a value, as error messages name it.</summary>
    public static string TypeName(object? value) => value switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        object?[] => "tuple",
        JinjaDict => "dict",
        JinjaNamespace => "Namespace",
        LoopContext => "LoopContext",
        Undefined => "Undefined",
        JinjaCallable or BoundMethod => "function",
        JinjaIterator iterator => iterator.TypeName,
        PythonSequence sequence => sequence.TypeName,
        _ => value.GetType().Name,
    };

    /// <summary>Python's truth value.</summary>
    public static bool Truthy(object? value) => value switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> list => list.Count > 0,
        object?[] tuple => tuple.Length > 0,
        JinjaDict dict => dict.Count > 0,
        PythonSequence sequence => sequence.Items.Count > 0,
        Undefined => false,
        _ => true,
    };

    /// <summary>Python's <c>str()</c>, except that an undefined value gives the empty string (Jinja prints it so).</summary>
    public static string Str(object? value) => value switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(value),
    };

    /// <summary>Python's <c>repr()</c>.</summary>
    public static string Repr(object? value)
    {
        switch (value)
        {
            case null: return "None";
            case bool b: return b ? "True" : "False";
            case long l: return l.ToString(CultureInfo.InvariantCulture);
            case double d: return FloatRepr(d);
            case string s: return StringRepr(s);
            case Undefined: return "";
            case List<object?> list: return "[" + string.Join(", ", list.Select(Repr)) + "]";
            case object?[] tuple: return tuple.Length == 1 ? "(" + Repr(tuple[0]) + ",)" : "(" + string.Join(", ", tuple.Select(Repr)) + ")";
            case JinjaDict dict: return "{" + string.Join(", ", dict.Select(e => Repr(e.Key) + ": " + Repr(e.Value))) + "}";
            case JinjaNamespace ns: return "<Namespace " + Repr(ns.Attributes) + ">";
            case JinjaCallable or BoundMethod:
                throw new JinjaRuntimeException($"cannot print a function ({(value is BoundMethod m ? TypeName(m.Target) + "." + m.Name : ((JinjaCallable)value).Name)}): Python prints its object address; call it");
            case PythonSequence sequence: return sequence.Repr;
            case JinjaIterator iterator:
                throw new JinjaRuntimeException($"cannot print a {iterator.TypeName} (the result of select, reject, map, items or reverse): Python prints its object address; add '| list'");
            default: return "<" + TypeName(value) + " object>";
        }
    }

    /// <summary>Python's <c>repr(float)</c>: the shortest digits that round-trip, in fixed notation when the decimal
    /// exponent is in (-4, 16], otherwise as <c>1e+16</c>; integral values keep <c>.0</c>.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
        {
            return "nan";
        }

        if (double.IsInfinity(d))
        {
            return d > 0 ? "inf" : "-inf";
        }

        if (d == 0)
        {
            return double.IsNegative(d) ? "-0.0" : "0.0";
        }

        string r = d.ToString("R", CultureInfo.InvariantCulture);
        bool negative = r.StartsWith('-');
        if (negative)
        {
            r = r[1..];
        }

        int exponent = 0;
        int e = r.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(r.AsSpan(e + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            r = r[..e];
        }

        int dot = r.IndexOf('.');
        string integral = dot < 0 ? r : r[..dot];
        string digits = dot < 0 ? r : integral + r[(dot + 1)..];
        int decimalPoint = integral.Length + exponent;
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0')
        {
            lead++;
        }

        digits = digits[lead..];
        decimalPoint -= lead;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0)
        {
            digits = "0";
        }

        string body;
        if (decimalPoint > -4 && decimalPoint <= 16)
        {
            body = decimalPoint <= 0 ? "0." + new string('0', -decimalPoint) + digits
                : decimalPoint >= digits.Length ? digits + new string('0', decimalPoint - digits.Length) + ".0"
                : digits[..decimalPoint] + "." + digits[decimalPoint..];
        }
        else
        {
            int exp = decimalPoint - 1;
            body = digits[..1] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (exp < 0 ? "-" : "+")
                + Math.Abs(exp).ToString("00", CultureInfo.InvariantCulture);
        }

        return negative ? "-" + body : body;
    }

    /// <summary>Python's <c>repr(str)</c>: single quotes unless the text has a single quote and no double quote.</summary>
    public static string StringRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder(s.Length + 2).Append(quote);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == quote || c == '\\')
            {
                sb.Append('\\').Append(c);
            }
            else if (c == '\n')
            {
                sb.Append("\\n");
            }
            else if (c == '\r')
            {
                sb.Append("\\r");
            }
            else if (c == '\t')
            {
                sb.Append("\\t");
            }
            else if (c < 0x20 || c == 0x7f)
            {
                sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            }
            else if (c >= 0x80 && !IsPrintable(s, i))
            {
                int code = char.IsSurrogatePair(s, i) ? char.ConvertToUtf32(s, i) : c;
                sb.Append(code <= 0xff ? "\\x" + code.ToString("x2", CultureInfo.InvariantCulture)
                    : code <= 0xffff ? "\\u" + code.ToString("x4", CultureInfo.InvariantCulture)
                    : "\\U" + code.ToString("x8", CultureInfo.InvariantCulture));
                if (code > 0xffff)
                {
                    i++;
                }
            }
            else if (char.IsSurrogatePair(s, i))
            {
                sb.Append(c).Append(s[++i]);
            }
            else
            {
                sb.Append(c);
            }
        }

        return sb.Append(quote).ToString();
    }

    private static bool IsPrintable(string s, int i)
    {
        UnicodeCategory category = char.IsSurrogatePair(s, i)
            ? CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(s, i))
            : CharUnicodeInfo.GetUnicodeCategory(s[i]);
        return category is not (UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate
            or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator
            or UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator);
    }

    /// <summary>Python's <c>==</c>: numbers (bool included) by value, sequences and dicts element-wise, other types
    /// never equal; two undefined values are equal.</summary>
    public static bool Equal(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? ToDouble(a) == ToDouble(b) : ToLong(a) == ToLong(b);
        }

        switch (a)
        {
            case null: return b is null;
            case string s: return b is string t && s == t;
            case Undefined: return b is Undefined;
            case List<object?> x when b is List<object?> y: return SequenceEqual(x, y);
            case object?[] x when b is object?[] y: return SequenceEqual(x, y);
            case JinjaDict x when b is JinjaDict y:
                return x.Count == y.Count && x.All(e => y.TryGetValue(e.Key, out object? v) && Equal(e.Value, v));
            case PythonSequence x when b is PythonSequence y && x.TypeName == y.TypeName:
                return x.TypeName is "range" or "dict_items" or "dict_keys"
                    ? (x.TypeName == "range" ? SequenceEqual(x.Items, y.Items) : x.Items.Count == y.Items.Count && x.Items.All(i => y.Items.Any(j => Equal(i, j))))
                    : ReferenceEquals(x, y);
            default: return ReferenceEquals(a, b) || (a is BoundMethod m && m.Equals(b));
        }
    }

    private static bool SequenceEqual(IReadOnlyList<object?> x, IReadOnlyList<object?> y)
    {
        if (x.Count != y.Count)
        {
            return false;
        }

        for (int i = 0; i < x.Count; i++)
        {
            if (!Equal(x[i], y[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Python's ordering: numbers by value, strings by code unit, sequences of one type lexicographically.</summary>
    /// <exception cref="JinjaRuntimeException">The values cannot be ordered (as Python's <c>TypeError</c>).</exception>
    public static int Compare(object? a, object? b, string op)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? ToDouble(a).CompareTo(ToDouble(b)) : ToLong(a).CompareTo(ToLong(b));
        }

        if (a is string s && b is string t)
        {
            return Math.Sign(string.CompareOrdinal(s, t));
        }

        if ((a is List<object?> && b is List<object?>) || (a is object?[] && b is object?[]))
        {
            var x = (IReadOnlyList<object?>)a;
            var y = (IReadOnlyList<object?>)b;
            for (int i = 0; i < Math.Min(x.Count, y.Count); i++)
            {
                if (!Equal(x[i], y[i]))
                {
                    return Compare(x[i], y[i], op);
                }
            }

            return x.Count.CompareTo(y.Count);
        }

        throw new JinjaRuntimeException($"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    /// <summary>Python's <c>in</c>: substring, list/tuple membership, dict key.</summary>
    public static bool Contains(object? container, object? item)
    {
        switch (container)
        {
            case string s:
                return item is string t ? s.Contains(t, StringComparison.Ordinal)
                    : throw new JinjaRuntimeException($"'in <string>' requires string as left operand, not {TypeName(item)}");
            case List<object?> or object?[]:
                return ((IReadOnlyList<object?>)container).Any(x => Equal(x, item));
            case JinjaDict dict:
                return item is List<object?> or JinjaDict or JinjaNamespace or PythonSequence
                    ? throw new JinjaRuntimeException($"unhashable type: '{TypeName(item)}'")
                    : dict.ContainsKey(item);
            case PythonSequence sequence:
                return sequence.Items.Any(x => Equal(x, item));
            case JinjaIterator iterator:
                while (iterator.TryNext(out object? next))
                {
                    if (Equal(next, item))
                    {
                        return true;
                    }
                }

                return false;
            case Undefined:
                return false;
            default:
                throw new JinjaRuntimeException($"argument of type '{TypeName(container)}' is not iterable");
        }
    }

    /// <summary>Python's <c>len()</c> (0 for undefined).</summary>
    public static long Length(object? value) => value switch
    {
        string s => PythonText.CodePoints(s)?.Length ?? s.Length,
        List<object?> list => list.Count,
        object?[] tuple => tuple.Length,
        JinjaDict dict => dict.Count,
        PythonSequence sequence => sequence.Items.Count,
        Undefined => 0,
        _ => throw new JinjaRuntimeException($"object of type '{TypeName(value)}' has no len()"),
    };

    /// <summary>Python's iteration: items of a list or tuple, keys of a dict, characters of a string; nothing for an
    /// undefined value.</summary>
    public static List<object?> Iterate(object? value) => value switch
    {
        List<object?> list => [.. list],
        object?[] tuple => [.. tuple],
        JinjaDict dict => [.. dict.Keys],
        string s => [.. (PythonText.CodePoints(s) ?? s.Select(c => c.ToString()))],
        PythonSequence sequence => [.. sequence.Items],
        JinjaIterator iterator => iterator.Drain(),
        Undefined => [],
        _ => throw new JinjaRuntimeException($"'{TypeName(value)}' object is not iterable"),
    };

    /// <summary>Whether the value is a Python number (bool included, as in Python).</summary>
    public static bool IsNumber(object? value) => value is long or double or bool;

    /// <summary>A bool or int as a long.</summary>
    public static long ToLong(object? value) => value switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new JinjaRuntimeException($"expected an integer, got '{TypeName(value)}'"),
    };

    /// <summary>A number as a double.</summary>
    public static double ToDouble(object? value) => value is double d ? d : ToLong(value);

    /// <summary>Raises the undefined error of the first undefined operand.</summary>
    public static void FailIfUndefined(object? a, object? b)
    {
        if (a is Undefined ua)
        {
            throw ua.Fail();
        }

        if (b is Undefined ub)
        {
            throw ub.Fail();
        }
    }

    /// <summary>A binary arithmetic operator: <c>+ - * / // % **</c>.</summary>
    public static object? Arithmetic(string op, object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
        {
            return a is double || b is double ? FloatArithmetic(op, ToDouble(a), ToDouble(b)) : IntArithmetic(op, ToLong(a), ToLong(b));
        }

        switch (op)
        {
            case "+" when a is string s && b is string t:
                return s + t;
            case "+" when a is List<object?> x && b is List<object?> y:
                return new List<object?>([.. x, .. y]);
            case "+" when a is object?[] x && b is object?[] y:
                return (object?[])[.. x, .. y];
            case "*" when (a is string or List<object?> or object?[] && b is long or bool) || (b is string or List<object?> or object?[] && a is long or bool):
                {
                    object? sequence = a is long or bool ? b : a;
                    long times = Math.Max(0, ToLong(a is long or bool ? a : b));
                    if (times * Length(sequence) > 10_000_000)
                    {
                        throw new JinjaRuntimeException("the repeated sequence would be too long");
                    }

                    return sequence switch
                    {
                        string s => string.Concat(Enumerable.Repeat(s, (int)times)),
                        List<object?> list => Enumerable.Repeat(list, (int)times).SelectMany(x => x).ToList(),
                        _ => Enumerable.Repeat((object?[])sequence!, (int)times).SelectMany(x => x).ToArray(),
                    };
                }

            case "%" when a is string:
                throw new JinjaRuntimeException("printf-style string formatting ('%' on a string) is not supported by this chat-template interpreter");
            default:
                throw new JinjaRuntimeException($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");
        }
    }

    private static object IntArithmetic(string op, long a, long b)
    {
        try
        {
            checked
            {
                switch (op)
                {
                    case "+": return a + b;
                    case "-": return a - b;
                    case "*": return a * b;
                    case "/": return b == 0 ? throw new JinjaRuntimeException("division by zero") : (double)a / b;
                    case "//":
                        {
                            if (b == 0)
                            {
                                throw new JinjaRuntimeException("integer division or modulo by zero");
                            }

                            long q = a / b;
                            return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
                        }

                    case "%":
                        {
                            if (b == 0)
                            {
                                throw new JinjaRuntimeException("integer division or modulo by zero");
                            }

                            long r = a % b;
                            return r != 0 && (r < 0) != (b < 0) ? r + b : r;
                        }

                    case "**":
                        {
                            if (b < 0)
                            {
                                return Math.Pow(a, b);
                            }

                            long result = 1;
                            for (long i = 0; i < b; i++)
                            {
                                result *= a;
                            }

                            return result;
                        }

                    default: throw new JinjaRuntimeException($"unknown operator '{op}'");
                }
            }
        }
        catch (OverflowException)
        {
            throw new JinjaRuntimeException($"integer overflow in {a} {op} {b}");
        }
    }

    /// <summary>CPython's <c>float_divmod</c>: the remainder takes the divisor's sign, the quotient is floored and
    /// corrected for rounding, zeros keep Python's signs.</summary>
    private static (double Quotient, double Remainder) FloatDivMod(double a, double b)
    {
        double mod = a % b;
        double div = (a - mod) / b;
        if (mod != 0)
        {
            if ((b < 0) != (mod < 0))
            {
                mod += b;
                div -= 1.0;
            }
        }
        else
        {
            mod = Math.CopySign(0.0, b);
        }

        double floor;
        if (div != 0)
        {
            floor = Math.Floor(div);
            if (div - floor > 0.5)
            {
                floor += 1.0;
            }
        }
        else
        {
            floor = Math.CopySign(0.0, a / b);
        }

        return (floor, mod);
    }

    private static double Power(double a, double b)
    {
        if (a == 0 && b < 0)
        {
            throw new JinjaRuntimeException("0.0 cannot be raised to a negative power");
        }

        double result = Math.Pow(a, b);
        if (double.IsNaN(result) && !double.IsNaN(a) && !double.IsNaN(b))
        {
            throw new JinjaRuntimeException("a negative number cannot be raised to a fractional power in this interpreter (Python gives a complex number)");
        }

        return double.IsInfinity(result) && double.IsFinite(a) && double.IsFinite(b)
            ? throw new JinjaRuntimeException("(34, 'Numerical result out of range')")
            : result;
    }

    private static object FloatArithmetic(string op, double a, double b) => op switch
    {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => b == 0 ? throw new JinjaRuntimeException("float division by zero") : a / b,
        "//" => b == 0 ? throw new JinjaRuntimeException("float floor division by zero") : FloatDivMod(a, b).Quotient,
        "%" => b == 0 ? throw new JinjaRuntimeException("float modulo") : FloatDivMod(a, b).Remainder,
        "**" => Power(a, b),
        _ => throw new JinjaRuntimeException($"unknown operator '{op}'"),
    };
}
