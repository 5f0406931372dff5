namespace SpecDecode;

/// <summary>Thrown when a draft tree's arrays do not describe a valid token tree (see <see cref="DraftTree"/>).</summary>
public sealed class InvalidDraftTreeException : ArgumentException
{
    /// <summary>Creates the exception with a message that says what is wrong and how to fix it.</summary>
    public InvalidDraftTreeException(string message) : base(message) { }
}

/// <summary>
/// Thrown when a drafter or engine is asked about a request it does not know: it was never started, it has already
/// ended, or the id is <see cref="RequestId.Invalid"/>.
/// </summary>
public sealed class UnknownRequestException : InvalidOperationException
{
    /// <summary>Creates the exception for <paramref name="request"/>.</summary>
    public UnknownRequestException(RequestId request, string owner)
        : base($"{owner}: request {request} is not active. Call StartRequest first; after EndRequest the id may be started again.")
    {
        Request = request;
    }

    /// <summary>The request that was not found.</summary>
    public RequestId Request { get; }
}

/// <summary>Thrown when a request id is started while a request with the same id is still active.</summary>
public sealed class DuplicateRequestException : InvalidOperationException
{
    /// <summary>Creates the exception for <paramref name="request"/>.</summary>
    public DuplicateRequestException(RequestId request, string owner)
        : base($"{owner}: request {request} is already active. End it with EndRequest before starting it again, or use a new id.")
    {
        Request = request;
    }

    /// <summary>The request id that was already active.</summary>
    public RequestId Request { get; }
}
