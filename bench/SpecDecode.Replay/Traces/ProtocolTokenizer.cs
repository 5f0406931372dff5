using System.IO.Compression;
using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Replay;

/// <summary>
/// Tokenizes trace messages as the replay protocol requires: <c>o200k_base</c> with no special tokens, each message as
/// three separately tokenized pieces, header <c>"&lt;|im_start|&gt;" + role + "\n"</c>, content, footer
/// <c>"&lt;|im_end|&gt;\n"</c>. The header and footer are ordinary text (the chat markers become several ordinary
/// tokens), and their ids are computed once per role.
/// </summary>
/// <remarks>
/// <para>"No special tokens" means the text <c>&lt;|endoftext|&gt;</c> inside a message is tokenized as text, as
/// tiktoken's <c>encode_ordinary</c> does; <see cref="TiktokenTokenizer.CreateForModel(string, IReadOnlyDictionary{string, int}?, Normalizer?)"/>
/// would map it to id 199999. The vocabulary comes from the Microsoft.ML.Tokenizers.Data.O200kBase package and the
/// pre-tokenizer uses the o200k_base split pattern; on text without special markers the ids equal gpt-4o's.</para>
/// <para>Not thread-safe (the tokenizer's piece cache is shared); use one instance per thread.</para>
/// </remarks>
public sealed partial class ProtocolTokenizer
{
    /// <summary>The header text before a role name.</summary>
    public const string ImStart = "<|im_start|>";

    /// <summary>The footer text after every message's content.</summary>
    public const string Footer = "<|im_end|>\n";

    private readonly Tokenizer _tokenizer;
    private readonly int[][] _headers;
    private readonly int[] _footer;

    private ProtocolTokenizer(Tokenizer tokenizer)
    {
        _tokenizer = tokenizer;
        _headers = new int[3][];
        foreach (MessageRole role in Enum.GetValues<MessageRole>())
        {
            _headers[(int)role] = Encode(HeaderText(role));
        }
        _footer = Encode(Footer);
    }

    /// <summary>Creates the protocol tokenizer over <c>o200k_base</c> without special tokens.</summary>
    /// <exception cref="InvalidOperationException">The O200kBase data package is not deployed with the application.</exception>
    public static ProtocolTokenizer CreateO200kBase()
    {
        var assembly = Assembly.Load("Microsoft.ML.Tokenizers.Data.O200kBase");
        using Stream compressed = assembly.GetManifestResourceStream("o200k_base.tiktoken.deflate")
            ?? throw new InvalidOperationException(
                "The Microsoft.ML.Tokenizers.Data.O200kBase assembly has no o200k_base.tiktoken.deflate resource: reference the 2.0.x package.");
        using var vocab = new DeflateStream(compressed, CompressionMode.Decompress);
        var preTokenizer = new RegexPreTokenizer(O200kBaseSplit(), specialTokens: null);
        TiktokenTokenizer tokenizer = TiktokenTokenizer.Create(vocab, preTokenizer, normalizer: null, specialTokens: null);
        return new ProtocolTokenizer(tokenizer);
    }

    /// <summary>The header text of <paramref name="role"/>: <c>"&lt;|im_start|&gt;" + role + "\n"</c>.</summary>
    public static string HeaderText(MessageRole role) => ImStart + role.ToName() + "\n";

    /// <summary>The cached ids of the header of <paramref name="role"/>.</summary>
    public ReadOnlySpan<int> Header(MessageRole role) => _headers[(int)role];

    /// <summary>The cached ids of the footer <c>"&lt;|im_end|&gt;\n"</c>.</summary>
    public ReadOnlySpan<int> FooterIds => _footer;

    /// <summary>Tokenizes <paramref name="text"/> as plain text (no special tokens).</summary>
    /// <returns>The token ids; empty for empty text.</returns>
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0)
        {
            return [];
        }
        IReadOnlyList<int> ids = _tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false);
        var result = new int[ids.Count];
        for (int i = 0; i < result.Length; i++)
        {
            result[i] = ids[i];
        }
        return result;
    }

    /// <summary>Tokenizes <paramref name="text"/> as plain text and appends the ids to <paramref name="output"/>.</summary>
    /// <returns>How many ids were appended.</returns>
    public int EncodeTo(string text, TokenBuffer output)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(output);
        if (text.Length == 0)
        {
            return 0;
        }
        IReadOnlyList<int> ids = _tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false);
        output.Append(ids);
        return ids.Count;
    }

    /// <summary>Decodes ids back to text (for diagnostics and tests).</summary>
    public string Decode(ReadOnlySpan<int> ids) => _tokenizer.Decode(ids.ToArray());

    // The o200k_base split pattern of tiktoken (the same as Microsoft.ML.Tokenizers' internal O200kBaseRegex).
    [GeneratedRegex(
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")]
    private static partial Regex O200kBaseSplit();
}
