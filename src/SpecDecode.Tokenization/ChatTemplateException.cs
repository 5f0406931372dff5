namespace SpecDecode.Tokenization;

/// <summary>
/// Thrown by <see cref="ChatTemplate"/> for a chat template that cannot be used: malformed JSON or Jinja syntax, syntax
/// or a filter this interpreter does not implement, a runtime error while rendering (an undefined value used where Jinja
/// raises, a type error), or the template's own <c>raise_exception(message)</c>. The message says what is wrong and
/// where (line and column of the template); the interpreter never renders output that might differ from Jinja's.
/// </summary>
public sealed class ChatTemplateException : SpecDecodeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The whole message.</param>
    /// <param name="line">The template line (1-based) the error is at, or null when it is not about one place.</param>
    /// <param name="column">The column (1-based) in that line, or null.</param>
    /// <param name="raisedByTemplate">Whether the template raised it with <c>raise_exception</c>.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public ChatTemplateException(string message, int? line = null, int? column = null, bool raisedByTemplate = false, Exception? inner = null)
        : base(message, inner)
    {
        Line = line;
        Column = column;
        RaisedByTemplate = raisedByTemplate;
    }

    /// <summary>The template line (1-based) of the error, or null.</summary>
    public int? Line { get; }

    /// <summary>The column (1-based) of the error in <see cref="Line"/>, or null.</summary>
    public int? Column { get; }

    /// <summary>True when the template itself raised the error with <c>raise_exception(message)</c> (for example on
    /// roles that do not alternate); <see cref="Exception.Message"/> is then exactly the template's message.</summary>
    public bool RaisedByTemplate { get; }
}
