using System.Diagnostics;

namespace SpecDecode;

/// <summary>
/// Counters of speculative decoding in the shape vLLM reports them: drafts, draft tokens, accepted tokens, accepted
/// tokens per draft position, mean acceptance length = 1 + accepted / drafts, and time spent drafting.
/// </summary>
/// <remarks>
/// <para>A <em>step</em> is one verification of one request; a <em>draft</em> is a step whose draft was not empty (as
/// vLLM's <c>num_drafts</c>). Position <c>i</c> of <see cref="AcceptedPerPosition"/> counts the drafts whose accepted path
/// reached depth <c>i + 1</c>. Definitions follow vLLM <c>v1/spec_decode/metrics.py</c>.</para>
/// <para>Thread-safe: many threads may record at once; reads see a consistent snapshot.</para>
/// </remarks>
[DebuggerDisplay("{Drafts} drafts, {AcceptedTokens}/{DraftTokens} accepted, mean acceptance length {MeanAcceptanceLength}")]
public sealed class SpeculationMetrics
{
    private readonly Lock _gate = new();
    private long _steps, _drafts, _draftTokens, _acceptedTokens, _emittedTokens, _draftingTicks;
    private long[] _acceptedPerPosition = new long[16];
    private int _maxPosition;

    /// <summary>Verification steps recorded, with or without a draft.</summary>
    public long Steps { get { lock (_gate) { return _steps; } } }

    /// <summary>Steps that had a non-empty draft.</summary>
    public long Drafts { get { lock (_gate) { return _drafts; } } }

    /// <summary>Draft tokens proposed (tree nodes, summed over steps).</summary>
    public long DraftTokens { get { lock (_gate) { return _draftTokens; } } }

    /// <summary>Draft tokens the target accepted (excluding bonus tokens).</summary>
    public long AcceptedTokens { get { lock (_gate) { return _acceptedTokens; } } }

    /// <summary>Tokens emitted: accepted draft tokens plus bonus tokens (less any cut by a stop condition).</summary>
    public long EmittedTokens { get { lock (_gate) { return _emittedTokens; } } }

    /// <summary>Total time spent proposing drafts.</summary>
    public TimeSpan DraftingTime { get { lock (_gate) { return TimeSpan.FromTicks(_draftingTicks); } } }

    /// <summary>vLLM's mean acceptance length: 1 + accepted / drafts (1 when there were no drafts).</summary>
    public double MeanAcceptanceLength { get { lock (_gate) { return _drafts == 0 ? 1.0 : 1.0 + (double)_acceptedTokens / _drafts; } } }

    /// <summary>Emitted tokens per step, over every step (with or without a draft); 0 before the first step.</summary>
    public double MeanTokensPerStep { get { lock (_gate) { return _steps == 0 ? 0.0 : (double)_emittedTokens / _steps; } } }

    /// <summary>Accepted draft tokens / draft tokens (0 when nothing was drafted).</summary>
    public double AcceptanceRate { get { lock (_gate) { return _draftTokens == 0 ? 0.0 : (double)_acceptedTokens / _draftTokens; } } }

    /// <summary>Element <c>i</c>: drafts whose accepted path reached depth <c>i + 1</c>. Length is the deepest accepted depth.</summary>
    public long[] AcceptedPerPosition
    {
        get { lock (_gate) { return _acceptedPerPosition.AsSpan(0, _maxPosition).ToArray(); } }
    }

    /// <summary>Records one verification step of one request.</summary>
    /// <param name="draftTokens">Nodes in the proposed draft (0 for no draft).</param>
    /// <param name="acceptedTokens">Draft tokens accepted (the accepted path length).</param>
    /// <param name="emittedTokens">Tokens emitted by the step: usually <paramref name="acceptedTokens"/> + 1.</param>
    /// <param name="draftingTime">Time the drafter took to propose.</param>
    /// <exception cref="ArgumentOutOfRangeException">A count is negative, or more tokens were accepted than drafted.</exception>
    public void RecordStep(int draftTokens, int acceptedTokens, int emittedTokens, TimeSpan draftingTime)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(draftTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(acceptedTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(emittedTokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(acceptedTokens, draftTokens);
        lock (_gate)
        {
            _steps++;
            _emittedTokens += emittedTokens;
            _draftingTicks += draftingTime.Ticks;
            if (draftTokens == 0)
            {
                return;
            }
            _drafts++;
            _draftTokens += draftTokens;
            _acceptedTokens += acceptedTokens;
            if (acceptedTokens > _acceptedPerPosition.Length)
            {
                Array.Resize(ref _acceptedPerPosition, Math.Max(acceptedTokens, _acceptedPerPosition.Length * 2));
            }
            for (int i = 0; i < acceptedTokens; i++)
            {
                _acceptedPerPosition[i]++;
            }
            _maxPosition = Math.Max(_maxPosition, acceptedTokens);
        }
    }

    /// <summary>Adds every counter of <paramref name="other"/> to this instance.</summary>
    public void Add(SpeculationMetrics other)
    {
        ArgumentNullException.ThrowIfNull(other);
        long[] perPosition;
        long steps, drafts, draftTokens, accepted, emitted, ticks;
        // One snapshot of the source under its lock, then the update under ours: never both locks at once.
        lock (other._gate)
        {
            (steps, drafts, draftTokens, accepted, emitted, ticks) =
                (other._steps, other._drafts, other._draftTokens, other._acceptedTokens, other._emittedTokens, other._draftingTicks);
            perPosition = other._acceptedPerPosition.AsSpan(0, other._maxPosition).ToArray();
        }
        lock (_gate)
        {
            _steps += steps;
            _drafts += drafts;
            _draftTokens += draftTokens;
            _acceptedTokens += accepted;
            _emittedTokens += emitted;
            _draftingTicks += ticks;
            if (perPosition.Length > _acceptedPerPosition.Length)
            {
                Array.Resize(ref _acceptedPerPosition, perPosition.Length);
            }
            for (int i = 0; i < perPosition.Length; i++)
            {
                _acceptedPerPosition[i] += perPosition[i];
            }
            _maxPosition = Math.Max(_maxPosition, perPosition.Length);
        }
    }
}
