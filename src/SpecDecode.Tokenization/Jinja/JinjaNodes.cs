namespace SpecDecode.Tokenization.Jinja;

// The syntax tree of a template. Every node keeps the offset of its first token, for error messages.

/// <summary>A statement of a template body.</summary>
internal abstract record JinjaStatement(int Offset);

/// <summary>Template text, output as it is.</summary>
internal sealed record TextStatement(int Offset, string Text) : JinjaStatement(Offset);

/// <summary><c>{{ expression }}</c>.</summary>
internal sealed record PrintStatement(int Offset, JinjaExpression Value) : JinjaStatement(Offset);

/// <summary><c>{% if %}</c> with its <c>elif</c> branches and optional <c>else</c>.</summary>
internal sealed record IfStatement(int Offset, IReadOnlyList<(JinjaExpression Test, IReadOnlyList<JinjaStatement> Body)> Branches,
    IReadOnlyList<JinjaStatement>? Else) : JinjaStatement(Offset);

/// <summary><c>{% for target in iterable [if filter] %}body[{% else %}else]{% endfor %}</c>.</summary>
internal sealed record ForStatement(int Offset, JinjaTarget Target, JinjaExpression Iterable, JinjaExpression? Filter,
    IReadOnlyList<JinjaStatement> Body, IReadOnlyList<JinjaStatement>? Else) : JinjaStatement(Offset);

/// <summary><c>{% set target = value %}</c>.</summary>
internal sealed record SetStatement(int Offset, JinjaTarget Target, JinjaExpression Value) : JinjaStatement(Offset);

/// <summary><c>{% set name [| filters] %}body{% endset %}</c>: the rendered body, through the filters, is assigned.</summary>
internal sealed record SetBlockStatement(int Offset, JinjaTarget Target, IReadOnlyList<FilterExpression> Filters,
    IReadOnlyList<JinjaStatement> Body) : JinjaStatement(Offset);

/// <summary><c>{% break %}</c> or <c>{% continue %}</c> (transformers enables the loop-controls extension).</summary>
internal sealed record LoopControlStatement(int Offset, bool IsBreak) : JinjaStatement(Offset);

/// <summary><c>{% generation %}body{% endgeneration %}</c>, transformers' marker of assistant text: rendered as its body.</summary>
internal sealed record GenerationStatement(int Offset, IReadOnlyList<JinjaStatement> Body) : JinjaStatement(Offset);

/// <summary>What a <c>set</c> or <c>for</c> assigns to.</summary>
internal abstract record JinjaTarget(int Offset);

/// <summary>A variable name.</summary>
internal sealed record NameTarget(int Offset, string Name) : JinjaTarget(Offset);

/// <summary>Several targets the value is unpacked into (<c>for key, value in ...</c>).</summary>
internal sealed record TupleTarget(int Offset, IReadOnlyList<JinjaTarget> Items) : JinjaTarget(Offset);

/// <summary>An attribute of a namespace object (<c>set ns.count = ...</c>).</summary>
internal sealed record NamespaceTarget(int Offset, string Name, string Attribute) : JinjaTarget(Offset);

/// <summary>An expression.</summary>
internal abstract record JinjaExpression(int Offset);

/// <summary>A literal: string, integer, float, boolean or none.</summary>
internal sealed record ConstantExpression(int Offset, object? Value) : JinjaExpression(Offset);

/// <summary>A variable.</summary>
internal sealed record NameExpression(int Offset, string Name) : JinjaExpression(Offset);

/// <summary><c>[a, b]</c>.</summary>
internal sealed record ListExpression(int Offset, IReadOnlyList<JinjaExpression> Items) : JinjaExpression(Offset);

/// <summary><c>(a, b)</c> or <c>a, b</c>.</summary>
internal sealed record TupleExpression(int Offset, IReadOnlyList<JinjaExpression> Items) : JinjaExpression(Offset);

/// <summary><c>{key: value}</c>.</summary>
internal sealed record DictExpression(int Offset, IReadOnlyList<(JinjaExpression Key, JinjaExpression Value)> Items) : JinjaExpression(Offset);

/// <summary><c>obj.name</c>: attribute first, then item (Jinja's <c>getattr</c>).</summary>
internal sealed record AttributeExpression(int Offset, JinjaExpression Target, string Name) : JinjaExpression(Offset);

/// <summary><c>obj[key]</c>: item first, then attribute (Jinja's <c>getitem</c>).</summary>
internal sealed record ItemExpression(int Offset, JinjaExpression Target, JinjaExpression Key) : JinjaExpression(Offset);

/// <summary><c>obj[start:stop:step]</c>.</summary>
internal sealed record SliceExpression(int Offset, JinjaExpression Target, JinjaExpression? Start, JinjaExpression? Stop,
    JinjaExpression? Step) : JinjaExpression(Offset);

/// <summary>A call with positional and keyword arguments.</summary>
internal sealed record CallExpression(int Offset, JinjaExpression Callee, IReadOnlyList<JinjaExpression> Arguments,
    IReadOnlyList<(string Name, JinjaExpression Value)> Keywords) : JinjaExpression(Offset);

/// <summary><c>value | name(arguments)</c>; <see cref="Value"/> is null inside <c>{% set x | filter %}</c>.</summary>
internal sealed record FilterExpression(int Offset, JinjaExpression? Value, string Name, IReadOnlyList<JinjaExpression> Arguments,
    IReadOnlyList<(string Name, JinjaExpression Value)> Keywords) : JinjaExpression(Offset);

/// <summary><c>value is [not] name(arguments)</c>.</summary>
internal sealed record TestExpression(int Offset, JinjaExpression Value, string Name, IReadOnlyList<JinjaExpression> Arguments,
    IReadOnlyList<(string Name, JinjaExpression Value)> Keywords, bool Negated) : JinjaExpression(Offset);

/// <summary><c>not x</c>, <c>-x</c>, <c>+x</c>.</summary>
internal sealed record UnaryExpression(int Offset, string Operator, JinjaExpression Operand) : JinjaExpression(Offset);

/// <summary>Arithmetic (<c>+ - * / // % **</c>) and the short-circuit <c>and</c>, <c>or</c>.</summary>
internal sealed record BinaryExpression(int Offset, string Operator, JinjaExpression Left, JinjaExpression Right) : JinjaExpression(Offset);

/// <summary><c>a ~ b ~ c</c>: the string forms joined.</summary>
internal sealed record ConcatExpression(int Offset, IReadOnlyList<JinjaExpression> Items) : JinjaExpression(Offset);

/// <summary>A (possibly chained) comparison: <c>== != &lt; &lt;= &gt; &gt;= in notin</c>.</summary>
internal sealed record CompareExpression(int Offset, JinjaExpression First, IReadOnlyList<(string Operator, JinjaExpression Operand)> Rest) : JinjaExpression(Offset);

/// <summary><c>then if test else otherwise</c>; without <c>else</c> a false test gives undefined.</summary>
internal sealed record ConditionalExpression(int Offset, JinjaExpression Test, JinjaExpression Then, JinjaExpression? Otherwise) : JinjaExpression(Offset);
