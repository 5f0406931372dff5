using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.Json;

namespace SpecDecode.CommandLine;

/// <summary>
/// Runs a tool's root command by the convention every SpecDecode tool follows: parse errors and failures are written to
/// stderr, each as one line starting with <c>error: </c>; exit <see cref="ToolExitCodes.Usage"/> (2) for bad usage or
/// input, <see cref="ToolExitCodes.Failed"/> (1) for a failed check or a run-time failure, 130 when cancelled (Ctrl+C);
/// no stack trace unless the environment variable <see cref="DebugVariable"/> is 1.
/// </summary>
public static class ToolRunner
{
    /// <summary>The environment variable that, set to 1, makes the runner print the stack trace of a failure.</summary>
    public const string DebugVariable = "SPECDECODE_DEBUG";

    /// <summary>The exit code of a cancelled run (the shell's code for SIGINT).</summary>
    public const int Cancelled = 130;

    /// <summary>Parses <paramref name="args"/> and invokes <paramref name="root"/>'s action.</summary>
    /// <param name="root">The tool's root command.</param>
    /// <param name="args">The command line.</param>
    /// <param name="output">Where help and the action's standard output go (null: the console).</param>
    /// <param name="error">Where error lines go (null: the console's stderr).</param>
    /// <param name="classify">The tool's own exceptions: the exit code for one it knows (its message is then printed as
    /// is), or null to leave it to the runner's rules.</param>
    /// <param name="cancellationToken">Cancels the action.</param>
    /// <returns>The exit code.</returns>
    public static async Task<int> RunAsync(Command root, IReadOnlyList<string> args, TextWriter? output = null, TextWriter? error = null,
        Func<Exception, int?>? classify = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentNullException.ThrowIfNull(args);
        error ??= Console.Error;
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // one line: the first error (usually the cause of the others), with a count of the rest
            string line = ParseErrorLine(parsed.Errors[0].Message);
            if (parsed.Errors.Count > 1)
            {
                line += $" ({parsed.Errors.Count - 1} more error{(parsed.Errors.Count > 2 ? "s" : "")} after this one.)";
            }
            await error.WriteLineAsync(line).ConfigureAwait(false);
            return ToolExitCodes.Usage;
        }
        try
        {
            var configuration = new InvocationConfiguration { EnableDefaultExceptionHandler = false, Error = error };
            if (output is not null)
            {
                configuration.Output = output;
            }
            return await parsed.InvokeAsync(configuration, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            return Report(e, error, classify);
        }
    }

    /// <summary>The synchronous form of <see cref="RunAsync"/>.</summary>
    public static int Run(Command root, IReadOnlyList<string> args, TextWriter? output = null, TextWriter? error = null,
        Func<Exception, int?>? classify = null) =>
        RunAsync(root, args, output, error, classify).GetAwaiter().GetResult();

    /// <summary>Runs a service (a web server) until the command is cancelled (Ctrl+C): starts it, writes
    /// <paramref name="startedLine"/>'s line, waits for <paramref name="cancellationToken"/>, then stops it.</summary>
    /// <param name="start">Starts the service (e.g. <c>app.StartAsync</c>).</param>
    /// <param name="stop">Stops it (e.g. <c>app.StopAsync</c>); called with a token that does not cancel.</param>
    /// <param name="startedLine">The line to print once it runs (its addresses are known only then).</param>
    /// <param name="cancellationToken">The command's token.</param>
    /// <returns><see cref="ToolExitCodes.Ok"/>.</returns>
    public static async Task<int> ServeAsync(Func<CancellationToken, Task> start, Func<CancellationToken, Task> stop, Func<string> startedLine,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(stop);
        ArgumentNullException.ThrowIfNull(startedLine);
        await start(cancellationToken).ConfigureAwait(false);
        Console.WriteLine(startedLine());
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        await stop(CancellationToken.None).ConfigureAwait(false);
        return ToolExitCodes.Ok;
    }

    /// <summary>Writes <paramref name="exception"/> as one error line and returns its exit code: the tool's
    /// <paramref name="classify"/> first, then <see cref="ToolUsageException"/>, argument, file, format and JSON errors
    /// (bad input: 2), <see cref="ToolCheckFailedException"/> (1), cancellation (130), anything else (1, with its type).</summary>
    public static int Report(Exception exception, TextWriter error, Func<Exception, int?>? classify = null)
    {
        ArgumentNullException.ThrowIfNull(exception);
        ArgumentNullException.ThrowIfNull(error);
        Exception e = exception is AggregateException { InnerExceptions.Count: 1 } aggregate ? aggregate.InnerExceptions[0] : exception;
        int? known = classify?.Invoke(e);
        (int code, string line) = known is int k ? (k, FirstLine(e.Message)) : e switch
        {
            ToolUsageException => (ToolExitCodes.Usage, FirstLine(e.Message)),
            ToolCheckFailedException => (ToolExitCodes.Failed, FirstLine(e.Message)),
            OperationCanceledException => (Cancelled, "cancelled."),
            ArgumentException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
                or InvalidDataException or JsonException or FormatException => (ToolExitCodes.Usage, FirstLine(e.Message)),
            _ => (ToolExitCodes.Failed, $"{e.GetType().Name}: {FirstLine(e.Message)} (set {DebugVariable}=1 to see where)"),
        };
        error.WriteLine("error: " + line);
        if (Environment.GetEnvironmentVariable(DebugVariable) == "1")
        {
            error.WriteLine(e.ToString());
        }
        return code;
    }

    /// <summary>A parse error as one line: the tools' own messages start with the option's name and already say what to
    /// give; System.CommandLine's own ("Unrecognized command or argument 'x'.") get a pointer to --help.</summary>
    public static string ParseErrorLine(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        string line = string.Join(' ', message.Split((char[])['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        return "error: " + (line.StartsWith('-') ? line : line.TrimEnd('.') + ". Run with --help to see the options.");
    }

    /// <summary>The first line of a message, trimmed: native errors carry a multi-line trace after it, and
    /// <see cref="ArgumentOutOfRangeException"/> its actual value on a second line.</summary>
    public static string FirstLine(string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        string line = message.Split('\n', 2)[0].Trim();
        return line.Length == 0 ? "(no message)" : line;
    }
}
