namespace SpecDecode.Server;

/// <summary>
/// Bounds the requests in the server at once (decoding or waiting for a slot): beyond <see cref="Limit"/> a request is
/// refused with 503 at once instead of queueing without end, so an overloaded server tells clients to retry (OpenAI
/// clients do, with back-off) rather than letting their timeouts run out.
/// </summary>
/// <param name="limit">Requests admitted at once: the engine's slots plus the waiting room.</param>
public sealed class Admission(int limit)
{
    private int _inFlight;

    /// <summary>Requests admitted at once.</summary>
    public int Limit { get; } = limit > 0 ? limit : throw new ArgumentOutOfRangeException(nameof(limit), limit, "The limit must be at least 1.");

    /// <summary>Requests in the server now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Admits a request; dispose the lease when it is answered. Null when the server is full.</summary>
    public IDisposable? TryEnter()
    {
        if (Interlocked.Increment(ref _inFlight) > Limit)
        {
            Interlocked.Decrement(ref _inFlight);
            return null;
        }
        return new Lease(this);
    }

    private sealed class Lease(Admission owner) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Interlocked.Decrement(ref owner._inFlight);
            }
        }
    }
}
