namespace SpecDecode.Tokenization.Jinja;

/// <summary>
/// Attribute, item and slice access with the rules of Jinja's sandboxed environment: <c>obj.name</c> tries an attribute
/// (a method such as <c>dict.items</c>) and then the item <c>obj['name']</c>; <c>obj[key]</c> tries the item and then,
/// for a string key, the attribute; what neither finds is undefined (on an undefined value both raise, as Jinja's
/// default <c>Undefined</c> does).
/// </summary>
internal static class JinjaAccess
{
    /// <summary><c>target.name</c>.</summary>
    public static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined u:
                throw u.Fail();
            case JinjaNamespace ns:
                return ns.Attributes.TryGetValue(name, out object? attribute) ? attribute : Undefined.Attribute(target, name);
            case LoopContext loop:
                return loop.Get(name);
            case JinjaDict dict:
                return PythonMethods.Find(dict, name) ?? (dict.TryGetValue(name, out object? value) ? value : Undefined.Attribute(target, name));
            case null:
                return Undefined.Attribute(target, name);
            default:
                return PythonMethods.Find(target, name) ?? Undefined.Attribute(target, name);
        }
    }

    /// <summary><c>target[key]</c>.</summary>
    public static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case Undefined u:
                throw u.Fail();
            case JinjaDict dict:
                if (dict.TryGetValue(key, out object? value))
                {
                    return value;
                }

                break;
            case List<object?> or object?[] or PythonSequence { TypeName: "range" } when key is long or bool:
                {
                    IReadOnlyList<object?> items = target is PythonSequence range ? range.Items : (IReadOnlyList<object?>)target;
                    long index = Python.ToLong(key);
                    if (index < 0)
                    {
                        index += items.Count;
                    }

                    return index >= 0 && index < items.Count ? items[(int)index] : Undefined.Item(target, key);
                }

            case string s when key is long or bool:
                {
                    string[]? points = PythonText.CodePoints(s);
                    int length = points?.Length ?? s.Length;
                    long index = Python.ToLong(key);
                    if (index < 0)
                    {
                        index += length;
                    }

                    return index >= 0 && index < length ? points?[index] ?? s[(int)index].ToString() : Undefined.Item(target, key);
                }

            case JinjaNamespace or LoopContext when key is string name:
                return GetAttribute(target, name);
        }

        return key is string attribute && target is not null && PythonMethods.Find(target, attribute) is { } method
            ? method
            : Undefined.Item(target, key);
    }

    /// <summary><c>target[start:stop:step]</c> of a list, tuple or string, with Python's rules for negative and missing
    /// bounds.</summary>
    public static object? Slice(object? target, object? start, object? stop, object? step)
    {
        if (target is Undefined u)
        {
            throw u.Fail();
        }

        if (target is JinjaDict)
        {
            throw new JinjaRuntimeException("unhashable type: 'slice'");
        }

        if (target is PythonSequence { TypeName: "range" })
        {
            throw new JinjaRuntimeException("slicing a range() is not supported by this chat-template interpreter");
        }

        if (target is not (string or List<object?> or object?[]))
        {
            // Jinja's getitem turns the TypeError of an unsliceable object into an undefined value.
            return new Undefined($"'{Python.TypeName(target)} object' has no element slice");
        }

        string[]? points = target is string text ? PythonText.CodePoints(text) : null;
        long length = target switch
        {
            string s => points?.Length ?? s.Length,
            List<object?> list => list.Count,
            _ => ((object?[])target).Length,
        };
        long stride = step is null ? 1 : Bound(step);
        if (stride == 0)
        {
            throw new JinjaRuntimeException("slice step cannot be zero");
        }

        long Clamp(object? bound, long missing)
        {
            if (bound is null)
            {
                return missing;
            }

            long b = Bound(bound);
            if (b < 0)
            {
                b += length;
                if (b < 0)
                {
                    b = stride < 0 ? -1 : 0;
                }
            }
            else if (b >= length)
            {
                b = stride < 0 ? length - 1 : length;
            }

            return b;
        }

        long from = Clamp(start, stride < 0 ? length - 1 : 0);
        long to = Clamp(stop, stride < 0 ? -1 : length);
        var indices = new List<int>();
        for (long i = from; stride > 0 ? i < to : i > to; i += stride)
        {
            indices.Add((int)i);
        }

        return target switch
        {
            string s => points is null ? string.Concat(indices.Select(i => s[i])) : string.Concat(indices.Select(i => points[i])),
            List<object?> list => indices.Select(i => list[i]).ToList(),
            _ => indices.Select(i => ((object?[])target!)[i]).ToArray(),
        };
    }

    private static long Bound(object? value) => value is long or bool
        ? Python.ToLong(value)
        : throw new JinjaRuntimeException("slice indices must be integers or None");
}
