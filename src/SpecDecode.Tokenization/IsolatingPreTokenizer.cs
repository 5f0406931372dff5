using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tokenization;

/// <summary>
/// The pre-tokenizer of a Hugging Face byte-level BPE: added (special) tokens are cut out first, leftmost and longest
/// first, and become pieces of their own; the text between them goes through each split regex in turn, every match and
/// every stretch between matches becoming a piece (the tokenizers library's <c>Split</c> with behaviour
/// <c>Isolated</c>, and <c>ByteLevel</c> with <c>use_regex</c>).
/// </summary>
/// <remarks>Written here because <see cref="RegexPreTokenizer"/> drops the text between matches, which the
/// tokenizers library keeps; with the usual Llama 3 / Qwen2 patterns every character matches, so the two agree there,
/// but a pattern that leaves gaps would silently lose text.</remarks>
internal sealed class IsolatingPreTokenizer : PreTokenizer
{
    private readonly Regex[] _levels;
    private readonly Regex? _specialTokens;

    /// <summary>Creates the pre-tokenizer.</summary>
    /// <param name="levels">The split regexes, applied one after the other (each to the pieces of the one before).</param>
    /// <param name="specialTokens">The added tokens to cut out before splitting; null or empty for none.</param>
    public IsolatingPreTokenizer(IReadOnlyList<Regex> levels, IEnumerable<string>? specialTokens)
    {
        _levels = levels.ToArray();
        string[] tokens = specialTokens?.Where(t => t.Length > 0).OrderByDescending(t => t.Length).ThenBy(t => t, StringComparer.Ordinal).ToArray() ?? [];
        _specialTokens = tokens.Length == 0
            ? null
            : new Regex(string.Join("|", tokens.Select(Regex.Escape)), RegexOptions.CultureInvariant | RegexOptions.Compiled);
    }

    /// <summary>Splits <paramref name="text"/> into (offset, length) pieces that cover it in order.</summary>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
        string.IsNullOrEmpty(text) ? [] : Split(text.AsSpan());

    /// <summary>Splits <paramref name="text"/> into (offset, length) pieces that cover it in order.</summary>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) =>
        text.IsEmpty ? [] : Split(text);

    private List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        int start = 0;
        if (_specialTokens is not null)
        {
            foreach (ValueMatch m in _specialTokens.EnumerateMatches(text))
            {
                SplitLevel(text, start, m.Index - start, 0, pieces);
                pieces.Add((m.Index, m.Length));
                start = m.Index + m.Length;
            }
        }

        SplitLevel(text, start, text.Length - start, 0, pieces);
        return pieces;
    }

    private void SplitLevel(ReadOnlySpan<char> text, int offset, int length, int level, List<(int Offset, int Length)> pieces)
    {
        if (length == 0)
        {
            return;
        }

        if (level == _levels.Length)
        {
            pieces.Add((offset, length));
            return;
        }

        ReadOnlySpan<char> segment = text.Slice(offset, length);
        int done = 0;
        foreach (ValueMatch m in _levels[level].EnumerateMatches(segment))
        {
            if (m.Length == 0)
            {
                continue;
            }

            SplitLevel(text, offset + done, m.Index - done, level + 1, pieces);
            SplitLevel(text, offset + m.Index, m.Length, level + 1, pieces);
            done = m.Index + m.Length;
        }

        SplitLevel(text, offset + done, length - done, level + 1, pieces);
    }
}
