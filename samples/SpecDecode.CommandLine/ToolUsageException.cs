namespace SpecDecode.CommandLine;

/// <summary>Bad usage or input that a tool found itself: <see cref="ToolRunner"/> prints the message as one error line on
/// stderr and exits with <see cref="ToolExitCodes.Usage"/>. The message names the option or file and says what to do.</summary>
/// <param name="message">One sentence or two: what is wrong, naming the option or file, and what to give instead.</param>
/// <param name="inner">The exception behind it, if any (not printed).</param>
public class ToolUsageException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A check the tool makes failed (outputs that must match differ, an error past its tolerance):
/// <see cref="ToolRunner"/> prints the message as one error line on stderr and exits with
/// <see cref="ToolExitCodes.Failed"/>.</summary>
/// <param name="message">What failed, with the figures.</param>
public class ToolCheckFailedException(string message) : Exception(message);
