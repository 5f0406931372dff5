using System.Buffers.Binary;
using System.IO.Compression;
using System.Text.Json;

namespace SpecDecode.Replay;

/// <summary>
/// Streams a gzip JSONL trace file (one trajectory a line: <c>task_id</c>, <c>resolved</c>, <c>messages</c>,
/// <c>assistant_indices</c>) and yields each trajectory's calls tokenized per the replay protocol
/// (see <see cref="ProtocolTokenizer"/>). Nothing is decompressed to disk; one line is held in memory at a time.
/// </summary>
/// <remarks>
/// <para>Each message is tokenized once per trajectory, and prompts are built incrementally: prompt k+1 is prompt k,
/// response k, the footer, the pieces of the messages in between and the assistant header. Messages after the last
/// assistant index are validated but not tokenized.</para>
/// <para>Bad input (missing file, corrupt archive, truncated or malformed line, missing field, unknown role, empty
/// response, assistant index out of range) throws <see cref="TraceFormatException"/> naming the file and line. With
/// <see cref="SkipBad"/> a bad line is left out and recorded in <see cref="Skipped"/> instead; a missing file, a corrupt
/// archive and a requested task that is absent always throw.</para>
/// </remarks>
public sealed class TraceReader
{
    private readonly ProtocolTokenizer? _tokenizer;
    private readonly List<SkippedLine> _skipped = [];

    private TraceReader(string path, ProtocolTokenizer? tokenizer, TraceSelection selection, bool skipBad)
    {
        Path = path;
        _tokenizer = tokenizer;
        Selection = selection;
        SkipBad = skipBad;
    }

    /// <summary>Opens a trace file for reading.</summary>
    /// <param name="path">The <c>.jsonl.gz</c> file.</param>
    /// <param name="tokenizer">The protocol tokenizer; null for a reader that can only <see cref="Scan"/>.</param>
    /// <param name="selection">Which trajectories to read; null for all.</param>
    /// <param name="skipBad">Leave bad lines out (recorded in <see cref="Skipped"/>) instead of throwing.</param>
    /// <exception cref="TraceFormatException">The file does not exist (<see cref="TraceErrorKind.MissingFile"/>).</exception>
    public static TraceReader Open(string path, ProtocolTokenizer? tokenizer, TraceSelection? selection = null, bool skipBad = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw new TraceFormatException(TraceErrorKind.MissingFile, full, 0,
                "The trace file does not exist. Pass --traces PATH, or check that ../shared/data/swebench is present beside the repository.");
        }
        return new TraceReader(full, tokenizer, selection ?? TraceSelection.All, skipBad);
    }

    /// <summary>The trace file (full path).</summary>
    public string Path { get; }

    /// <summary>Which trajectories are read.</summary>
    public TraceSelection Selection { get; }

    /// <summary>Whether bad lines are skipped and recorded rather than thrown.</summary>
    public bool SkipBad { get; }

    /// <summary>Lines skipped by the most recent <see cref="Read"/> or <see cref="Scan"/> (only with <see cref="SkipBad"/>).</summary>
    public IReadOnlyList<SkippedLine> Skipped => _skipped;

    /// <summary>Reads and tokenizes the selected trajectories in file order. Each enumeration reads the file anew.</summary>
    /// <exception cref="TraceFormatException">Bad input (see the class remarks).</exception>
    /// <exception cref="InvalidOperationException">The reader was opened without a tokenizer.</exception>
    public IEnumerable<TraceTrajectory> Read()
    {
        if (_tokenizer is null)
        {
            throw new InvalidOperationException("This reader was opened without a tokenizer: it can only Scan.");
        }
        return ReadCore(_tokenizer);
    }

    /// <summary>Counts the selected trajectories and calls and validates every line, without tokenizing.</summary>
    /// <exception cref="TraceFormatException">Bad input (see the class remarks).</exception>
    public TraceScan Scan()
    {
        int trajectories = 0;
        long calls = 0;
        foreach (ParsedLine line in Lines())
        {
            trajectories++;
            calls += line.AssistantIndices.Length;
        }
        return new TraceScan(trajectories, calls, _skipped.ToArray());
    }

    private IEnumerable<TraceTrajectory> ReadCore(ProtocolTokenizer tokenizer)
    {
        var buffer = new TokenBuffer(1 << 16);
        foreach (ParsedLine line in Lines())
        {
            yield return Tokenize(line, tokenizer, buffer);
        }
    }

    private static TraceTrajectory Tokenize(ParsedLine line, ProtocolTokenizer tokenizer, TokenBuffer buffer)
    {
        buffer.Clear();
        int[] indices = line.AssistantIndices;
        var promptLengths = new int[indices.Length];
        var responseLengths = new int[indices.Length];
        int next = 0;
        for (int k = 0; k < indices.Length; k++)
        {
            int a = indices[k];
            if (k > 0)
            {
                // Close the previous response: prompt k+1 = prompt k + response k + footer + ...
                buffer.Append(tokenizer.FooterIds);
                next = indices[k - 1] + 1;
            }
            for (int m = next; m < a; m++)
            {
                buffer.Append(tokenizer.Header(line.Roles[m]));
                tokenizer.EncodeTo(line.Contents[m]!, buffer);
                buffer.Append(tokenizer.FooterIds);
            }
            buffer.Append(tokenizer.Header(MessageRole.Assistant));
            promptLengths[k] = buffer.Count;
            responseLengths[k] = tokenizer.EncodeTo(line.Contents[a]!, buffer);
            if (responseLengths[k] == 0)
            {
                // Non-empty text always gives tokens; kept as a guard for the protocol's invariant.
                throw new InvalidOperationException($"{line.TaskId} call {k}: the response tokenized to no ids.");
            }
        }
        int[] tokens = buffer.ToArray();
        var calls = new TraceCall[indices.Length];
        for (int k = 0; k < calls.Length; k++)
        {
            calls[k] = new TraceCall(k, tokens, promptLengths[k], responseLengths[k]);
        }
        return new TraceTrajectory(line.TaskId, line.Resolved, line.LineNumber, tokens, calls);
    }

    /// <summary>Yields each selected, valid line parsed; records or throws for bad ones.</summary>
    private IEnumerable<ParsedLine> Lines()
    {
        _skipped.Clear();
        using var file = new FileStream(Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        uint expectedSize = ReadGzipTrailer(file);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        var lines = new JsonLineReader(gzip);
        int records = 0;
        var pendingTasks = Selection.TaskIds is { Count: > 0 } ids ? new HashSet<string>(ids, StringComparer.Ordinal) : null;
        bool stoppedEarly = false;
        while (true)
        {
            if (Selection.First is int first && records >= first)
            {
                stoppedEarly = true;
                break;
            }
            if (pendingTasks is { Count: 0 })
            {
                stoppedEarly = true;
                break;
            }
            ReadOnlyMemory<byte> bytes;
            bool terminated;
            try
            {
                if (!lines.TryReadLine(out bytes, out terminated))
                {
                    break;
                }
            }
            catch (InvalidDataException ex)
            {
                throw new TraceFormatException(TraceErrorKind.CorruptArchive, Path, lines.LineNumber + 1,
                    "The gzip data is corrupt: " + ex.Message, ex);
            }
            if (bytes.Span.Trim(" \t\r"u8).IsEmpty)
            {
                continue;
            }
            records++;
            ParsedLine? parsed;
            try
            {
                parsed = Parse(bytes, terminated, lines.LineNumber, pendingTasks);
            }
            catch (TraceFormatException ex) when (SkipBad)
            {
                _skipped.Add(new SkippedLine(ex.LineNumber, ex.Kind, ex.Detail));
                continue;
            }
            if (parsed is null)
            {
                // Not selected (another task): does not count towards --first.
                records--;
                continue;
            }
            pendingTasks?.Remove(parsed.TaskId);
            yield return parsed;
        }
        if (!stoppedEarly && (uint)lines.BytesRead != expectedSize)
        {
            throw new TraceFormatException(TraceErrorKind.CorruptArchive, Path, lines.LineNumber,
                $"The archive ends early: {lines.BytesRead} bytes decompressed, but its gzip trailer records {expectedSize} (mod 2^32). " +
                "The file is truncated, or holds several gzip members; re-create it with one gzip member.");
        }
        if (pendingTasks is { Count: > 0 })
        {
            throw new TraceFormatException(TraceErrorKind.TaskNotFound, Path, 0,
                "No trajectory has task_id " + string.Join(", ", pendingTasks.Order(StringComparer.Ordinal)) + ": check --task.");
        }
    }

    private uint ReadGzipTrailer(FileStream file)
    {
        Span<byte> head = stackalloc byte[2];
        if (file.Length < 18 || file.Read(head) != 2 || head[0] != 0x1f || head[1] != 0x8b)
        {
            throw new TraceFormatException(TraceErrorKind.CorruptArchive, Path, 0, "The file is not gzip data (expected a .jsonl.gz file).");
        }
        Span<byte> trailer = stackalloc byte[4];
        file.Seek(-4, SeekOrigin.End);
        file.ReadExactly(trailer);
        file.Seek(0, SeekOrigin.Begin);
        return BinaryPrimitives.ReadUInt32LittleEndian(trailer);
    }

    private ParsedLine? Parse(ReadOnlyMemory<byte> bytes, bool terminated, long lineNumber, HashSet<string>? pendingTasks)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes);
        }
        catch (JsonException ex)
        {
            int length = bytes.Span.TrimEnd(" \t\r"u8).Length;
            bool atEnd = ex.BytePositionInLine is long at && at >= length;
            if (!terminated || atEnd)
            {
                throw Error(TraceErrorKind.TruncatedLine, lineNumber,
                    $"The line ends in the middle of a JSON value after {length} bytes{(terminated ? "" : " (and the file ends without a newline)")}: {ex.Message}", ex);
            }
            throw Error(TraceErrorKind.MalformedJson, lineNumber, "The line is not valid JSON: " + ex.Message, ex);
        }
        using (document)
        {
            try
            {
                return Parse(document.RootElement, lineNumber, pendingTasks);
            }
            catch (InvalidOperationException ex)
            {
                // JsonElement.GetString throws this for an escape that is not valid UTF-16 (a lone surrogate, \ud800).
                throw Error(TraceErrorKind.MalformedJson, lineNumber, "A string of the line is not valid text: " + ex.Message, ex);
            }
        }
    }

    private ParsedLine? Parse(JsonElement root, long lineNumber, HashSet<string>? pendingTasks)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw Error(TraceErrorKind.MissingField, lineNumber, $"The line is a JSON {root.ValueKind}, not an object.");
        }
        string taskId = RequireString(root, "task_id", lineNumber);
        if (!Selection.IncludesTask(taskId) || (pendingTasks is not null && !pendingTasks.Contains(taskId)))
        {
            return null;
        }
        bool resolved = root.TryGetProperty("resolved", out JsonElement r) && r.ValueKind == JsonValueKind.True;
        JsonElement messages = RequireProperty(root, "messages", JsonValueKind.Array, lineNumber);
        JsonElement indicesElement = RequireProperty(root, "assistant_indices", JsonValueKind.Array, lineNumber);

        int messageCount = messages.GetArrayLength();
        var roles = new MessageRole[messageCount];
        int m = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            if (message.ValueKind != JsonValueKind.Object)
            {
                throw Error(TraceErrorKind.MissingField, lineNumber, $"{taskId}: messages[{m}] is a JSON {message.ValueKind}, not an object.");
            }
            string role = RequireString(message, "role", lineNumber, $"messages[{m}].");
            if (!MessageRoles.TryParse(role, out roles[m]))
            {
                throw Error(TraceErrorKind.UnknownRole, lineNumber,
                    $"{taskId}: messages[{m}] has role \"{role}\"; the protocol knows system, user and assistant.");
            }
            m++;
        }

        int[] indices = new int[indicesElement.GetArrayLength()];
        int k = 0;
        foreach (JsonElement index in indicesElement.EnumerateArray())
        {
            if (index.ValueKind != JsonValueKind.Number || !index.TryGetInt32(out int a))
            {
                throw Error(TraceErrorKind.BadAssistantIndex, lineNumber, $"{taskId}: assistant_indices[{k}] is not an integer.");
            }
            if (a < 0 || a >= messageCount)
            {
                throw Error(TraceErrorKind.BadAssistantIndex, lineNumber,
                    $"{taskId}: assistant_indices[{k}] = {a} is out of range: the trajectory has {messageCount} messages.");
            }
            if (k > 0 && a <= indices[k - 1])
            {
                throw Error(TraceErrorKind.BadAssistantIndex, lineNumber,
                    $"{taskId}: assistant_indices[{k}] = {a} does not follow {indices[k - 1]}: indices must increase.");
            }
            if (roles[a] != MessageRole.Assistant)
            {
                throw Error(TraceErrorKind.BadAssistantIndex, lineNumber,
                    $"{taskId}: assistant_indices[{k}] = {a} names a {roles[a].ToName()} message, not an assistant one.");
            }
            indices[k++] = a;
        }

        // Contents up to the last response are needed; the rest only validated.
        int needed = indices.Length == 0 ? 0 : indices[^1] + 1;
        var contents = new string?[needed];
        m = 0;
        k = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
            {
                throw Error(TraceErrorKind.MissingField, lineNumber,
                    $"{taskId}: messages[{m}] has no string field \"content\".");
            }
            bool isResponse = k < indices.Length && indices[k] == m;
            if (isResponse)
            {
                if (content.ValueEquals(ReadOnlySpan<byte>.Empty))
                {
                    throw Error(TraceErrorKind.EmptyResponse, lineNumber,
                        $"{taskId}: call {k} (messages[{m}]) has an empty response: there is no token to replay.");
                }
                k++;
            }
            if (m < needed && _tokenizer is not null)
            {
                contents[m] = content.GetString();
            }
            m++;
        }
        return new ParsedLine(taskId, resolved, lineNumber, roles, contents, indices);
    }

    private string RequireString(JsonElement obj, string name, long lineNumber, string where = "")
    {
        if (!obj.TryGetProperty(name, out JsonElement value) || value.ValueKind != JsonValueKind.String)
        {
            throw Error(TraceErrorKind.MissingField, lineNumber, $"No string field \"{where}{name}\".");
        }
        return value.GetString()!;
    }

    private JsonElement RequireProperty(JsonElement obj, string name, JsonValueKind kind, long lineNumber)
    {
        if (!obj.TryGetProperty(name, out JsonElement value) || value.ValueKind != kind)
        {
            throw Error(TraceErrorKind.MissingField, lineNumber, $"No {kind.ToString().ToLowerInvariant()} field \"{name}\".");
        }
        return value;
    }

    private TraceFormatException Error(TraceErrorKind kind, long lineNumber, string detail, Exception? inner = null) =>
        new(kind, Path, lineNumber, detail, inner);

    private sealed record ParsedLine(string TaskId, bool Resolved, long LineNumber, MessageRole[] Roles, string?[] Contents, int[] AssistantIndices);
}
