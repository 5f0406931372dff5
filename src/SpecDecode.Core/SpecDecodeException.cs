namespace SpecDecode;

/// <summary>
/// The base of the errors SpecDecode raises itself when it refuses input or an operation: files it cannot load
/// (safetensors, config.json, tokenizer files, chat templates), requests it cannot serve, a model already in use, a
/// plug-in (drafter, tokenizer, policy) that failed. A host catches "SpecDecode refused this" in one clause.
/// </summary>
/// <remarks>
/// Misuse that .NET already names keeps its .NET type, so that a caller's existing handlers still apply: bad arguments
/// (<see cref="ArgumentException"/>, e.g. <see cref="InvalidDraftTreeException"/>), a drafter asked about a request it
/// does not know (<see cref="InvalidOperationException"/>: <see cref="UnknownRequestException"/>,
/// <see cref="DuplicateRequestException"/>), a disposed object (<see cref="ObjectDisposedException"/>) and a cancelled
/// request (<see cref="OperationCanceledException"/>). Modelled on System.Threading.Channels'
/// <c>ChannelClosedException</c>.
/// </remarks>
public abstract class SpecDecodeException : Exception
{
    /// <summary>Creates the exception with a message that says what is wrong and what to do.</summary>
    /// <param name="message">What is wrong and what to do.</param>
    /// <param name="inner">The underlying error, if any.</param>
    protected SpecDecodeException(string message, Exception? inner = null) : base(message, inner) { }
}
