using Spectre.Console;
using SpecDecode.Tree;

namespace SpecDecode.Generate;

/// <summary><c>--chat</c>: reads user messages line by line and answers each with the whole history rendered by the
/// checkpoint's chat template; the conversation id lets the suffix drafter reuse earlier turns.</summary>
public static class ChatSession
{
    /// <summary>Chats until <c>/exit</c> or the end of <paramref name="input"/>, then prints the session's summary.</summary>
    public static async Task<int> RunAsync(GeneratorSettings settings, SpeculativeEngine engine, IAnsiConsole console, TextReader input,
        CancellationToken cancellationToken)
    {
        var history = new List<PromptMessage>();
        string conversation = "chat-" + Guid.NewGuid().ToString("N");
        console.MarkupLine("[grey]Chat: type a message and press Enter; /reset clears the history, /exit (or end of input) quits.[/]");
        string? first = settings.Prompt;
        while (!cancellationToken.IsCancellationRequested)
        {
            string? line = first;
            first = null;
            if (line is null)
            {
                console.Markup("[green]you>[/] ");
                line = await input.ReadLineAsync(cancellationToken).ConfigureAwait(false);
            }
            if (line is null || line.Trim() == "/exit")
            {
                break;
            }
            if (line.Trim() == "/reset")
            {
                history.Clear();
                conversation = "chat-" + Guid.NewGuid().ToString("N");
                console.MarkupLine("[grey]History cleared.[/]");
                continue;
            }
            if (line.Length == 0)
            {
                continue;
            }
            history.Add(PromptMessage.User(line));
            console.Markup("[blue]assistant>[/] ");
            GenerationRequest request = GeneratorRun.Request(settings, null, conversation) with { Messages = [.. history] };
            GenerationResult result = await StreamingOutput.StreamAsync(console, engine, request, cancellationToken).ConfigureAwait(false);
            history.Add(PromptMessage.Assistant(result.Text));
        }
        console.WriteLine();
        Summary.Write(console, "Chat session", engine.Statistics.Totals, settings.DraftName);
        return SpecDecode.CommandLine.ToolExitCodes.Ok;
    }
}
