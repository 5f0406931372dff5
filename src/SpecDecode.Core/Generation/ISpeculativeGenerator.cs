namespace SpecDecode;

/// <summary>
/// Generates text with speculative decoding: requests in, tokens and text out, with per-request and engine-wide
/// statistics. Implementations batch the requests that are active at the same time.
/// </summary>
/// <remarks>Thread-safe: any number of callers may submit at once.</remarks>
public interface ISpeculativeGenerator
{
    /// <summary>Generates to completion.</summary>
    /// <exception cref="ArgumentException">The request is malformed (see <see cref="GenerationRequest.Validate"/>).</exception>
    /// <exception cref="RequestRejectedException">The request can never be served (e.g. its prompt does not fit the context).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the engine goes on
    /// serving the other requests.</exception>
    Task<GenerationResult> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default);

    /// <summary>Generates and streams the text as it is produced; the last chunk carries the result.</summary>
    /// <exception cref="ArgumentException">The request is malformed.</exception>
    /// <exception cref="RequestRejectedException">The request can never be served.</exception>
    /// <exception cref="OperationCanceledException">The enumeration was cancelled.</exception>
    IAsyncEnumerable<GenerationChunk> StreamAsync(GenerationRequest request, CancellationToken cancellationToken = default);

    /// <summary>Counters since the engine started.</summary>
    EngineStatistics Statistics { get; }
}

/// <summary>A request the engine can never serve as asked (it is refused, never truncated silently).</summary>
public sealed class RequestRejectedException : SpecDecodeException
{
    /// <summary>Creates the exception with a message that says what to change.</summary>
    /// <param name="message">Why the request cannot be served and what to change.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public RequestRejectedException(string message, Exception? inner = null) : base(message, inner) { }
}
