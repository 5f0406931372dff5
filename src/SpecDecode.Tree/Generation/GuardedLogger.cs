using Microsoft.Extensions.Logging;

namespace SpecDecode.Tree;

/// <summary>
/// The engine's view of the host's <see cref="ILogger"/>: every call is passed on, and whatever the logger throws is
/// swallowed and counted. The engine logs on its own thread, often while it is already handling a failure; a logger
/// that throws there would end the process (an exception escaping a thread does) or leave a request unfinished.
/// </summary>
internal sealed class GuardedLogger(ILogger inner) : ILogger
{
    private long _failures;

    /// <summary>Calls of the logger that threw (and were swallowed).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull
    {
        try
        {
            return inner.BeginScope(state);
        }
        catch (Exception)
        {
            Interlocked.Increment(ref _failures);
            return null;
        }
    }

    public bool IsEnabled(LogLevel logLevel)
    {
        try
        {
            return inner.IsEnabled(logLevel);
        }
        catch (Exception)
        {
            Interlocked.Increment(ref _failures);
            return false;
        }
    }

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        try
        {
            inner.Log(logLevel, eventId, state, exception, formatter);
        }
        catch (Exception)
        {
            Interlocked.Increment(ref _failures);
        }
    }
}
