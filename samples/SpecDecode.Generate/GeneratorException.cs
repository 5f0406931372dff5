namespace SpecDecode.Generate;

/// <summary>A problem the user can fix: the message says what to do; the generator prints it and exits with
/// <see cref="ExitCode"/>.</summary>
public sealed class GeneratorException(string message, int exitCode = ExitCodes.Usage, Exception? inner = null)
    : Exception(message, inner)
{
    /// <summary>The process exit code.</summary>
    public int ExitCode { get; } = exitCode;
}

/// <summary>The generator's exit codes.</summary>
public static class ExitCodes
{
    /// <summary>Success.</summary>
    public const int Ok = 0;

    /// <summary>Generation failed at run time.</summary>
    public const int Failed = 1;

    /// <summary>Something to fix on the command line or in the model folder (missing folder, no tokenizer, bad option,
    /// vocabulary mismatch, no CUDA).</summary>
    public const int Usage = 2;

    /// <summary><c>--compare</c> with greedy decoding found different outputs (a bug: please report it).</summary>
    public const int Mismatch = 3;
}
