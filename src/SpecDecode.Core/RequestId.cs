using System.Diagnostics;

namespace SpecDecode;

/// <summary>Identifies one generation request across the drafter and engine lifecycle.</summary>
/// <param name="Value">The caller-chosen id; any value except <see cref="long.MinValue"/> (see <see cref="Invalid"/>).</param>
[DebuggerDisplay("Request {Value}")]
public readonly record struct RequestId(long Value)
{
    /// <summary>A value that never names a request.</summary>
    public static RequestId Invalid => new(long.MinValue);

    /// <summary>True unless this is <see cref="Invalid"/>.</summary>
    public bool IsValid => Value != long.MinValue;

    /// <inheritdoc />
    public override string ToString() => Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
