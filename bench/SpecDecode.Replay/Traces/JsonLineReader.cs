namespace SpecDecode.Replay;

/// <summary>
/// Splits a stream into lines of bytes without decoding them, with 1-based line numbers. One growable buffer serves
/// every line; a returned line is valid until the next call.
/// </summary>
internal sealed class JsonLineReader
{
    private readonly Stream _stream;
    private byte[] _buffer;
    private int _start, _end;
    private bool _eof;

    public JsonLineReader(Stream stream, int initialBufferSize = 1 << 20)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(initialBufferSize, 16);
        _stream = stream;
        _buffer = new byte[initialBufferSize];
    }

    /// <summary>Line number of the line returned last (0 before the first).</summary>
    public long LineNumber { get; private set; }

    /// <summary>Decompressed bytes read from the stream so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>Reads the next line, without its terminating <c>\n</c>.</summary>
    /// <param name="line">The line's bytes; valid until the next call.</param>
    /// <param name="terminated">False for a last line that ends without <c>\n</c>.</param>
    /// <returns>False at the end of the stream.</returns>
    public bool TryReadLine(out ReadOnlyMemory<byte> line, out bool terminated)
    {
        int scanFrom = _start;
        while (true)
        {
            int newline = _buffer.AsSpan(scanFrom, _end - scanFrom).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                int lineEnd = scanFrom + newline;
                line = _buffer.AsMemory(_start, lineEnd - _start);
                _start = lineEnd + 1;
                terminated = true;
                LineNumber++;
                return true;
            }
            if (_eof)
            {
                if (_end > _start)
                {
                    line = _buffer.AsMemory(_start, _end - _start);
                    _start = _end;
                    terminated = false;
                    LineNumber++;
                    return true;
                }
                line = default;
                terminated = true;
                return false;
            }
            scanFrom = _end;
            Fill(ref scanFrom);
        }
    }

    private void Fill(ref int scanFrom)
    {
        if (_start > 0)
        {
            // Move the partial line to the front.
            int length = _end - _start;
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, length);
            scanFrom -= _start;
            _start = 0;
            _end = length;
        }
        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, checked(_buffer.Length * 2));
        }
        int read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0)
        {
            _eof = true;
        }
        _end += read;
        BytesRead += read;
    }
}
