namespace SpecDecode.CommandLine;

/// <summary>The exit codes of every SpecDecode tool (README, "Command-line tools").</summary>
public static class ToolExitCodes
{
    /// <summary>Success: the run finished and every check it makes passed.</summary>
    public const int Ok = 0;

    /// <summary>The run went through the input but a check failed (logits past the tolerance, outputs that should match
    /// but differ), or it failed at run time (a device error).</summary>
    public const int Failed = 1;

    /// <summary>Bad usage or input, found before any real work: an unknown option, a value that does not parse or is out
    /// of range, a missing, empty or wrong kind of file or folder, a model that does not load, a setting past what the
    /// model or the machine allows.</summary>
    public const int Usage = 2;
}
