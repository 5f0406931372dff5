using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// A tokenizer for tiny test models: ids 0..255 are the UTF-8 bytes, ids from 256 on decode to <c>&lt;id&gt;</c>, so any
/// token a model of any vocabulary emits decodes, a multi-byte character spans several tokens (the incremental decoder
/// must not split it), and every stop string spans tokens.
/// </summary>
internal sealed class ByteTokenizer : Tokenizer
{
    public static readonly ByteTokenizer Instance = new();

    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        string s = text ?? textSpan.ToString();
        var tokens = new List<EncodedToken>();
        int offset = 0;
        Span<byte> bytes = stackalloc byte[4];
        foreach (Rune rune in s.EnumerateRunes())
        {
            int n = rune.EncodeToUtf8(bytes);
            for (int i = 0; i < n; i++)
            {
                tokens.Add(new EncodedToken(bytes[i], ((char)bytes[i]).ToString(), new Range(offset, offset + rune.Utf16SequenceLength)));
            }
            offset += rune.Utf16SequenceLength;
        }
        return new EncodeResults<EncodedToken> { Tokens = tokens, CharsConsumed = s.Length };
    }

    public override string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (id < 256)
            {
                bytes.Add((byte)id);
            }
            else
            {
                bytes.AddRange(Encoding.ASCII.GetBytes($"<{id}>"));
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        int[] all = ids.ToArray();
        string text = Decode(all);
        if (text.Length > destination.Length)
        {
            idsConsumed = 0;
            charsWritten = 0;
            return OperationStatus.DestinationTooSmall;
        }
        text.CopyTo(destination);
        idsConsumed = all.Length;
        charsWritten = text.Length;
        return OperationStatus.Done;
    }
}
