using SpecDecode.CommandLine;

namespace SpecDecode.Generate;

/// <summary>A problem the user can fix (an option, a file, a model folder): the message says what to do; the generator
/// prints it as one error line on stderr and exits with <see cref="ToolExitCodes.Usage"/>.</summary>
public sealed class GeneratorException(string message, Exception? inner = null) : ToolUsageException(message, inner);
