using SpecDecode.Tree;

namespace SpecDecode.Soak;

/// <summary>One engine of the soak, from creation to disposal, with the submissions it accepted: after its disposal its
/// completed count must equal them (every accepted request ended exactly once).</summary>
internal sealed class EngineLife(int number, SpeculativeEngine engine)
{
    private long _accepted;
    private volatile bool _disposing;

    public int Number { get; } = number;

    public SpeculativeEngine Engine { get; } = engine;

    public long Accepted => Interlocked.Read(ref _accepted);

    /// <summary>Set before the engine (or its model) is disposed: from then on, ObjectDisposedException is an expected
    /// outcome of its requests.</summary>
    public bool Disposing => _disposing;

    public void Accept() => Interlocked.Increment(ref _accepted);

    public void MarkDisposing() => _disposing = true;

    /// <summary>Whether an ObjectDisposedException from a stream's first read was a refusal at submission (the request
    /// never reached the engine) rather than the failure of an accepted request (its message says it was running).</summary>
    public static bool IsRefusal(ObjectDisposedException e) =>
        !e.Message.Contains("before the request finished", StringComparison.Ordinal)
        && !e.Message.Contains("while the request ran", StringComparison.Ordinal);
}
