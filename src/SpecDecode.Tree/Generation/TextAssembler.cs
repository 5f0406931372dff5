using System.Text;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tree;

/// <summary>
/// Turns a request's generated token ids into text incrementally and finds stop strings: text is released only when it
/// is complete (no dangling part of a multi-byte character, no token that decodes only together with its successor) and
/// cannot be the beginning of a stop string.
/// </summary>
/// <remarks>
/// Decoding follows the prefix/read-offset scheme of Hugging Face's <c>TextStreamer</c> and vLLM's incremental
/// detokenizer: the newest tokens are decoded together with the few before them, and only the difference to the decoding
/// without the newest tokens is new text; a decoding that ends in U+FFFD (an incomplete UTF-8 sequence) waits for more
/// tokens. Each append costs the decoding of a handful of tokens, not of the whole response.
/// </remarks>
internal sealed class TextAssembler
{
    private readonly Tokenizer _tokenizer;
    private readonly string[] _stopStrings;
    private readonly int _holdBack;
    private readonly List<int> _ids = [];
    private readonly StringBuilder _text = new();
    private int _prefixOffset;
    private int _readOffset;
    private int _released;
    private int _searchedUpTo;

    public TextAssembler(Tokenizer tokenizer, IReadOnlyList<string> stopStrings)
    {
        _tokenizer = tokenizer;
        _stopStrings = [.. stopStrings];
        _holdBack = _stopStrings.Length == 0 ? 0 : _stopStrings.Max(s => s.Length) - 1;
    }

    /// <summary>The text so far (up to a stop string once one was found).</summary>
    public string Text => _text.ToString();

    /// <summary>True once a stop string was found; the text ends just before it.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Appends tokens; returns the text that can be released now (possibly empty).</summary>
    public string Append(IEnumerable<int> tokens)
    {
        if (Stopped)
        {
            return "";
        }
        _ids.AddRange(tokens);
        string prefix = Decode(_prefixOffset, _readOffset);
        string full = Decode(_prefixOffset, _ids.Count);
        if (full.Length > prefix.Length && !full.EndsWith('\uFFFD'))
        {
            _text.Append(full, prefix.Length, full.Length - prefix.Length);
            _prefixOffset = _readOffset;
            _readOffset = _ids.Count;
        }
        FindStopString();
        return Release(final: Stopped);
    }

    /// <summary>Releases whatever is held back (at the end of generation): complete text, held-back stop-string
    /// prefixes, and a trailing incomplete character as U+FFFD, as a full decode would show it.</summary>
    public string Flush()
    {
        if (!Stopped && _readOffset < _ids.Count)
        {
            string prefix = Decode(_prefixOffset, _readOffset);
            string full = Decode(_prefixOffset, _ids.Count);
            if (full.Length > prefix.Length)
            {
                _text.Append(full, prefix.Length, full.Length - prefix.Length);
            }
            _prefixOffset = _readOffset = _ids.Count;
            FindStopString();
        }
        return Release(final: true);
    }

    private string Decode(int from, int to) => from >= to ? "" : _tokenizer.Decode(_ids.GetRange(from, to - from)) ?? "";

    private void FindStopString()
    {
        if (_stopStrings.Length == 0 || Stopped)
        {
            return;
        }
        int start = Math.Max(0, _searchedUpTo - _holdBack);
        string window = _text.ToString(start, _text.Length - start);
        int best = -1;
        foreach (string stop in _stopStrings)
        {
            int at = window.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (best < 0 || at < best))
            {
                best = at;
            }
        }
        if (best >= 0)
        {
            _text.Length = start + best;
            Stopped = true;
        }
        _searchedUpTo = _text.Length;
    }

    private string Release(bool final)
    {
        int end = final ? _text.Length : Math.Max(_released, _text.Length - _holdBack);
        if (!final && end > _released && end < _text.Length && char.IsHighSurrogate(_text[end - 1]))
        {
            end--; // never split a surrogate pair
        }
        if (end <= _released)
        {
            return "";
        }
        string piece = _text.ToString(_released, end - _released);
        _released = end;
        return piece;
    }
}
