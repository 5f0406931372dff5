using System.Globalization;
using System.Text;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>The kinds of token the lexer produces.</summary>
internal enum JinjaTokenKind
{
    /// <summary>Template text outside tags, whitespace control already applied.</summary>
    Data,

    /// <summary><c>{{</c>.</summary>
    VariableBegin,

    /// <summary><c>}}</c>.</summary>
    VariableEnd,

    /// <summary><c>{%</c>.</summary>
    BlockBegin,

    /// <summary><c>%}</c>.</summary>
    BlockEnd,

    /// <summary>An identifier (keywords such as <c>for</c>, <c>and</c>, <c>is</c> included).</summary>
    Name,

    /// <summary>A string literal; <see cref="JinjaToken.Literal"/> holds the unescaped value.</summary>
    String,

    /// <summary>An integer literal; <see cref="JinjaToken.Literal"/> holds a <see cref="long"/>.</summary>
    Integer,

    /// <summary>A float literal; <see cref="JinjaToken.Literal"/> holds a <see cref="double"/>.</summary>
    Float,

    /// <summary>An operator or bracket (<c>+</c>, <c>//</c>, <c>==</c>, <c>(</c>, <c>|</c>, ...).</summary>
    Operator,

    /// <summary>The end of the template.</summary>
    Eof,
}

/// <summary>One token: its kind, its text (the operator or name; the text for data), where it starts, and the value of a
/// literal.</summary>
internal readonly record struct JinjaToken(JinjaTokenKind Kind, string Value, int Offset, object? Literal = null)
{
    /// <summary>Whether this is the name <paramref name="name"/>.</summary>
    public bool IsName(string name) => Kind == JinjaTokenKind.Name && Value == name;

    /// <summary>Whether this is the operator <paramref name="op"/>.</summary>
    public bool IsOperator(string op) => Kind == JinjaTokenKind.Operator && Value == op;

    /// <summary>The token as error messages name it.</summary>
    public string Describe() => Kind switch
    {
        JinjaTokenKind.Eof => "end of template",
        JinjaTokenKind.VariableEnd => "end of print statement",
        JinjaTokenKind.BlockEnd => "end of statement block",
        JinjaTokenKind.VariableBegin => "begin of print statement",
        JinjaTokenKind.BlockBegin => "begin of statement block",
        JinjaTokenKind.Data => "template data",
        _ => "'" + Value + "'",
    };
}

/// <summary>
/// The template text after Jinja's newline handling (<c>\r\n</c> and <c>\r</c> become <c>\n</c>; one trailing newline
/// is dropped, as <c>keep_trailing_newline=False</c> does), and the mapping from offsets to line and column.
/// </summary>
internal sealed class JinjaSource
{
    private readonly int[] _lineStarts;

    public JinjaSource(string template)
    {
        string text = template.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (text.EndsWith('\n'))
        {
            text = text[..^1];
        }

        Text = text;
        var starts = new List<int> { 0 };
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '\n')
            {
                starts.Add(i + 1);
            }
        }

        _lineStarts = [.. starts];
    }

    /// <summary>The normalized template text.</summary>
    public string Text { get; }

    /// <summary>The 1-based line and column of <paramref name="offset"/>.</summary>
    public (int Line, int Column) Locate(int offset)
    {
        int index = Array.BinarySearch(_lineStarts, Math.Clamp(offset, 0, Text.Length));
        int line = index >= 0 ? index : ~index - 1;
        return (line + 1, offset - _lineStarts[line] + 1);
    }

    /// <summary>An error at <paramref name="offset"/>: the message is prefixed with the line and column.</summary>
    public ChatTemplateException Error(int offset, string message, bool raisedByTemplate = false, Exception? inner = null)
    {
        (int line, int column) = Locate(offset);
        return raisedByTemplate
            ? new ChatTemplateException(message, line, column, true, inner)
            : new ChatTemplateException($"chat template line {line}, column {column}: {message}", line, column, false, inner);
    }
}

/// <summary>
/// Splits a template into data and tag tokens with Jinja's whitespace rules as transformers configures them
/// (<c>trim_blocks=True</c>, <c>lstrip_blocks=True</c>):
/// <list type="bullet">
/// <item><c>{%-</c>, <c>{{-</c>, <c>{#-</c> strip all whitespace before the tag; <c>-%}</c>, <c>-}}</c>, <c>-#}</c> all
/// whitespace after it.</item>
/// <item>trim_blocks: one newline right after <c>%}</c> or <c>#}</c> is removed (not after <c>}}</c>, not after
/// <c>+%}</c>).</item>
/// <item>lstrip_blocks: spaces and tabs between the start of a line and <c>{%</c> or <c>{#</c> are removed (not before
/// <c>{{</c>, not before <c>{%+</c>); "start of a line" also holds after a tag whose trailing newline trim_blocks
/// removed.</item>
/// <item>Inside a tag, <c>}}</c> and <c>%}</c> end it only where brackets are balanced (so dict literals work).</item>
/// </list>
/// </summary>
internal static class JinjaLexer
{
    private static readonly string[] TwoCharOperators = ["//", "**", "==", "!=", "<=", ">="];
    private const string OneCharOperators = "+-*/%~<>=()[]{},.:|;";

    public static List<JinjaToken> Tokenize(JinjaSource source)
    {
        string s = source.Text;
        var tokens = new List<JinjaToken>();
        int pos = 0;
        bool lineStarting = true;
        while (true)
        {
            int start = FindTagStart(s, pos);
            if (start < 0)
            {
                if (pos < s.Length)
                {
                    tokens.Add(new JinjaToken(JinjaTokenKind.Data, s[pos..], pos));
                }

                break;
            }

            char kind = s[start + 1];
            int signAt = start + 2;
            char sign = signAt < s.Length && s[signAt] is '-' or '+' ? s[signAt] : '\0';
            string text = s[pos..start];
            if (sign == '-')
            {
                text = PythonText.RStrip(text);
            }
            else if (sign != '+' && kind != '{')
            {
                int lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || lineStarting) && lineStart < text.Length && PythonText.IsAllSpace(text, lineStart))
                {
                    text = text[..lineStart];
                }
            }

            if (text.Length > 0)
            {
                tokens.Add(new JinjaToken(JinjaTokenKind.Data, text, pos));
            }

            pos = signAt + (sign == '\0' ? 0 : 1);
            if (kind == '#')
            {
                pos = SkipComment(source, start, pos, out lineStarting);
                continue;
            }

            tokens.Add(new JinjaToken(kind == '{' ? JinjaTokenKind.VariableBegin : JinjaTokenKind.BlockBegin, s[start..pos], start));
            pos = LexTag(source, tokens, start, pos, kind == '{', out lineStarting);
        }

        tokens.Add(new JinjaToken(JinjaTokenKind.Eof, "", s.Length));
        return tokens;
    }

    private static int FindTagStart(string s, int from)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
        {
            if (s[i + 1] is '{' or '%' or '#')
            {
                return i;
            }
        }

        return -1;
    }

    private static int SkipComment(JinjaSource source, int start, int pos, out bool lineStarting)
    {
        string s = source.Text;
        int end = s.IndexOf("#}", pos, StringComparison.Ordinal);
        if (end < 0)
        {
            throw source.Error(start, "missing end of comment tag '#}'.");
        }

        char sign = end - 1 >= pos ? s[end - 1] : '\0';
        int after = end + 2;
        if (sign == '-')
        {
            while (after < s.Length && PythonText.IsSpace(s[after]))
            {
                after++;
            }
        }
        else if (sign != '+' && after < s.Length && s[after] == '\n')
        {
            after++;
        }

        lineStarting = after > end + 2 && s[after - 1] == '\n';
        return after;
    }

    private static int LexTag(JinjaSource source, List<JinjaToken> tokens, int tagStart, int pos, bool variable, out bool lineStarting)
    {
        string s = source.Text;
        var brackets = new Stack<char>();
        while (true)
        {
            while (pos < s.Length && PythonText.IsSpace(s[pos]))
            {
                pos++;
            }

            if (pos >= s.Length)
            {
                throw source.Error(tagStart, variable
                    ? "unexpected end of template: the '{{' print statement is never closed with '}}'."
                    : "unexpected end of template: the '{%' block is never closed with '%}'.");
            }

            if (brackets.Count == 0)
            {
                int end = MatchTagEnd(s, pos, variable, out lineStarting);
                if (end >= 0)
                {
                    tokens.Add(new JinjaToken(variable ? JinjaTokenKind.VariableEnd : JinjaTokenKind.BlockEnd, s[pos..end], pos));
                    return end;
                }
            }

            char c = s[pos];
            if (char.IsAsciiLetter(c) || c == '_')
            {
                int begin = pos;
                while (pos < s.Length && (char.IsAsciiLetterOrDigit(s[pos]) || s[pos] == '_'))
                {
                    pos++;
                }

                tokens.Add(new JinjaToken(JinjaTokenKind.Name, s[begin..pos], begin));
            }
            else if (char.IsAsciiDigit(c))
            {
                pos = LexNumber(source, tokens, pos);
            }
            else if (c is '\'' or '"')
            {
                pos = LexString(source, tokens, pos);
            }
            else
            {
                string? op = null;
                foreach (string two in TwoCharOperators)
                {
                    if (string.CompareOrdinal(s, pos, two, 0, 2) == 0)
                    {
                        op = two;
                        break;
                    }
                }

                if (op is null && OneCharOperators.Contains(c))
                {
                    op = c.ToString();
                }

                if (op is null)
                {
                    throw source.Error(pos, $"unexpected char '{c}' in a tag.");
                }

                if (op is "(" or "[" or "{")
                {
                    brackets.Push(op switch { "(" => ')', "[" => ']', _ => '}' });
                }
                else if (op is ")" or "]" or "}")
                {
                    if (brackets.Count == 0)
                    {
                        throw source.Error(pos, $"unexpected '{op}'.");
                    }

                    char expected = brackets.Pop();
                    if (expected != op[0])
                    {
                        throw source.Error(pos, $"unexpected '{op}', expected '{expected}'.");
                    }
                }

                tokens.Add(new JinjaToken(JinjaTokenKind.Operator, op, pos));
                pos += op.Length;
            }
        }
    }

    /// <summary>The offset after the tag end at <paramref name="pos"/> (with the whitespace it consumes), or -1.</summary>
    private static int MatchTagEnd(string s, int pos, bool variable, out bool lineStarting)
    {
        lineStarting = false;
        string close = variable ? "}}" : "%}";
        bool StartsWithAt(string what, int at) => string.CompareOrdinal(s, at, what, 0, what.Length) == 0;
        if (s[pos] == '-' && StartsWithAt(close, pos + 1))
        {
            int end = pos + 3;
            while (end < s.Length && PythonText.IsSpace(s[end]))
            {
                end++;
            }

            lineStarting = end > pos + 3 && s[end - 1] == '\n';
            return end;
        }

        if (!variable && s[pos] == '+' && StartsWithAt(close, pos + 1))
        {
            return pos + 3;
        }

        if (StartsWithAt(close, pos))
        {
            int end = pos + 2;
            if (!variable && end < s.Length && s[end] == '\n')
            {
                end++;
                lineStarting = true;
            }

            return end;
        }

        return -1;
    }

    private static int LexNumber(JinjaSource source, List<JinjaToken> tokens, int pos)
    {
        string s = source.Text;
        int begin = pos;
        int Digits(int at)
        {
            while (at < s.Length && (char.IsAsciiDigit(s[at]) || (s[at] == '_' && at + 1 < s.Length && char.IsAsciiDigit(s[at + 1]))))
            {
                at++;
            }

            return at;
        }

        if (s[pos] == '0' && pos + 1 < s.Length && s[pos + 1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            int radix = char.ToLowerInvariant(s[pos + 1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            int at = pos + 2;
            while (at < s.Length && (Uri.IsHexDigit(s[at]) || s[at] == '_'))
            {
                at++;
            }

            string digits = s[(pos + 2)..at].Replace("_", "", StringComparison.Ordinal);
            try
            {
                long value = Convert.ToInt64(digits, radix);
                tokens.Add(new JinjaToken(JinjaTokenKind.Integer, s[begin..at], begin, value));
                return at;
            }
            catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
            {
                throw source.Error(begin, $"invalid integer literal '{s[begin..at]}'.");
            }
        }

        pos = Digits(pos);
        bool isFloat = false;
        bool afterDot = begin > 0 && s[begin - 1] == '.';
        if (!afterDot && pos + 1 < s.Length && s[pos] == '.' && char.IsAsciiDigit(s[pos + 1]))
        {
            pos = Digits(pos + 1);
            isFloat = true;
        }

        if (!afterDot && pos < s.Length && s[pos] is 'e' or 'E')
        {
            int at = pos + 1;
            if (at < s.Length && s[at] is '+' or '-')
            {
                at++;
            }

            if (at < s.Length && char.IsAsciiDigit(s[at]))
            {
                pos = Digits(at);
                isFloat = true;
            }
        }

        string text = s[begin..pos].Replace("_", "", StringComparison.Ordinal);
        if (isFloat)
        {
            tokens.Add(new JinjaToken(JinjaTokenKind.Float, s[begin..pos], begin, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture)));
        }
        else if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long value))
        {
            tokens.Add(new JinjaToken(JinjaTokenKind.Integer, s[begin..pos], begin, value));
        }
        else
        {
            throw source.Error(begin, $"integer literal '{text}' does not fit in 64 bits.");
        }

        return pos;
    }

    private static int LexString(JinjaSource source, List<JinjaToken> tokens, int pos)
    {
        string s = source.Text;
        char quote = s[pos];
        int begin = pos;
        int at = pos + 1;
        while (at < s.Length && s[at] != quote)
        {
            at += s[at] == '\\' ? 2 : 1;
        }

        if (at >= s.Length)
        {
            throw source.Error(begin, "unterminated string literal.");
        }

        string value = Unescape(source, s, begin + 1, at);
        tokens.Add(new JinjaToken(JinjaTokenKind.String, s[begin..(at + 1)], begin, value));
        return at + 1;
    }

    /// <summary>Python's <c>unicode_escape</c> decoding, which Jinja applies to string literals: <c>\n</c>, <c>\t</c>,
    /// <c>\\</c>, <c>\'</c>, <c>\"</c>, <c>\xhh</c>, <c>\uhhhh</c>, <c>\Uhhhhhhhh</c>, octal escapes, a backslash before
    /// a newline removes both; other escapes stay as written.</summary>
    private static string Unescape(JinjaSource source, string s, int from, int to)
    {
        int slash = s.IndexOf('\\', from, to - from);
        if (slash < 0)
        {
            return s[from..to];
        }

        var sb = new StringBuilder(to - from);
        for (int i = from; i < to; i++)
        {
            char c = s[i];
            if (c != '\\' || i + 1 >= to)
            {
                sb.Append(c);
                continue;
            }

            char e = s[++i];
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case 'x':
                case 'u':
                case 'U':
                    {
                        int width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                        if (to - i - 1 < width || !int.TryParse(s.AsSpan(i + 1, width), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
                        {
                            throw source.Error(i - 1, $"truncated \\{e} escape in a string literal.");
                        }

                        if (code is < 0 or > 0x10FFFF)
                        {
                            throw source.Error(i - 1, $"illegal Unicode character in \\{e} escape.");
                        }

                        if (code is >= 0xD800 and <= 0xDFFF)
                        {
                            sb.Append((char)code);
                        }
                        else
                        {
                            sb.Append(char.ConvertFromUtf32(code));
                        }

                        i += width;
                        break;
                    }

                case >= '0' and <= '7':
                    {
                        int code = e - '0';
                        int n = 1;
                        while (n < 3 && i + 1 < to && s[i + 1] is >= '0' and <= '7')
                        {
                            code = code * 8 + (s[++i] - '0');
                            n++;
                        }

                        sb.Append((char)code);
                        break;
                    }

                case 'N':
                    throw source.Error(i - 1, "\\N{...} escapes are not supported in string literals.");
                default:
                    sb.Append('\\').Append(e);
                    break;
            }
        }

        return sb.ToString();
    }
}
