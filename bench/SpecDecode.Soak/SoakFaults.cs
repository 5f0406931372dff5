using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace SpecDecode.Soak;

/// <summary>Seeded coin flips shared by the fault injectors (thread-safe).</summary>
internal sealed class FaultDice(int seed)
{
    private readonly Random _random = new(seed);
    private readonly Lock _gate = new();

    public bool Roll(double probability)
    {
        lock (_gate)
        {
            return _random.NextDouble() < probability;
        }
    }
}

/// <summary>Marks every exception the soak injects, so an outcome can be told apart from a real failure.</summary>
internal sealed class InjectedFaultException(string message) : Exception("injected: " + message);

/// <summary>
/// A drafter around a real one whose calls throw at random, and whose Propose returns, at random, a draft with a token
/// outside the vocabulary. The inner drafter stays consistent: StartRequest throws before starting it, EndRequest after
/// ending it (a drafter that leaks on a failed EndRequest is the drafter's bug, not the engine's).
/// </summary>
internal sealed class RandomFaultDrafter(IDrafter inner, FaultDice dice, double rate, int vocabulary) : IDrafter
{
    private long _injected;

    public long Injected => Interlocked.Read(ref _injected);

    public string Name => "random-fault(" + inner.Name + ")";

    public int MaxBudget => inner.MaxBudget;

    private void MaybeThrow(string operation)
    {
        if (dice.Roll(rate))
        {
            Interlocked.Increment(ref _injected);
            throw new InjectedFaultException(operation);
        }
    }

    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        MaybeThrow("StartRequest");
        inner.StartRequest(request, prompt, options);
    }

    public DraftTree Propose(RequestId request, int maxTokens)
    {
        MaybeThrow("Propose");
        if (dice.Roll(rate / 2))
        {
            Interlocked.Increment(ref _injected);
            return DraftTree.Chain([vocabulary + 1]);
        }
        return inner.Propose(request, maxTokens);
    }

    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        MaybeThrow("Observe");
        inner.Observe(request, emitted);
    }

    public void EndRequest(RequestId request)
    {
        inner.EndRequest(request);
        MaybeThrow("EndRequest");
    }

    public void Dispose() => inner.Dispose();
}

/// <summary>A logger, enabled for every level, whose calls throw at random.</summary>
internal sealed class RandomFaultLogger(FaultDice dice, double rate) : ILogger
{
    private long _calls, _injected;

    public long Calls => Interlocked.Read(ref _calls);

    public long Injected => Interlocked.Read(ref _injected);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        Interlocked.Increment(ref _calls);
        _ = formatter(state, exception);
        if (dice.Roll(rate))
        {
            Interlocked.Increment(ref _injected);
            throw new InjectedFaultException("logger");
        }
    }
}

/// <summary>Listens to every SpecDecode meter; its measurement callbacks throw at random.</summary>
internal sealed class RandomFaultMetricsListener : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _measurements, _injected;

    public RandomFaultMetricsListener(FaultDice dice, double rate)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "SpecDecode")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        void Measured()
        {
            Interlocked.Increment(ref _measurements);
            if (dice.Roll(rate))
            {
                Interlocked.Increment(ref _injected);
                throw new InjectedFaultException("metrics listener");
            }
        }
        _listener.SetMeasurementEventCallback<long>((_, _, _, _) => Measured());
        _listener.SetMeasurementEventCallback<double>((_, _, _, _) => Measured());
        _listener.SetMeasurementEventCallback<int>((_, _, _, _) => Measured());
        _listener.Start();
    }

    public long Measurements => Interlocked.Read(ref _measurements);

    public long Injected => Interlocked.Read(ref _injected);

    public void Dispose() => _listener.Dispose();
}
