using System.Collections.Concurrent;

namespace SpecDecode.Soak;

/// <summary>How one request of the soak ended.</summary>
internal enum SoakOutcome
{
    /// <summary>Completed with a result (checked against its reference).</summary>
    Served,

    /// <summary>Cancelled by its client (a cancellation token, or a stream the client stopped reading).</summary>
    Cancelled,

    /// <summary>A stream the client dropped after one chunk, without disposing it: the engine finishes it unobserved.</summary>
    Dropped,

    /// <summary>Failed with <see cref="PluginFailedException"/> caused by an injected drafter fault.</summary>
    FailedByInjectedFault,

    /// <summary>Failed with <see cref="ObjectDisposedException"/> because the engine or the model was disposed under it.</summary>
    EndedByDisposal,

    /// <summary>Refused at submission because the engine was disposed (or the token already cancelled).</summary>
    Refused,

    /// <summary>Any other exception: a failed check.</summary>
    Unexpected,

    /// <summary>Did not end within <see cref="SoakSettings.RequestTimeout"/>: a failed check.</summary>
    Stranded,
}

/// <summary>The soak's counters, written by every client (thread-safe).</summary>
internal sealed class SoakTally
{
    private readonly long[] _outcomes = new long[Enum.GetValues<SoakOutcome>().Length];
    private readonly ConcurrentQueue<string> _mismatches = new();
    private readonly ConcurrentQueue<string> _unexpected = new();
    private readonly ConcurrentQueue<string> _escaped = new();
    private readonly ConcurrentQueue<string> _accounting = new();
    private long _tokens, _checked;

    public void Add(SoakOutcome outcome, string? detail = null)
    {
        Interlocked.Increment(ref _outcomes[(int)outcome]);
        if (outcome is SoakOutcome.Unexpected or SoakOutcome.Stranded && detail is not null)
        {
            _unexpected.Enqueue($"{outcome}: {detail}");
        }
    }

    public long Count(SoakOutcome outcome) => Interlocked.Read(ref _outcomes[(int)outcome]);

    public long Requests => _outcomes.Sum();

    public void AddTokens(int count) => Interlocked.Add(ref _tokens, count);

    public long Tokens => Interlocked.Read(ref _tokens);

    /// <summary>A result compared with its reference (greedy) or checked against its budget (sampled).</summary>
    public void Checked() => Interlocked.Increment(ref _checked);

    public long ComparedResults => Interlocked.Read(ref _checked);

    public void Mismatch(string detail) => _mismatches.Enqueue(detail);

    public void Escaped(string detail) => _escaped.Enqueue(detail);

    public void AccountingFailed(string detail) => _accounting.Enqueue(detail);

    public IReadOnlyCollection<string> Mismatches => _mismatches;

    public IReadOnlyCollection<string> UnexpectedDetails => _unexpected;

    public IReadOnlyCollection<string> EscapedExceptions => _escaped;

    public IReadOnlyCollection<string> AccountingFailures => _accounting;
}
