namespace SpecDecode.Tokenization;

/// <summary>
/// Thrown by <see cref="CheckpointTokenizer.Load"/> when a checkpoint folder's tokenizer files cannot be turned into a
/// <see cref="Microsoft.ML.Tokenizers.Tokenizer"/>: no tokenizer file, a malformed file, or a tokenizer kind or setting
/// this loader does not implement (it never loads one that would encode differently). The message names the file and
/// what to do; the fallback is always to build the tokenizer yourself and pass it in.
/// </summary>
public sealed class TokenizerLoadException : SpecDecodeException
{
    /// <summary>The advice every message ends with.</summary>
    internal const string PassOneIn =
        "Build a Microsoft.ML.Tokenizers.Tokenizer for this checkpoint yourself and pass it in instead of loading it from the folder.";

    /// <summary>Creates the exception for <paramref name="path"/>; the message gets the path in front and the
    /// pass-one-in advice at the end.</summary>
    /// <param name="path">The file (or, when no tokenizer file exists, the folder) that could not be used.</param>
    /// <param name="message">What is wrong, in one or two sentences.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public TokenizerLoadException(string path, string message, Exception? inner = null)
        : base($"{path}: {message} {PassOneIn}", inner)
    {
        Path = path;
    }

    /// <summary>The tokenizer file (or checkpoint folder) the error is about.</summary>
    public string Path { get; }
}
