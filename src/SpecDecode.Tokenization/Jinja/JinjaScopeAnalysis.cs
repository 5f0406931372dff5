namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Jinja's compile-time scoping rule, which a plain chain of variable dictionaries does not reproduce: in a scope (the
/// template's top level, a for-loop body, a block <c>set</c> body), a name that the scope assigns unconditionally,
/// outside any if-branch, without reading it first at that level and without an enclosing scope that knows the name, starts the scope
/// undefined (Jinja initialises it to <c>missing</c>) instead of falling through to the render variables. So in
/// <c>{% for i in l %}{{ x }}{% endfor %}{% set x = 1 %}</c> the loop prints nothing even when <c>x</c> is passed in.
/// This class follows Jinja's <c>idtracking</c> (loads, stores, and the branch merge of <c>if</c>) to find those names.
/// </summary>
internal static class JinjaScopeAnalysis
{
    private enum Reference
    {
        Resolve,
        Alias,
        Undefined,
        Parameter,
    }

    /// <summary>For each scope body (by reference), the names to set undefined when the scope is entered; bodies
    /// without such names are absent.</summary>
    public static IReadOnlyDictionary<object, string[]> Analyze(IReadOnlyList<JinjaStatement> root)
    {
        var result = new Dictionary<object, string[]>(ReferenceEqualityComparer.Instance);
        AnalyzeScope(root, new Symbols(null), result);
        return result;
    }

    private static void AnalyzeScope(IReadOnlyList<JinjaStatement> body, Symbols symbols, Dictionary<object, string[]> result)
    {
        foreach (JinjaStatement statement in body)
        {
            Visit(statement, symbols);
        }

        string[] undefined = [.. symbols.Refs.Where(r => r.Value == Reference.Undefined).Select(r => r.Key)];
        if (undefined.Length > 0)
        {
            result[body] = undefined;
        }

        // Child scopes are analysed after their parent, against its complete symbols, as Jinja's code generator does.
        foreach (JinjaStatement statement in body)
        {
            AnalyzeChildren(statement, symbols, result);
        }
    }

    private static void AnalyzeChildren(JinjaStatement statement, Symbols parent, Dictionary<object, string[]> result)
    {
        switch (statement)
        {
            case IfStatement conditional:
                foreach ((_, IReadOnlyList<JinjaStatement> branch) in conditional.Branches)
                {
                    foreach (JinjaStatement s in branch)
                    {
                        AnalyzeChildren(s, parent, result);
                    }
                }

                foreach (JinjaStatement s in conditional.Else ?? [])
                {
                    AnalyzeChildren(s, parent, result);
                }

                break;
            case ForStatement loop:
                {
                    var symbols = new Symbols(parent);
                    symbols.Refs["loop"] = Reference.Parameter;
                    foreach (string name in TargetNames(loop.Target))
                    {
                        symbols.Refs[name] = Reference.Parameter;
                    }

                    AnalyzeScope(loop.Body, symbols, result);
                    if (loop.Else is not null)
                    {
                        AnalyzeScope(loop.Else, new Symbols(parent), result);
                    }

                    break;
                }

            case SetBlockStatement setBlock:
                AnalyzeScope(setBlock.Body, new Symbols(parent), result);
                break;
            case GenerationStatement generation:
                AnalyzeScope(generation.Body, new Symbols(parent), result);
                break;
        }
    }

    /// <summary>Records the loads and stores of one statement at the current level (Jinja's FrameSymbolVisitor).</summary>
    private static void Visit(JinjaStatement statement, Symbols symbols)
    {
        switch (statement)
        {
            case PrintStatement print:
                Load(print.Value, symbols);
                break;
            case IfStatement conditional:
                VisitIf(conditional.Branches, 0, conditional.Else, symbols);
                break;
            case ForStatement loop:
                Load(loop.Iterable, symbols);
                break;
            case SetStatement set:
                Load(set.Value, symbols);
                Store(set.Target, symbols);
                break;
            case SetBlockStatement setBlock:
                Store(setBlock.Target, symbols);
                break;
        }
    }

    /// <summary>An <c>if</c> with its branches from <paramref name="first"/> on: Jinja's tree holds the <c>elif</c>s as
    /// nested <c>if</c> nodes without <c>else</c>, merged as one branch.</summary>
    private static void VisitIf(IReadOnlyList<(JinjaExpression Test, IReadOnlyList<JinjaStatement> Body)> branches, int first,
        IReadOnlyList<JinjaStatement>? otherwise, Symbols symbols)
    {
        Load(branches[first].Test, symbols);
        Symbols body = symbols.Copy();
        foreach (JinjaStatement s in branches[first].Body)
        {
            Visit(s, body);
        }

        Symbols elifs = symbols.Copy();
        if (first == 0)
        {
            for (int i = 1; i < branches.Count; i++)
            {
                VisitIf(branches, i, null, elifs);
            }
        }

        Symbols otherwiseSymbols = symbols.Copy();
        IReadOnlyList<JinjaStatement> others = first == 0 && otherwise is not null ? otherwise : [];
        foreach (JinjaStatement s in others)
        {
            Visit(s, otherwiseSymbols);
        }

        symbols.BranchUpdate([body, elifs, otherwiseSymbols]);
    }

    private static void Store(JinjaTarget target, Symbols symbols)
    {
        switch (target)
        {
            case NameTarget name:
                symbols.Store(name.Name);
                break;
            case TupleTarget tuple:
                foreach (JinjaTarget item in tuple.Items)
                {
                    Store(item, symbols);
                }

                break;
            case NamespaceTarget ns:
                symbols.Load(ns.Name);
                break;
        }
    }

    private static IEnumerable<string> TargetNames(JinjaTarget target) => target switch
    {
        NameTarget name => [name.Name],
        TupleTarget tuple => tuple.Items.SelectMany(TargetNames),
        _ => [],
    };

    private static void Load(JinjaExpression? expression, Symbols symbols)
    {
        switch (expression)
        {
            case null:
            case ConstantExpression:
                break;
            case NameExpression name:
                symbols.Load(name.Name);
                break;
            case ListExpression list:
                list.Items.ToList().ForEach(i => Load(i, symbols));
                break;
            case TupleExpression tuple:
                tuple.Items.ToList().ForEach(i => Load(i, symbols));
                break;
            case DictExpression dict:
                foreach ((JinjaExpression key, JinjaExpression value) in dict.Items)
                {
                    Load(key, symbols);
                    Load(value, symbols);
                }

                break;
            case AttributeExpression attribute:
                Load(attribute.Target, symbols);
                break;
            case ItemExpression item:
                Load(item.Target, symbols);
                Load(item.Key, symbols);
                break;
            case SliceExpression slice:
                Load(slice.Target, symbols);
                Load(slice.Start, symbols);
                Load(slice.Stop, symbols);
                Load(slice.Step, symbols);
                break;
            case CallExpression call:
                Load(call.Callee, symbols);
                LoadArguments(call.Arguments, call.Keywords, symbols);
                break;
            case FilterExpression filter:
                Load(filter.Value, symbols);
                LoadArguments(filter.Arguments, filter.Keywords, symbols);
                break;
            case TestExpression test:
                Load(test.Value, symbols);
                LoadArguments(test.Arguments, test.Keywords, symbols);
                break;
            case UnaryExpression unary:
                Load(unary.Operand, symbols);
                break;
            case BinaryExpression binary:
                Load(binary.Left, symbols);
                Load(binary.Right, symbols);
                break;
            case ConcatExpression concat:
                concat.Items.ToList().ForEach(i => Load(i, symbols));
                break;
            case CompareExpression compare:
                Load(compare.First, symbols);
                foreach ((_, JinjaExpression operand) in compare.Rest)
                {
                    Load(operand, symbols);
                }

                break;
            case ConditionalExpression conditional:
                Load(conditional.Test, symbols);
                Load(conditional.Then, symbols);
                Load(conditional.Otherwise, symbols);
                break;
        }
    }

    private static void LoadArguments(IReadOnlyList<JinjaExpression> arguments, IReadOnlyList<(string Name, JinjaExpression Value)> keywords, Symbols symbols)
    {
        foreach (JinjaExpression a in arguments)
        {
            Load(a, symbols);
        }

        foreach ((_, JinjaExpression value) in keywords)
        {
            Load(value, symbols);
        }
    }

    /// <summary>Jinja's <c>Symbols</c>: the names a scope refers to, how each is initialised, and what it stores.</summary>
    private sealed class Symbols(Symbols? parent)
    {
        public Dictionary<string, Reference> Refs { get; private init; } = new(StringComparer.Ordinal);

        public HashSet<string> Stores { get; private init; } = new(StringComparer.Ordinal);

        public Symbols? Parent { get; } = parent;

        public bool HasRef(string name) => Refs.ContainsKey(name) || (Parent?.HasRef(name) ?? false);

        public void Load(string name)
        {
            if (!HasRef(name))
            {
                Refs[name] = Reference.Resolve;
            }
        }

        public void Store(string name)
        {
            Stores.Add(name);
            if (!Refs.ContainsKey(name))
            {
                Refs[name] = Parent?.HasRef(name) == true ? Reference.Alias : Reference.Undefined;
            }
        }

        public Symbols Copy() => new(Parent)
        {
            Refs = new Dictionary<string, Reference>(Refs, StringComparer.Ordinal),
            Stores = new HashSet<string>(Stores, StringComparer.Ordinal),
        };

        /// <summary>Merges the branches of an <c>if</c> (Jinja 3.1's <c>branch_update</c>): a name first stored inside a
        /// branch keeps, where that store has not run, the value it had before (resolved or aliased), never undefined.</summary>
        public void BranchUpdate(IReadOnlyList<Symbols> branches)
        {
            var stored = new HashSet<string>(branches.SelectMany(b => b.Stores), StringComparer.Ordinal);
            stored.ExceptWith(Stores);
            foreach (Symbols branch in branches)
            {
                foreach ((string name, Reference reference) in branch.Refs)
                {
                    Refs[name] = reference;
                }

                Stores.UnionWith(branch.Stores);
            }

            foreach (string name in stored)
            {
                Refs[name] = Parent?.HasRef(name) == true ? Reference.Alias : Reference.Resolve;
            }
        }
    }
}
