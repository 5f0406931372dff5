using System.Text;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Walks the syntax tree and writes the output. Scoping follows Jinja: the template's top level is one scope; each
/// iteration of a for loop gets a fresh scope over the enclosing one, so <c>set</c> inside a loop does not outlive the
/// iteration (namespace attributes do); <c>if</c> opens no scope.
/// </summary>
internal sealed class JinjaInterpreter
{
    private readonly JinjaSource _source;
    private readonly IReadOnlyDictionary<string, object?> _globals;
    private readonly IReadOnlyDictionary<object, string[]> _undefinedAtEntry;
    private readonly StringBuilder _output = new();
    private Scope _scope;
    private int _at;

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private JinjaInterpreter(JinjaSource source, IReadOnlyList<JinjaStatement> body, IReadOnlyDictionary<object, string[]> undefinedAtEntry,
        IReadOnlyDictionary<string, object?> globals, IReadOnlyDictionary<string, object?> variables)
    {
        _source = source;
        _globals = globals;
        _undefinedAtEntry = undefinedAtEntry;
        var context = new Scope(null);
        foreach ((string name, object? value) in variables)
        {
            context.Variables[name] = value;
        }

        _scope = NewScope(context, body);
    }

    /// <summary>Renders <paramref name="body"/> with <paramref name="variables"/> over <paramref name="globals"/>;
    /// <paramref name="undefinedAtEntry"/> is <see cref="JinjaScopeAnalysis.Analyze"/> of the body.</summary>
    /// <exception cref="ChatTemplateException">A runtime error, with the line and column of the expression that raised
    /// it, or the template's <c>raise_exception</c>.</exception>
    public static string Render(JinjaSource source, IReadOnlyList<JinjaStatement> body, IReadOnlyDictionary<object, string[]> undefinedAtEntry,
        IReadOnlyDictionary<string, object?> globals, IReadOnlyDictionary<string, object?> variables)
    {
        var interpreter = new JinjaInterpreter(source, body, undefinedAtEntry, globals, variables);
        try
        {
            interpreter.Execute(body);
        }
        catch (JinjaRuntimeException e)
        {
            throw source.Error(interpreter._at, e.Message, inner: e);
        }
        catch (TemplateRaisedException e)
        {
            throw source.Error(interpreter._at, e.Message, raisedByTemplate: true);
        }

        return interpreter._output.ToString();
    }

    /// <summary>Thrown by a template's <c>raise_exception(message)</c>.</summary>
    internal sealed class TemplateRaisedException(string message) : Exception(message);

    private sealed class Scope(Scope? parent)
    {
        public Dictionary<string, object?> Variables { get; } = new(StringComparer.Ordinal);

        public Scope? Parent { get; } = parent;

        public bool TryGet(string name, out object? value)
        {
            for (Scope? s = this; s is not null; s = s.Parent)
            {
                if (s.Variables.TryGetValue(name, out value))
                {
                    return true;
                }
            }

            value = null;
            return false;
        }
    }

    /// <summary>A scope for <paramref name="body"/> over <paramref name="parent"/>, with the names Jinja starts
    /// undefined there.</summary>
    private Scope NewScope(Scope parent, IReadOnlyList<JinjaStatement> body)
    {
        var scope = new Scope(parent);
        if (_undefinedAtEntry.TryGetValue(body, out string[]? names))
        {
            foreach (string name in names)
            {
                scope.Variables[name] = Undefined.Name(name);
            }
        }

        return scope;
    }

    /// <summary>Executes <paramref name="body"/> in its own scope (a block set or generation body).</summary>
    private Flow ExecuteInChildScope(IReadOnlyList<JinjaStatement> body)
    {
        Scope outer = _scope;
        _scope = NewScope(outer, body);
        try
        {
            return Execute(body);
        }
        finally
        {
            _scope = outer;
        }
    }

    private Flow Execute(IReadOnlyList<JinjaStatement> body)
    {
        foreach (JinjaStatement statement in body)
        {
            Flow flow = Execute(statement);
            if (flow != Flow.Normal)
            {
                return flow;
            }
        }

        return Flow.Normal;
    }

    private Flow Execute(JinjaStatement statement)
    {
        switch (statement)
        {
            case TextStatement text:
                _output.Append(text.Text);
                return Flow.Normal;
            case PrintStatement print:
                _output.Append(Python.Str(Evaluate(print.Value)));
                return Flow.Normal;
            case IfStatement conditional:
                foreach ((JinjaExpression test, IReadOnlyList<JinjaStatement> branch) in conditional.Branches)
                {
                    if (Python.Truthy(Evaluate(test)))
                    {
                        return Execute(branch);
                    }
                }

                return conditional.Else is null ? Flow.Normal : Execute(conditional.Else);
            case ForStatement loop:
                ExecuteFor(loop);
                return Flow.Normal;
            case SetStatement set:
                Assign(set.Target, Evaluate(set.Value));
                return Flow.Normal;
            case SetBlockStatement setBlock:
                {
                    int mark = _output.Length;
                    ExecuteInChildScope(setBlock.Body);
                    object? value = _output.ToString(mark, _output.Length - mark);
                    _output.Length = mark;
                    foreach (FilterExpression filter in setBlock.Filters)
                    {
                        value = ApplyFilter(filter, value);
                    }

                    Assign(setBlock.Target, value);
                    return Flow.Normal;
                }

            case LoopControlStatement control:
                return control.IsBreak ? Flow.Break : Flow.Continue;
            case GenerationStatement generation:
                return ExecuteInChildScope(generation.Body);
            default:
                throw new JinjaRuntimeException($"unknown statement {statement.GetType().Name}");
        }
    }

    private void ExecuteFor(ForStatement loop)
    {
        object? iterable = Evaluate(loop.Iterable);
        _at = loop.Iterable.Offset;
        List<object?> items = Python.Iterate(iterable);
        Scope outer = _scope;
        try
        {
            if (loop.Filter is not null)
            {
                var kept = new List<object?>();
                foreach (object? item in items)
                {
                    _scope = new Scope(outer);
                    Assign(loop.Target, item);
                    if (Python.Truthy(Evaluate(loop.Filter)))
                    {
                        kept.Add(item);
                    }
                }

                items = kept;
            }

            if (items.Count == 0)
            {
                if (loop.Else is not null)
                {
                    _scope = NewScope(outer, loop.Else);
                    Execute(loop.Else);
                }

                return;
            }

            for (int i = 0; i < items.Count; i++)
            {
                _scope = NewScope(outer, loop.Body);
                _scope.Variables["loop"] = new LoopContext(items, i);
                Assign(loop.Target, items[i]);
                if (Execute(loop.Body) == Flow.Break)
                {
                    break;
                }
            }
        }
        finally
        {
            _scope = outer;
        }
    }

    private void Assign(JinjaTarget target, object? value)
    {
        switch (target)
        {
            case NameTarget name:
                _scope.Variables[name.Name] = value;
                break;
            case TupleTarget tuple:
                {
                    _at = tuple.Offset;
                    List<object?> values = Python.Iterate(value);
                    if (values.Count != tuple.Items.Count)
                    {
                        throw new JinjaRuntimeException(values.Count > tuple.Items.Count
                            ? $"too many values to unpack (expected {tuple.Items.Count})"
                            : $"not enough values to unpack (expected {tuple.Items.Count}, got {values.Count})");
                    }

                    for (int i = 0; i < values.Count; i++)
                    {
                        Assign(tuple.Items[i], values[i]);
                    }

                    break;
                }

            case NamespaceTarget ns:
                _at = ns.Offset;
                if (Lookup(ns.Name) is not JinjaNamespace space)
                {
                    throw new JinjaRuntimeException($"cannot assign attribute '{ns.Attribute}' on '{ns.Name}': it is not a namespace() object");
                }

                space.Attributes.Set(ns.Attribute, value);
                break;
        }
    }

    private object? Lookup(string name)
    {
        if (_scope.TryGet(name, out object? value) || _globals.TryGetValue(name, out value))
        {
            return value;
        }

        return Undefined.Name(name);
    }

    private object? Evaluate(JinjaExpression expression)
    {
        switch (expression)
        {
            case ConstantExpression constant:
                return constant.Value;
            case NameExpression name:
                return Lookup(name.Name);
            case ListExpression list:
                return list.Items.Select(Evaluate).ToList();
            case TupleExpression tuple:
                return tuple.Items.Select(Evaluate).ToArray();
            case DictExpression dict:
                {
                    var result = new JinjaDict();
                    foreach ((JinjaExpression key, JinjaExpression value) in dict.Items)
                    {
                        object? k = Evaluate(key);
                        object? v = Evaluate(value);
                        _at = key.Offset;
                        result.Set(k, v);
                    }

                    return result;
                }

            case AttributeExpression attribute:
                {
                    object? target = Evaluate(attribute.Target);
                    _at = attribute.Offset;
                    return JinjaAccess.GetAttribute(target, attribute.Name);
                }

            case ItemExpression item:
                {
                    object? target = Evaluate(item.Target);
                    object? key = Evaluate(item.Key);
                    _at = item.Offset;
                    return JinjaAccess.GetItem(target, key);
                }

            case SliceExpression slice:
                {
                    object? target = Evaluate(slice.Target);
                    object? start = slice.Start is null ? null : Evaluate(slice.Start);
                    object? stop = slice.Stop is null ? null : Evaluate(slice.Stop);
                    object? step = slice.Step is null ? null : Evaluate(slice.Step);
                    _at = slice.Offset;
                    return JinjaAccess.Slice(target, start, stop, step);
                }

            case CallExpression call:
                return EvaluateCall(call);
            case FilterExpression filter:
                return ApplyFilter(filter, filter.Value is null ? null : Evaluate(filter.Value));
            case TestExpression test:
                {
                    object? value = Evaluate(test.Value);
                    CallArguments args = EvaluateArguments(test.Arguments, test.Keywords);
                    _at = test.Offset;
                    return JinjaTestFunctions.Apply(test.Name, value, args) != test.Negated;
                }

            case UnaryExpression unary:
                {
                    object? operand = Evaluate(unary.Operand);
                    _at = unary.Offset;
                    return unary.Operator switch
                    {
                        "not" => !Python.Truthy(operand),
                        "-" => operand switch
                        {
                            long l => l == long.MinValue ? throw new JinjaRuntimeException("integer overflow in unary -") : (object)(-l),
                            bool b => (object)(b ? -1L : 0L),
                            double d => (object)(-d),
                            Undefined u => throw u.Fail(),
                            _ => throw new JinjaRuntimeException($"bad operand type for unary -: '{Python.TypeName(operand)}'"),
                        },
                        _ => operand switch
                        {
                            long or double => operand,
                            bool b => (object)(b ? 1L : 0L),
                            Undefined u => throw u.Fail(),
                            _ => throw new JinjaRuntimeException($"bad operand type for unary +: '{Python.TypeName(operand)}'"),
                        },
                    };
                }

            case BinaryExpression binary:
                {
                    object? left = Evaluate(binary.Left);
                    if (binary.Operator == "and")
                    {
                        return Python.Truthy(left) ? Evaluate(binary.Right) : left;
                    }

                    if (binary.Operator == "or")
                    {
                        return Python.Truthy(left) ? left : Evaluate(binary.Right);
                    }

                    object? right = Evaluate(binary.Right);
                    _at = binary.Offset;
                    return Python.Arithmetic(binary.Operator, left, right);
                }

            case ConcatExpression concat:
                return string.Concat(concat.Items.Select(i => Python.Str(Evaluate(i))));
            case CompareExpression compare:
                {
                    object? left = Evaluate(compare.First);
                    foreach ((string op, JinjaExpression operand) in compare.Rest)
                    {
                        object? right = Evaluate(operand);
                        _at = operand.Offset;
                        bool holds = op switch
                        {
                            "==" => Python.Equal(left, right),
                            "!=" => !Python.Equal(left, right),
                            "<" => Python.Compare(left, right, op) < 0,
                            "<=" => Python.Compare(left, right, op) <= 0,
                            ">" => Python.Compare(left, right, op) > 0,
                            ">=" => Python.Compare(left, right, op) >= 0,
                            "in" => Python.Contains(right, left),
                            _ => !Python.Contains(right, left),
                        };
                        if (!holds)
                        {
                            return false;
                        }

                        left = right;
                    }

                    return true;
                }

            case ConditionalExpression conditional:
                return Python.Truthy(Evaluate(conditional.Test))
                    ? Evaluate(conditional.Then)
                    : conditional.Otherwise is null
                        ? new Undefined("the inline if-expression evaluated to false and no else section was defined")
                        : Evaluate(conditional.Otherwise);
            default:
                throw new JinjaRuntimeException($"unknown expression {expression.GetType().Name}");
        }
    }

    private CallArguments EvaluateArguments(IReadOnlyList<JinjaExpression> arguments, IReadOnlyList<(string Name, JinjaExpression Value)> keywords)
    {
        if (arguments.Count == 0 && keywords.Count == 0)
        {
            return CallArguments.None;
        }

        return new CallArguments(
            arguments.Select(Evaluate).ToList(),
            keywords.Select(k => new KeyValuePair<string, object?>(k.Name, Evaluate(k.Value))).ToList());
    }

    private object? ApplyFilter(FilterExpression filter, object? value)
    {
        CallArguments args = EvaluateArguments(filter.Arguments, filter.Keywords);
        _at = filter.Offset;
        return JinjaFilters.Apply(filter.Name, value, args);
    }

    private object? EvaluateCall(CallExpression call)
    {
        object? callee = Evaluate(call.Callee);
        CallArguments args = EvaluateArguments(call.Arguments, call.Keywords);
        _at = call.Callee.Offset;
        return callee switch
        {
            JinjaCallable function => function.Invoke(this, args),
            BoundMethod method => PythonMethods.Call(method, args),
            Undefined u => throw u.Fail(),
            _ => throw new JinjaRuntimeException($"'{Python.TypeName(callee)}' object is not callable"),
        };
    }
}
