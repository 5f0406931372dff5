namespace SpecDecode.Replay;

/// <summary>What is wrong with a trace file or one of its lines.</summary>
public enum TraceErrorKind
{
    /// <summary>The trace file does not exist.</summary>
    MissingFile,

    /// <summary>The gzip archive is corrupt or ends early (its data cannot all be read).</summary>
    CorruptArchive,

    /// <summary>The last line of the file ends in the middle of a JSON object.</summary>
    TruncatedLine,

    /// <summary>A line is not valid JSON.</summary>
    MalformedJson,

    /// <summary>A required field is missing or has the wrong JSON type.</summary>
    MissingField,

    /// <summary>A message has a role other than <c>system</c>, <c>user</c> or <c>assistant</c>.</summary>
    UnknownRole,

    /// <summary>An entry of <c>assistant_indices</c> is outside <c>messages</c>, not increasing, or names a non-assistant message.</summary>
    BadAssistantIndex,

    /// <summary>An assistant message named by <c>assistant_indices</c> has no content (no token to replay).</summary>
    EmptyResponse,

    /// <summary>A task id asked for by the selection is not in the file.</summary>
    TaskNotFound,
}

/// <summary>
/// Thrown when a trace file cannot be read as the replay protocol requires. The message names the file and the
/// 1-based line number (0 when the problem is the file itself).
/// </summary>
public sealed class TraceFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="kind">What is wrong.</param>
    /// <param name="path">The trace file.</param>
    /// <param name="lineNumber">1-based line number, or 0 for the file as a whole.</param>
    /// <param name="detail">What was found and, where it helps, how to fix it.</param>
    /// <param name="inner">The underlying parser or I/O error, if any.</param>
    public TraceFormatException(TraceErrorKind kind, string path, long lineNumber, string detail, Exception? inner = null)
        : base(Format(kind, path, lineNumber, detail), inner)
    {
        Kind = kind;
        Path = path;
        LineNumber = lineNumber;
        Detail = detail;
    }

    /// <summary>What is wrong.</summary>
    public TraceErrorKind Kind { get; }

    /// <summary>The trace file.</summary>
    public string Path { get; }

    /// <summary>1-based line number, or 0 when the problem is the file as a whole.</summary>
    public long LineNumber { get; }

    /// <summary>The message without the file and line prefix.</summary>
    public string Detail { get; }

    private static string Format(TraceErrorKind kind, string path, long lineNumber, string detail) =>
        lineNumber > 0 ? $"{path}:{lineNumber}: {kind}: {detail}" : $"{path}: {kind}: {detail}";
}
