using System.Buffers.Binary;
using System.Text;

namespace SpecDecode.Fleet;

/// <summary>
/// The wire format of a <see cref="SharedResponse"/>: little-endian, self-describing, checked on decode so that a
/// malformed or truncated message is refused instead of ingested.
/// </summary>
/// <remarks>
/// Layout: magic <c>SDFR</c>, format version (1 byte, 1), message id (16 bytes), origin, model and tokenizer (each a
/// 2-byte length and UTF-8), token count (4 bytes), token ids (4 bytes each). A response of n tokens takes about
/// <c>4n + 60</c> bytes; token ids are kept fixed-width so that encoding and decoding are plain copies.
/// </remarks>
public static class SharedResponseCodec
{
    /// <summary>The format version this codec writes and reads.</summary>
    public const byte Version = 1;

    /// <summary>Most tokens one message may carry (16 M, 64 MB).</summary>
    public const int MaxTokens = 16 << 20;

    private static ReadOnlySpan<byte> Magic => "SDFR"u8;

    /// <summary>Encodes a response.</summary>
    /// <exception cref="ArgumentException">The identity is invalid, the origin is empty or too long, a token is negative,
    /// or there are more than <see cref="MaxTokens"/> tokens.</exception>
    public static byte[] Encode(SharedResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        response.Identity.Validate();
        if (string.IsNullOrWhiteSpace(response.Origin) || Encoding.UTF8.GetByteCount(response.Origin) > FleetIdentity.MaxPartBytes)
        {
            throw new ArgumentException($"The origin must name the replica in 1 to {FleetIdentity.MaxPartBytes} UTF-8 bytes.", nameof(response));
        }
        int[] tokens = response.Tokens;
        if (tokens.Length > MaxTokens)
        {
            throw new ArgumentException($"{tokens.Length} tokens exceed the {MaxTokens} a message may carry.", nameof(response));
        }
        byte[] origin = Encoding.UTF8.GetBytes(response.Origin);
        byte[] model = Encoding.UTF8.GetBytes(response.Identity.Model);
        byte[] tokenizer = Encoding.UTF8.GetBytes(response.Identity.Tokenizer);
        var buffer = new byte[4 + 1 + 16 + 6 + origin.Length + model.Length + tokenizer.Length + 4 + 4 * tokens.Length];
        Span<byte> s = buffer;
        Magic.CopyTo(s);
        s[4] = Version;
        response.MessageId.TryWriteBytes(s[5..21]);
        int at = 21;
        foreach (byte[] part in new[] { origin, model, tokenizer })
        {
            BinaryPrimitives.WriteUInt16LittleEndian(s[at..], (ushort)part.Length);
            part.CopyTo(s[(at + 2)..]);
            at += 2 + part.Length;
        }
        BinaryPrimitives.WriteInt32LittleEndian(s[at..], tokens.Length);
        at += 4;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (tokens[i] < 0)
            {
                throw new ArgumentException($"Token {i} is negative ({tokens[i]}): token ids are non-negative.", nameof(response));
            }
            BinaryPrimitives.WriteInt32LittleEndian(s[(at + 4 * i)..], tokens[i]);
        }
        return buffer;
    }

    /// <summary>Decodes a message, or says why it is malformed.</summary>
    /// <param name="data">The message body.</param>
    /// <param name="response">The response when the message is well formed.</param>
    /// <param name="error">Why it is not, when it is not.</param>
    /// <returns>True when the message is a well-formed response of this format version.</returns>
    public static bool TryDecode(ReadOnlySpan<byte> data, out SharedResponse? response, out string? error)
    {
        response = null;
        if (data.Length < 31 || !data[..4].SequenceEqual(Magic))
        {
            error = "not a SpecDecode shared response (bad magic or too short)";
            return false;
        }
        if (data[4] != Version)
        {
            error = $"format version {data[4]}, this reader knows {Version}";
            return false;
        }
        var id = new Guid(data[5..21]);
        int at = 21;
        var parts = new string[3];
        for (int p = 0; p < 3; p++)
        {
            if (at + 2 > data.Length)
            {
                error = "truncated header";
                return false;
            }
            int length = BinaryPrimitives.ReadUInt16LittleEndian(data[at..]);
            if (length == 0 || length > FleetIdentity.MaxPartBytes || at + 2 + length > data.Length)
            {
                error = "bad origin, model or tokenizer length";
                return false;
            }
            try
            {
                parts[p] = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data.Slice(at + 2, length));
            }
            catch (DecoderFallbackException)
            {
                error = "origin, model or tokenizer is not UTF-8";
                return false;
            }
            at += 2 + length;
        }
        if (at + 4 > data.Length)
        {
            error = "truncated token count";
            return false;
        }
        int count = BinaryPrimitives.ReadInt32LittleEndian(data[at..]);
        at += 4;
        if (count < 0 || count > MaxTokens || data.Length - at != 4L * count)
        {
            error = $"token count {count} does not match the {data.Length - at} bytes that follow";
            return false;
        }
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            int t = BinaryPrimitives.ReadInt32LittleEndian(data[(at + 4 * i)..]);
            if (t < 0)
            {
                error = $"token {i} is negative";
                return false;
            }
            tokens[i] = t;
        }
        if (string.IsNullOrWhiteSpace(parts[0]) || string.IsNullOrWhiteSpace(parts[1]) || string.IsNullOrWhiteSpace(parts[2]))
        {
            error = "empty origin, model or tokenizer";
            return false;
        }
        response = new SharedResponse(id, parts[0], new FleetIdentity(parts[1], parts[2]), tokens);
        error = null;
        return true;
    }
}
