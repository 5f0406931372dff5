namespace SpecDecode.Tokenization;

/// <summary>
/// GPT-2's reversible byte-to-character table that byte-level BPE vocabularies are written in: printable bytes
/// (<c>!</c>..<c>~</c>, <c>¡</c>..<c>¬</c>, <c>®</c>..<c>ÿ</c>) stand for themselves, the other 68 bytes map in order to
/// U+0100.. (so a space is <c>Ġ</c>, U+0120, and a newline <c>Ċ</c>, U+010A).
/// </summary>
/// <remarks>Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", <c>bytes_to_unicode</c> in
/// openai/gpt-2 <c>src/encoder.py</c>.</remarks>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildTable();
    private static readonly Dictionary<char, byte> CharToByte =
        Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)next++;
        }

        return table;
    }

    /// <summary>The character that stands for byte <paramref name="b"/>.</summary>
    public static char ToChar(byte b) => ByteToChar[b];

    /// <summary>Turns a vocabulary entry back into its bytes; false if a character is outside the alphabet (the entry is
    /// then not byte-level).</summary>
    public static bool TryGetBytes(string token, out byte[] bytes)
    {
        bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out bytes[i]))
            {
                return false;
            }
        }

        return true;
    }
}
