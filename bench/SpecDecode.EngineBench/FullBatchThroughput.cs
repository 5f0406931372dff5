using System.Diagnostics.Metrics;
using SpecDecode.Tree;

namespace SpecDecode.EngineBench;

/// <summary>
/// Decode throughput over the steps that ran the whole batch: the tokens those steps emitted over their draft, verify and
/// host time, read from the engine's own metrics (meter <c>SpecDecode</c>, scoped to the engine). A fixed set of calls
/// ends with a tail where fewer and fewer requests remain (the slot that drew the longest calls), and before it the batch
/// can be short of full; whole-run tokens/s mixes that tail in, and it weighs on speculation more than on plain decoding
/// (in the fifth session's H100 sweep, adaptive speculation at batch 48 ran at a mean batch of 26 against plain's 35).
/// The steps at the full batch are the decode throughput at batch B that issue 18's floor ratio is about.
/// </summary>
/// <remarks>Within an engine step the engine records each request's emitted tokens (<c>specdecode.generation_tokens</c>),
/// then the step's batch size (<c>specdecode.step.batch_size</c>), then its draft, verify and host durations
/// (<c>specdecode.step.duration</c>, in that order); prefill durations carry phase "prefill" and are left out, and so are
/// the first tokens a prefill chose, which the engine records just before that prefill's duration. Written by
/// hand on a <see cref="MeterListener"/> because no metrics library keeps the pairing of a step's tokens with its batch
/// size, which is what is needed here.</remarks>
internal sealed class FullBatchThroughput : IDisposable
{
    private readonly int _fullBatch;
    private readonly MeterListener? _listener;
    private long _pendingTokens, _stepTokens;
    private int _stepBatch;
    private double _stepSeconds;

    /// <summary>Listens to <paramref name="engine"/>'s metrics; <paramref name="fullBatch"/> is its MaxBatch.</summary>
    public FullBatchThroughput(object engine, int fullBatch)
    {
        _fullBatch = fullBatch;
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == EngineMetrics.MeterName && ReferenceEquals(instrument.Meter.Scope, engine)
                    && instrument.Name is EngineMetrics.GeneratedTokensName or EngineMetrics.BatchSizeName or EngineMetrics.StepDurationName)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Tokens(value));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => BatchSize(value));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == EngineMetrics.PhaseTag && tag.Value is string phase)
                {
                    Duration(phase, value);
                }
            }
        });
        _listener.Start();
    }

    /// <summary>For tests: no listener; feed the measurements through <see cref="Tokens"/>, <see cref="BatchSize"/> and
    /// <see cref="Duration"/>.</summary>
    internal FullBatchThroughput(int fullBatch) => _fullBatch = fullBatch;

    /// <summary>Steps that ran the full batch.</summary>
    public long Steps { get; private set; }

    /// <summary>Tokens those steps emitted.</summary>
    public long EmittedTokens { get; private set; }

    /// <summary>Their draft + verify + host seconds.</summary>
    public double Seconds { get; private set; }

    /// <summary>Every step's seconds (full or not), for the full steps' share.</summary>
    public double AllStepSeconds { get; private set; }

    /// <summary>Tokens per second over the full-batch steps; 0 when there were none.</summary>
    public double TokensPerSecond => Seconds > 0 ? EmittedTokens / Seconds : 0;

    internal void Tokens(long emitted) => _pendingTokens += emitted;

    internal void BatchSize(int batch)
    {
        _stepBatch = batch;
        _stepTokens = _pendingTokens;
        _pendingTokens = 0;
        _stepSeconds = 0;
    }

    internal void Duration(string phase, double seconds)
    {
        if (phase == EngineMetrics.PrefillPhase)
        {
            _pendingTokens = 0; // the first tokens this prefill chose: no step emitted them
            return;
        }
        _stepSeconds += seconds;
        if (phase != EngineMetrics.HostPhase)
        {
            return;
        }
        // host is the step's last record
        AllStepSeconds += _stepSeconds;
        if (_stepBatch >= _fullBatch)
        {
            Steps++;
            EmittedTokens += _stepTokens;
            Seconds += _stepSeconds;
        }
    }

    public void Dispose() => _listener?.Dispose();
}
