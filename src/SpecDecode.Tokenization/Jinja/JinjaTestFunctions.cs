namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Jinja 3.1's tests (<c>x is name</c>): <c>defined undefined none boolean true false integer float number string
/// mapping iterable sequence callable sameas equalto eq == ne != lt &lt; le &lt;= gt &gt; ge &gt;= in odd even
/// divisibleby lower upper</c>. Note Jinja's own quirks: a string is <c>iterable</c>, and so is an undefined value; a
/// bool is a <c>number</c> but not an <c>integer</c>; a generator is <c>iterable</c> but not a <c>sequence</c>.
/// </summary>
internal static class JinjaTestFunctions
{
    private static readonly Dictionary<string, Func<object?, CallArguments, bool>> Tests = new(StringComparer.Ordinal)
    {
        ["defined"] = Unary(v => v is not Undefined),
        ["undefined"] = Unary(v => v is Undefined),
        ["none"] = Unary(v => v is null),
        ["boolean"] = Unary(v => v is bool),
        ["true"] = Unary(v => v is true),
        ["false"] = Unary(v => v is false),
        ["integer"] = Unary(v => v is long),
        ["float"] = Unary(v => v is double),
        ["number"] = Unary(Python.IsNumber),
        ["string"] = Unary(v => v is string),
        ["mapping"] = Unary(v => v is JinjaDict),
        ["iterable"] = Unary(v => v is string or List<object?> or object?[] or JinjaDict or Undefined or JinjaIterator or PythonSequence),
        ["sequence"] = Unary(v => v is string or List<object?> or object?[] or JinjaDict or Undefined or PythonSequence { TypeName: "range" }),
        ["callable"] = Unary(v => v is JinjaCallable or BoundMethod),
        ["lower"] = Unary(v => v is string s && s.Any(char.IsLetter) && s == s.ToLowerInvariant()),
        ["upper"] = Unary(v => v is string s && s.Any(char.IsLetter) && s == s.ToUpperInvariant()),
        ["odd"] = Unary(v => Python.Equal(Python.Arithmetic("%", v, 2L), 1L)),
        ["even"] = Unary(v => Python.Equal(Python.Arithmetic("%", v, 2L), 0L)),
        ["sameas"] = Binary((a, b) => a is null || a is bool ? Equals(a, b) : ReferenceEquals(a, b) || (a is long or double && Python.Equal(a, b) && a.GetType() == b?.GetType())),
        ["equalto"] = Binary(Python.Equal),
        ["eq"] = Binary(Python.Equal),
        ["=="] = Binary(Python.Equal),
        ["ne"] = Binary((a, b) => !Python.Equal(a, b)),
        ["!="] = Binary((a, b) => !Python.Equal(a, b)),
        ["lt"] = Binary((a, b) => Python.Compare(a, b, "<") < 0),
        ["<"] = Binary((a, b) => Python.Compare(a, b, "<") < 0),
        ["le"] = Binary((a, b) => Python.Compare(a, b, "<=") <= 0),
        ["<="] = Binary((a, b) => Python.Compare(a, b, "<=") <= 0),
        ["gt"] = Binary((a, b) => Python.Compare(a, b, ">") > 0),
        [">"] = Binary((a, b) => Python.Compare(a, b, ">") > 0),
        ["ge"] = Binary((a, b) => Python.Compare(a, b, ">=") >= 0),
        [">="] = Binary((a, b) => Python.Compare(a, b, ">=") >= 0),
        ["in"] = Binary((a, b) => Python.Contains(b, a)),
        ["divisibleby"] = Binary((a, b) => Python.Equal(Python.Arithmetic("%", a, b), 0L)),
    };

    /// <summary>Whether a test of that name exists.</summary>
    public static bool IsKnown(string name) => Tests.ContainsKey(name);

    /// <summary>Applies the test <paramref name="name"/>.</summary>
    /// <exception cref="JinjaRuntimeException">An unknown test, or bad arguments.</exception>
    public static bool Apply(string name, object? value, CallArguments args) =>
        Tests.TryGetValue(name, out Func<object?, CallArguments, bool>? test)
            ? test(value, args)
            : throw new JinjaRuntimeException($"no test named '{name}'");

    private static Func<object?, CallArguments, bool> Unary(Func<object?, bool> test) => (v, args) =>
    {
        if (args.Positional.Count > 0 || args.Keywords.Count > 0)
        {
            throw new JinjaRuntimeException("this test takes no arguments");
        }

        return test(v);
    };

    private static Func<object?, CallArguments, bool> Binary(Func<object?, object?, bool> test) => (v, args) =>
    {
        object?[] p = args.Bind("test", ["other"], CallArguments.Required);
        return test(v, p[0]);
    };
}
