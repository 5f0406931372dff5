using System.Text;

namespace SpecDecode.Train.Tokenizer;

/// <summary>
/// GPT-2's byte-level alphabet: each of the 256 byte values as one printable character, so that any UTF-8 text becomes a
/// string over 256 characters. Printable bytes (<c>'!'..'~'</c>, <c>'¡'..'¬'</c>, <c>'®'..'ÿ'</c>) map to the character
/// of the same code; the other 68 (controls, space, 0x7F-0xA0, 0xAD) map in order to U+0100, U+0101, ... (space becomes
/// <c>'Ġ'</c> U+0120, newline <c>'Ċ'</c> U+010A).
/// </summary>
/// <remarks>openai/gpt-2 <c>encoder.py</c> <c>bytes_to_unicode</c>; the same table is the <c>ByteLevel</c>
/// pre-tokenizer and decoder of Hugging Face tokenizers.</remarks>
public static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildTable();

    /// <summary>The character of byte <paramref name="value"/>.</summary>
    public static char ToChar(byte value) => ByteToChar[value];

    /// <summary>The byte-level string of UTF-8 <paramref name="bytes"/>: one character per byte.</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (chars, data) =>
        {
            for (int i = 0; i < data.Length; i++)
            {
                chars[i] = ByteToChar[data[i]];
            }
        });
    }

    /// <summary>The byte-level string of <paramref name="text"/>'s UTF-8 encoding.</summary>
    public static string Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Encode(Encoding.UTF8.GetBytes(text));
    }

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + next++);
        }
        return table;
    }
}
