using System.Collections;

namespace SpecDecode.Tokenization.Jinja;

// Run-time values. Templates see Python values, represented as: null (None), bool, long (int), double (float),
// string (str), List<object?> (list), object?[] (tuple), JinjaDict (dict), JinjaNamespace, LoopContext, JinjaCallable,
// BoundMethod, and Undefined.

/// <summary>An error while rendering, without a position; the interpreter adds the line and column of the node that
/// raised it.</summary>
internal sealed class JinjaRuntimeException(string message) : Exception(message);

/// <summary>
/// Jinja's default <c>Undefined</c>: falsey, prints as the empty string, iterates as empty, has length 0 and equals only
/// another undefined; arithmetic, ordering, calls, and attribute or item access on it raise an error whose message says
/// what was undefined (<c>'x' is undefined</c>, <c>'dict object' has no attribute 'y'</c>).
/// </summary>
internal sealed class Undefined(string message)
{
    /// <summary>Why the value is undefined.</summary>
    public string Message { get; } = message;

    /// <summary>The error for using this value where Jinja raises <c>UndefinedError</c>.</summary>
    public JinjaRuntimeException Fail() => new(Message);

    /// <summary>Undefined because the variable <paramref name="name"/> does not exist.</summary>
    public static Undefined Name(string name) => new($"'{name}' is undefined");

    /// <summary>Undefined because <paramref name="target"/> has no attribute <paramref name="name"/>.</summary>
    public static Undefined Attribute(object? target, string name) => new($"'{ObjectName(target)}' has no attribute '{name}'");

    /// <summary>Undefined because <paramref name="target"/> has no item <paramref name="key"/>.</summary>
    public static Undefined Item(object? target, object? key) =>
        key is string s ? Attribute(target, s) : new($"{ObjectName(target)} has no element {Python.Repr(key)}");

    /// <summary>Jinja's <c>object_type_repr</c>: <c>None</c>, else <c>dict object</c>, <c>list object</c>, ...</summary>
    private static string ObjectName(object? target) => target is null ? "None" : Python.TypeName(target) + " object";
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality (so <c>1</c>, <c>1.0</c> and
/// <c>True</c> are one key). Keys may be strings, numbers, booleans or None.</summary>
internal sealed class JinjaDict : IEnumerable<KeyValuePair<object?, object?>>
{
    private readonly List<KeyValuePair<object?, object?>> _entries = [];
    private readonly Dictionary<Key, int> _index = [];

    /// <summary>The number of entries.</summary>
    public int Count => _entries.Count;

    /// <summary>The keys in insertion order.</summary>
    public IEnumerable<object?> Keys => _entries.Select(e => e.Key);

    /// <summary>The values in insertion order.</summary>
    public IEnumerable<object?> Values => _entries.Select(e => e.Value);

    /// <summary>Sets <paramref name="key"/> to <paramref name="value"/>, keeping its place if it exists.</summary>
    public void Set(object? key, object? value)
    {
        Key k = KeyOf(key);
        if (_index.TryGetValue(k, out int at))
        {
            _entries[at] = new(_entries[at].Key, value);
        }
        else
        {
            _index[k] = _entries.Count;
            _entries.Add(new(key, value));
        }
    }

    /// <summary>Looks <paramref name="key"/> up; an unhashable key is simply not found.</summary>
    public bool TryGetValue(object? key, out object? value)
    {
        if (TryKeyOf(key, out Key k) && _index.TryGetValue(k, out int at))
        {
            value = _entries[at].Value;
            return true;
        }

        value = null;
        return false;
    }

    /// <summary>Whether <paramref name="key"/> is a key.</summary>
    public bool ContainsKey(object? key) => TryGetValue(key, out _);

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<object?, object?>> GetEnumerator() => _entries.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private static Key KeyOf(object? key) =>
        TryKeyOf(key, out Key k) ? k : throw new JinjaRuntimeException($"unhashable type: '{Python.TypeName(key)}'");

    private static bool TryKeyOf(object? key, out Key k)
    {
        switch (key)
        {
            case null: k = new Key(0, 0, null); return true;
            case bool b: k = new Key(1, b ? 1 : 0, null); return true;
            case long l: k = new Key(1, l, null); return true;
            case double d when d == Math.Floor(d) && Math.Abs(d) < 9e18: k = new Key(1, (long)d, null); return true;
            case double d: k = new Key(2, BitConverter.DoubleToInt64Bits(d), null); return true;
            case string s: k = new Key(3, 0, s); return true;
            default: k = default; return false;
        }
    }

    private readonly record struct Key(int Kind, long Number, string? Text);
}

/// <summary>The object <c>namespace(...)</c> creates: attributes that <c>{% set ns.attr = ... %}</c> can change from
/// inside a loop (plain variables set in a loop do not outlive the iteration).</summary>
internal sealed class JinjaNamespace
{
    /// <summary>The attributes.</summary>
    public JinjaDict Attributes { get; } = new();
}

/// <summary>The <c>loop</c> variable of a for loop.</summary>
internal sealed class LoopContext(IReadOnlyList<object?> items, int index0)
{
    /// <summary>The value of <c>loop.name</c>, or an undefined one.</summary>
    public object? Get(string name) => name switch
    {
        "index" => (long)(index0 + 1),
        "index0" => (long)index0,
        "revindex" => (long)(items.Count - index0),
        "revindex0" => (long)(items.Count - index0 - 1),
        "first" => index0 == 0,
        "last" => index0 == items.Count - 1,
        "length" => (long)items.Count,
        "previtem" => index0 > 0 ? items[index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => index0 + 1 < items.Count ? items[index0 + 1] : new Undefined("there is no next item"),
        "depth" => 1L,
        "depth0" => 0L,
        "cycle" => new JinjaCallable("loop.cycle", (_, args) =>
            args.Positional.Count == 0 ? throw new JinjaRuntimeException("no items for cycling given") : args.Positional[index0 % args.Positional.Count]),
        _ => Undefined.Attribute(this, name),
    };
}

/// <summary>A function a template can call: a global such as <c>namespace</c> or <c>raise_exception</c>, or
/// <c>loop.cycle</c>.</summary>
internal sealed class JinjaCallable(string name, Func<JinjaInterpreter, CallArguments, object?> invoke)
{
    /// <summary>The function's name, for messages.</summary>
    public string Name { get; } = name;

    /// <summary>Calls the function.</summary>
    public object? Invoke(JinjaInterpreter interpreter, CallArguments args) => invoke(interpreter, args);
}

/// <summary>A method looked up on a string or dict (<c>text.strip</c>, <c>message.get</c>), called later.</summary>
internal sealed record BoundMethod(object Target, string Name);

/// <summary>The evaluated arguments of a call, filter or test, and Python-style binding to parameter names.</summary>
internal sealed class CallArguments(IReadOnlyList<object?> positional, IReadOnlyList<KeyValuePair<string, object?>> keywords)
{
    /// <summary>Marks a parameter without default in <see cref="Bind"/>.</summary>
    public static readonly object Required = new();

    /// <summary>No arguments.</summary>
    public static readonly CallArguments None = new([], []);

    /// <summary>The positional arguments.</summary>
    public IReadOnlyList<object?> Positional { get; } = positional;

    /// <summary>The keyword arguments, in order.</summary>
    public IReadOnlyList<KeyValuePair<string, object?>> Keywords { get; } = keywords;

    /// <summary>Binds the arguments to <paramref name="names"/> as Python would: positional ones first, then keywords
    /// by name; a parameter neither gives takes its entry of <paramref name="defaults"/> (<see cref="Required"/> for
    /// none).</summary>
    /// <exception cref="JinjaRuntimeException">Too many arguments, an unknown or repeated keyword, or a missing
    /// required one.</exception>
    public object?[] Bind(string callee, string[] names, params object?[] defaults)
    {
        if (Positional.Count > names.Length)
        {
            throw new JinjaRuntimeException($"{callee}() takes at most {names.Length} argument(s) ({Positional.Count} given)");
        }

        var bound = new object?[names.Length];
        var set = new bool[names.Length];
        for (int i = 0; i < Positional.Count; i++)
        {
            bound[i] = Positional[i];
            set[i] = true;
        }

        foreach ((string key, object? value) in Keywords)
        {
            int at = Array.IndexOf(names, key);
            if (at < 0)
            {
                throw new JinjaRuntimeException($"{callee}() got an unexpected keyword argument '{key}'");
            }

            if (set[at])
            {
                throw new JinjaRuntimeException($"{callee}() got multiple values for argument '{key}'");
            }

            bound[at] = value;
            set[at] = true;
        }

        for (int i = 0; i < names.Length; i++)
        {
            if (!set[i])
            {
                bound[i] = defaults[i] == Required
                    ? throw new JinjaRuntimeException($"{callee}() missing required argument '{names[i]}'")
                    : defaults[i];
            }
        }

        return bound;
    }
}

/// <summary>
/// A Python iterator: what Jinja's <c>select</c>, <c>reject</c>, <c>selectattr</c>, <c>rejectattr</c>, <c>map</c> and
/// <c>items</c> (generators) and <c>reverse</c> return. Lazy (errors surface when it is consumed), single-use (a second
/// loop over it sees nothing), always truthy, without a length, and not printable (Python prints its address): add
/// <c>| list</c>, as templates do.
/// </summary>
internal sealed class JinjaIterator(string typeName, IEnumerable<object?> source)
{
    private IEnumerator<object?>? _enumerator;

    /// <summary>The Python type name (<c>generator</c>, <c>list_reverseiterator</c>, ...).</summary>
    public string TypeName { get; } = typeName;

    /// <summary>The next item, if any.</summary>
    public bool TryNext(out object? item)
    {
        _enumerator ??= source.GetEnumerator();
        if (_enumerator.MoveNext())
        {
            item = _enumerator.Current;
            return true;
        }

        item = null;
        return false;
    }

    /// <summary>The remaining items; the iterator is exhausted afterwards.</summary>
    public List<object?> Drain()
    {
        var items = new List<object?>();
        while (TryNext(out object? item))
        {
            items.Add(item);
        }

        return items;
    }
}

/// <summary>A re-iterable Python sequence object that is not a list: <c>range(...)</c> and the views
/// <c>dict.items()</c>, <c>dict.keys()</c>, <c>dict.values()</c>. Behaves as its items except when printed
/// (<c>range(0, 3)</c>, <c>dict_keys(['a'])</c>) and compared.</summary>
internal sealed class PythonSequence(string typeName, IReadOnlyList<object?> items, string? repr = null)
{
    /// <summary>The Python type name: <c>range</c>, <c>dict_items</c>, <c>dict_keys</c> or <c>dict_values</c>.</summary>
    public string TypeName { get; } = typeName;

    /// <summary>The items.</summary>
    public IReadOnlyList<object?> Items { get; } = items;

    /// <summary>Python's <c>repr</c>.</summary>
    public string Repr => repr ?? TypeName + "(" + Python.Repr(Items.ToList()) + ")";
}
