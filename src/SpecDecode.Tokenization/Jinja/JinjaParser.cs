namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Recursive-descent parser following Jinja 3's grammar and precedence (lowest first): conditional
/// <c>a if b else c</c>, <c>or</c>, <c>and</c>, <c>not</c>, comparisons (<c>== != &lt; &lt;= &gt; &gt;= in</c>,
/// <c>not in</c>), <c>+ -</c>, <c>~</c>, <c>* / // %</c>, <c>**</c>, unary <c>- +</c>, then postfix <c>.name</c>,
/// <c>[key]</c>, <c>[a:b:c]</c>, calls, filters <c>|f</c> and tests <c>is t</c> (so <c>'a' + x | trim</c> filters only
/// <c>x</c>). Filter and test names are checked here, so an unsupported one fails when the template is parsed.
/// </summary>
internal sealed class JinjaParser
{
    private static readonly HashSet<string> UnsupportedTags = new(StringComparer.Ordinal)
    {
        "macro", "call", "filter", "include", "import", "from", "extends", "block", "with", "autoescape", "raw", "do",
        "endmacro", "endcall", "endfilter", "endblock", "endwith", "endautoescape", "endraw", "trans", "pluralize",
    };

    private readonly JinjaSource _source;
    private readonly List<JinjaToken> _tokens;
    private int _index;
    private int _loopDepth;

    private JinjaParser(JinjaSource source)
    {
        _source = source;
        _tokens = JinjaLexer.Tokenize(source);
    }

    /// <summary>Parses a whole template.</summary>
    /// <exception cref="ChatTemplateException">A syntax error or unsupported construct, with its line and column.</exception>
    public static IReadOnlyList<JinjaStatement> Parse(JinjaSource source) => new JinjaParser(source).Subparse(null);

    private JinjaToken Current => _tokens[_index];

    private JinjaToken Peek(int ahead = 1) => _tokens[Math.Min(_index + ahead, _tokens.Count - 1)];

    private JinjaToken Next() => _tokens[_index++];

    private ChatTemplateException Fail(JinjaToken at, string message) => _source.Error(at.Offset, message);

    private JinjaToken Expect(JinjaTokenKind kind, string? value = null)
    {
        JinjaToken t = Current;
        if (t.Kind != kind || (value is not null && t.Value != value))
        {
            string wanted = value is not null ? $"'{value}'" : kind switch
            {
                JinjaTokenKind.BlockEnd => "end of statement block ('%}')",
                JinjaTokenKind.VariableEnd => "end of print statement ('}}')",
                JinjaTokenKind.Name => "a name",
                _ => kind.ToString(),
            };
            throw Fail(t, $"expected {wanted}, got {t.Describe()}.");
        }

        return Next();
    }

    private bool SkipOperator(string op)
    {
        if (Current.IsOperator(op))
        {
            _index++;
            return true;
        }

        return false;
    }

    private bool SkipName(string name)
    {
        if (Current.IsName(name))
        {
            _index++;
            return true;
        }

        return false;
    }

    private List<JinjaStatement> Subparse(string[]? endTags)
    {
        var body = new List<JinjaStatement>();
        while (Current.Kind != JinjaTokenKind.Eof)
        {
            JinjaToken t = Current;
            switch (t.Kind)
            {
                case JinjaTokenKind.Data:
                    body.Add(new TextStatement(t.Offset, t.Value));
                    _index++;
                    break;
                case JinjaTokenKind.VariableBegin:
                    _index++;
                    body.Add(new PrintStatement(t.Offset, ParseTuple()));
                    Expect(JinjaTokenKind.VariableEnd);
                    break;
                case JinjaTokenKind.BlockBegin:
                    _index++;
                    if (endTags is not null && Current.Kind == JinjaTokenKind.Name && endTags.Contains(Current.Value))
                    {
                        return body;
                    }

                    body.Add(ParseStatement());
                    Expect(JinjaTokenKind.BlockEnd);
                    break;
                default:
                    throw Fail(t, $"unexpected {t.Describe()}.");
            }
        }

        if (endTags is not null)
        {
            throw Fail(Current, $"unexpected end of template: expected {string.Join(" or ", endTags.Select(e => "'" + e + "'"))}.");
        }

        return body;
    }

    /// <summary>After the statement's header: expects <c>%}</c>, parses the body up to one of
    /// <paramref name="endTags"/>, and leaves that tag's name as the current token.</summary>
    private List<JinjaStatement> ParseBody(params string[] endTags)
    {
        Expect(JinjaTokenKind.BlockEnd);
        return Subparse(endTags);
    }

    private JinjaStatement ParseStatement()
    {
        JinjaToken t = Current;
        if (t.Kind != JinjaTokenKind.Name)
        {
            throw Fail(t, $"expected a tag name after '{{%', got {t.Describe()}.");
        }

        switch (t.Value)
        {
            case "if":
                return ParseIf();
            case "for":
                return ParseFor();
            case "set":
                return ParseSet();
            case "break":
            case "continue":
                if (_loopDepth == 0)
                {
                    throw Fail(t, $"'{t.Value}' outside of a for loop.");
                }

                _index++;
                return new LoopControlStatement(t.Offset, t.Value == "break");
            case "generation":
                {
                    _index++;
                    List<JinjaStatement> body = ParseBody("endgeneration");
                    _index++;
                    return new GenerationStatement(t.Offset, body);
                }

            default:
                throw Fail(t, UnsupportedTags.Contains(t.Value)
                    ? $"the '{t.Value}' tag is not supported by this chat-template interpreter."
                    : $"unknown tag '{t.Value}'.");
        }
    }

    private IfStatement ParseIf()
    {
        int offset = Next().Offset;
        var branches = new List<(JinjaExpression, IReadOnlyList<JinjaStatement>)>();
        List<JinjaStatement>? otherwise = null;
        while (true)
        {
            JinjaExpression test = ParseTuple(withConditional: false);
            List<JinjaStatement> body = ParseBody("elif", "else", "endif");
            branches.Add((test, body));
            string tag = Next().Value;
            if (tag == "elif")
            {
                continue;
            }

            if (tag == "else")
            {
                otherwise = ParseBody("endif");
                _index++;
            }

            break;
        }

        return new IfStatement(offset, branches, otherwise);
    }

    private ForStatement ParseFor()
    {
        int offset = Next().Offset;
        JinjaTarget target = ParseAssignTarget(withNamespace: false, "in");
        Expect(JinjaTokenKind.Name, "in");
        JinjaExpression iterable = ParseTuple(withConditional: false, extraEnd: "recursive");
        JinjaExpression? filter = null;
        if (SkipName("if"))
        {
            filter = ParseExpression();
        }

        if (Current.IsName("recursive"))
        {
            throw Fail(Current, "recursive for loops are not supported by this chat-template interpreter.");
        }

        _loopDepth++;
        List<JinjaStatement> body = ParseBody("endfor", "else");
        _loopDepth--;
        List<JinjaStatement>? otherwise = null;
        if (Next().Value == "else")
        {
            otherwise = ParseBody("endfor");
            _index++;
        }

        return new ForStatement(offset, target, iterable, filter, body, otherwise);
    }

    private JinjaStatement ParseSet()
    {
        int offset = Next().Offset;
        JinjaTarget target = ParseAssignTarget(withNamespace: true);
        if (SkipOperator("="))
        {
            return new SetStatement(offset, target, ParseTuple());
        }

        var filters = new List<FilterExpression>();
        while (Current.IsOperator("|"))
        {
            filters.Add(ParseFilter(null));
        }

        List<JinjaStatement> body = ParseBody("endset");
        _index++;
        return new SetBlockStatement(offset, target, filters, body);
    }

    private JinjaTarget ParseAssignTarget(bool withNamespace, string? extraEnd = null)
    {
        JinjaToken first = Current;
        if (withNamespace && first.Kind == JinjaTokenKind.Name && Peek().IsOperator("."))
        {
            _index += 2;
            JinjaToken attribute = Expect(JinjaTokenKind.Name);
            return new NamespaceTarget(first.Offset, first.Value, attribute.Value);
        }

        var items = new List<JinjaTarget>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0)
            {
                Expect(JinjaTokenKind.Operator, ",");
            }

            if (IsTupleEnd(extraEnd))
            {
                break;
            }

            items.Add(ParseSimpleTarget());
            if (Current.IsOperator(","))
            {
                isTuple = true;
            }
            else
            {
                break;
            }
        }

        if (items.Count == 0)
        {
            throw Fail(first, $"expected a name to assign to, got {first.Describe()}.");
        }

        return isTuple ? new TupleTarget(first.Offset, items) : items[0];
    }

    private JinjaTarget ParseSimpleTarget()
    {
        JinjaToken t = Current;
        if (t.Kind == JinjaTokenKind.Name && t.Value is not ("true" or "false" or "none" or "True" or "False" or "None"))
        {
            _index++;
            return new NameTarget(t.Offset, t.Value);
        }

        if (t.IsOperator("("))
        {
            _index++;
            JinjaTarget inner = ParseAssignTarget(withNamespace: false);
            Expect(JinjaTokenKind.Operator, ")");
            return inner;
        }

        throw Fail(t, $"cannot assign to {t.Describe()}.");
    }

    private bool IsTupleEnd(string? extraEnd) =>
        Current.Kind is JinjaTokenKind.VariableEnd or JinjaTokenKind.BlockEnd or JinjaTokenKind.Eof
        || Current.IsOperator(")")
        || (extraEnd is not null && Current.IsName(extraEnd));

    /// <summary>Jinja's <c>parse_tuple</c>: one expression, or several separated by commas (a tuple).</summary>
    private JinjaExpression ParseTuple(bool withConditional = true, string? extraEnd = null, bool explicitParentheses = false)
    {
        int offset = Current.Offset;
        var items = new List<JinjaExpression>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0)
            {
                Expect(JinjaTokenKind.Operator, ",");
            }

            if (IsTupleEnd(extraEnd))
            {
                break;
            }

            items.Add(withConditional ? ParseExpression() : ParseOr());
            if (Current.IsOperator(","))
            {
                isTuple = true;
            }
            else
            {
                break;
            }
        }

        if (!isTuple)
        {
            if (items.Count > 0)
            {
                return items[0];
            }

            if (!explicitParentheses)
            {
                throw Fail(Current, $"expected an expression, got {Current.Describe()}.");
            }
        }

        return new TupleExpression(offset, items);
    }

    private JinjaExpression ParseExpression()
    {
        JinjaExpression expr = ParseOr();
        while (Current.IsName("if"))
        {
            int offset = Next().Offset;
            JinjaExpression test = ParseOr();
            JinjaExpression? otherwise = SkipName("else") ? ParseExpression() : null;
            expr = new ConditionalExpression(offset, test, expr, otherwise);
        }

        return expr;
    }

    private JinjaExpression ParseOr()
    {
        JinjaExpression left = ParseAnd();
        while (Current.IsName("or"))
        {
            int offset = Next().Offset;
            left = new BinaryExpression(offset, "or", left, ParseAnd());
        }

        return left;
    }

    private JinjaExpression ParseAnd()
    {
        JinjaExpression left = ParseNot();
        while (Current.IsName("and"))
        {
            int offset = Next().Offset;
            left = new BinaryExpression(offset, "and", left, ParseNot());
        }

        return left;
    }

    private JinjaExpression ParseNot()
    {
        if (Current.IsName("not"))
        {
            int offset = Next().Offset;
            return new UnaryExpression(offset, "not", ParseNot());
        }

        return ParseCompare();
    }

    private JinjaExpression ParseCompare()
    {
        int offset = Current.Offset;
        JinjaExpression first = ParseMath1();
        var rest = new List<(string, JinjaExpression)>();
        while (true)
        {
            JinjaToken t = Current;
            if (t.Kind == JinjaTokenKind.Operator && t.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                _index++;
                rest.Add((t.Value, ParseMath1()));
            }
            else if (t.IsName("in"))
            {
                _index++;
                rest.Add(("in", ParseMath1()));
            }
            else if (t.IsName("not") && Peek().IsName("in"))
            {
                _index += 2;
                rest.Add(("notin", ParseMath1()));
            }
            else
            {
                break;
            }
        }

        return rest.Count == 0 ? first : new CompareExpression(offset, first, rest);
    }

    private JinjaExpression ParseMath1()
    {
        JinjaExpression left = ParseConcat();
        while (Current.Kind == JinjaTokenKind.Operator && Current.Value is "+" or "-")
        {
            JinjaToken op = Next();
            left = new BinaryExpression(op.Offset, op.Value, left, ParseConcat());
        }

        return left;
    }

    private JinjaExpression ParseConcat()
    {
        int offset = Current.Offset;
        var items = new List<JinjaExpression> { ParseMath2() };
        while (SkipOperator("~"))
        {
            items.Add(ParseMath2());
        }

        return items.Count == 1 ? items[0] : new ConcatExpression(offset, items);
    }

    private JinjaExpression ParseMath2()
    {
        JinjaExpression left = ParsePow();
        while (Current.Kind == JinjaTokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            JinjaToken op = Next();
            left = new BinaryExpression(op.Offset, op.Value, left, ParsePow());
        }

        return left;
    }

    private JinjaExpression ParsePow()
    {
        JinjaExpression left = ParseUnary();
        while (Current.IsOperator("**"))
        {
            JinjaToken op = Next();
            left = new BinaryExpression(op.Offset, "**", left, ParseUnary());
        }

        return left;
    }

    private JinjaExpression ParseUnary(bool withFilter = true)
    {
        JinjaToken t = Current;
        JinjaExpression node;
        if (t.IsOperator("-") || t.IsOperator("+"))
        {
            _index++;
            node = new UnaryExpression(t.Offset, t.Value, ParseUnary(false));
        }
        else
        {
            node = ParsePrimary();
        }

        node = ParsePostfix(node);
        return withFilter ? ParseFilterExpression(node) : node;
    }

    private JinjaExpression ParsePrimary()
    {
        JinjaToken t = Current;
        switch (t.Kind)
        {
            case JinjaTokenKind.Name:
                _index++;
                return t.Value switch
                {
                    "true" or "True" => new ConstantExpression(t.Offset, true),
                    "false" or "False" => new ConstantExpression(t.Offset, false),
                    "none" or "None" => new ConstantExpression(t.Offset, null),
                    _ => new NameExpression(t.Offset, t.Value),
                };
            case JinjaTokenKind.String:
                {
                    _index++;
                    string value = (string)t.Literal!;
                    while (Current.Kind == JinjaTokenKind.String)
                    {
                        value += (string)Next().Literal!;
                    }

                    return new ConstantExpression(t.Offset, value);
                }

            case JinjaTokenKind.Integer:
            case JinjaTokenKind.Float:
                _index++;
                return new ConstantExpression(t.Offset, t.Literal);
            case JinjaTokenKind.Operator when t.Value == "(":
                {
                    _index++;
                    JinjaExpression inner = ParseTuple(explicitParentheses: true);
                    Expect(JinjaTokenKind.Operator, ")");
                    return inner;
                }

            case JinjaTokenKind.Operator when t.Value == "[":
                {
                    _index++;
                    var items = new List<JinjaExpression>();
                    while (!Current.IsOperator("]"))
                    {
                        if (items.Count > 0)
                        {
                            Expect(JinjaTokenKind.Operator, ",");
                            if (Current.IsOperator("]"))
                            {
                                break;
                            }
                        }

                        items.Add(ParseExpression());
                    }

                    Expect(JinjaTokenKind.Operator, "]");
                    return new ListExpression(t.Offset, items);
                }

            case JinjaTokenKind.Operator when t.Value == "{":
                {
                    _index++;
                    var items = new List<(JinjaExpression, JinjaExpression)>();
                    while (!Current.IsOperator("}"))
                    {
                        if (items.Count > 0)
                        {
                            Expect(JinjaTokenKind.Operator, ",");
                            if (Current.IsOperator("}"))
                            {
                                break;
                            }
                        }

                        JinjaExpression key = ParseExpression();
                        Expect(JinjaTokenKind.Operator, ":");
                        items.Add((key, ParseExpression()));
                    }

                    Expect(JinjaTokenKind.Operator, "}");
                    return new DictExpression(t.Offset, items);
                }

            default:
                throw Fail(t, $"unexpected {t.Describe()}.");
        }
    }

    private JinjaExpression ParsePostfix(JinjaExpression node)
    {
        while (true)
        {
            JinjaToken t = Current;
            if (t.IsOperator("."))
            {
                _index++;
                JinjaToken attribute = Next();
                node = attribute.Kind switch
                {
                    JinjaTokenKind.Name => new AttributeExpression(t.Offset, node, attribute.Value),
                    JinjaTokenKind.Integer => new ItemExpression(t.Offset, node, new ConstantExpression(attribute.Offset, attribute.Literal)),
                    _ => throw Fail(attribute, $"expected a name or number after '.', got {attribute.Describe()}."),
                };
            }
            else if (t.IsOperator("["))
            {
                _index++;
                var args = new List<JinjaExpression>();
                while (!Current.IsOperator("]"))
                {
                    if (args.Count > 0)
                    {
                        Expect(JinjaTokenKind.Operator, ",");
                    }

                    args.Add(ParseSubscribed(node));
                }

                Expect(JinjaTokenKind.Operator, "]");

                if (args.Count > 1 && args.Any(a => a is SliceExpression))
                {
                    throw Fail(t, "slices inside a tuple subscript are not supported.");
                }

                node = args.Count == 1 && args[0] is SliceExpression slice
                    ? slice
                    : new ItemExpression(t.Offset, node, args.Count == 1 ? args[0] : new TupleExpression(t.Offset, args));
            }
            else if (t.IsOperator("("))
            {
                node = ParseCall(node);
            }
            else
            {
                return node;
            }
        }
    }

    /// <summary>One subscript: an expression, or a slice (returned as a <see cref="SliceExpression"/> of
    /// <paramref name="target"/>).</summary>
    private JinjaExpression ParseSubscribed(JinjaExpression target)
    {
        int offset = Current.Offset;
        JinjaExpression? start = null;
        if (!Current.IsOperator(":"))
        {
            start = ParseExpression();
            if (!Current.IsOperator(":"))
            {
                return start;
            }
        }

        _index++;
        JinjaExpression? stop = null, step = null;
        if (!Current.IsOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(","))
        {
            stop = ParseExpression();
        }

        if (SkipOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(","))
        {
            step = ParseExpression();
        }

        return new SliceExpression(offset, target, start, stop, step);
    }

    private (List<JinjaExpression> Args, List<(string, JinjaExpression)> Keywords) ParseCallArguments()
    {
        JinjaToken open = Expect(JinjaTokenKind.Operator, "(");
        var args = new List<JinjaExpression>();
        var keywords = new List<(string, JinjaExpression)>();
        bool requireComma = false;
        while (!Current.IsOperator(")"))
        {
            if (requireComma)
            {
                Expect(JinjaTokenKind.Operator, ",");
                if (Current.IsOperator(")"))
                {
                    break;
                }
            }

            if (Current.IsOperator("*") || Current.IsOperator("**"))
            {
                throw Fail(Current, "*args and **kwargs in calls are not supported by this chat-template interpreter.");
            }

            if (Current.Kind == JinjaTokenKind.Name && Peek().IsOperator("="))
            {
                string key = Next().Value;
                _index++;
                keywords.Add((key, ParseExpression()));
            }
            else
            {
                if (keywords.Count > 0)
                {
                    throw Fail(open, "invalid syntax for function call expression: a positional argument follows a keyword argument.");
                }

                args.Add(ParseExpression());
            }

            requireComma = true;
        }

        Expect(JinjaTokenKind.Operator, ")");
        return (args, keywords);
    }

    private CallExpression ParseCall(JinjaExpression callee)
    {
        int offset = Current.Offset;
        (List<JinjaExpression> args, List<(string, JinjaExpression)> keywords) = ParseCallArguments();
        return new CallExpression(offset, callee, args, keywords);
    }

    private JinjaExpression ParseFilterExpression(JinjaExpression node)
    {
        while (true)
        {
            if (Current.IsOperator("|"))
            {
                node = ParseFilter(node);
            }
            else if (Current.IsName("is"))
            {
                node = ParseTest(node);
            }
            else if (Current.IsOperator("("))
            {
                node = ParseCall(node);
            }
            else
            {
                return node;
            }
        }
    }

    private FilterExpression ParseFilter(JinjaExpression? value)
    {
        Expect(JinjaTokenKind.Operator, "|");
        JinjaToken name = Expect(JinjaTokenKind.Name);
        if (Current.IsOperator("."))
        {
            throw Fail(Current, "dotted filter names are not supported.");
        }

        if (!JinjaFilters.IsKnown(name.Value))
        {
            throw Fail(name, $"filter '{name.Value}' is not supported by this chat-template interpreter.");
        }

        (List<JinjaExpression> args, List<(string, JinjaExpression)> keywords) =
            Current.IsOperator("(") ? ParseCallArguments() : ([], []);
        return new FilterExpression(name.Offset, value, name.Value, args, keywords);
    }

    private JinjaExpression ParseTest(JinjaExpression value)
    {
        int offset = Next().Offset;
        bool negated = SkipName("not");
        JinjaToken name = Expect(JinjaTokenKind.Name);
        if (Current.IsOperator("."))
        {
            throw Fail(Current, "dotted test names are not supported.");
        }

        if (!JinjaTestFunctions.IsKnown(name.Value))
        {
            throw Fail(name, $"test '{name.Value}' is not supported by this chat-template interpreter.");
        }

        List<JinjaExpression> args = [];
        List<(string, JinjaExpression)> keywords = [];
        JinjaToken t = Current;
        if (t.IsOperator("("))
        {
            (args, keywords) = ParseCallArguments();
        }
        else if ((t.Kind is JinjaTokenKind.Name or JinjaTokenKind.String or JinjaTokenKind.Integer or JinjaTokenKind.Float
                     || t.IsOperator("[") || t.IsOperator("{"))
                 && !t.IsName("else") && !t.IsName("or") && !t.IsName("and"))
        {
            if (t.IsName("is"))
            {
                throw Fail(t, "you cannot chain multiple tests with 'is'.");
            }

            args = [ParsePostfix(ParsePrimary())];
        }

        return new TestExpression(offset, value, name.Value, args, keywords, negated);
    }
}
