using SpecDecode.CommandLine;
using SpecDecode.Tree;
using Spectre.Console;

namespace SpecDecode.Generate;

/// <summary>One run of the generator: load, then generate once, compare, or chat.</summary>
public static class GeneratorRun
{
    /// <summary>Runs the generator with <paramref name="settings"/>; returns the exit code.</summary>
    /// <exception cref="ToolUsageException">Something the user can fix.</exception>
    /// <exception cref="OperationCanceledException">Cancelled (the runner exits with 130).</exception>
    public static async Task<int> RunAsync(GeneratorSettings settings, IAnsiConsole console, TextReader input, CancellationToken cancellationToken)
    {
        if (!settings.Chat && string.IsNullOrEmpty(settings.Prompt) && settings.Messages is null)
        {
            // No prompt at all: the demo. Continue the demo conversation, plain and speculative, and compare.
            console.MarkupLine("[grey]No prompt given: continuing the demo conversation (a coding agent fixing a bug, the kind of text the " +
                "embedded model was trained on) with plain and with speculative decoding. Pass a prompt as an argument, --prompt-file or --chat for your own; --help lists the options.[/]");
            settings = settings with { Messages = DemoConversation.Messages, Compare = true, Draft = settings.Draft == DraftKind.None ? DraftKind.Suffix : settings.Draft };
        }
        if (settings.Draft is not (DraftKind.DraftModel or DraftKind.Hybrid) && settings.DraftModelFolder is not null)
        {
            throw new GeneratorException($"--draft-model is used only with --draft draft-model or --draft hybrid, not with --draft {settings.DraftName}.");
        }
        settings = ModelLoading.FitToModel(settings);
        using LoadedTarget target = ModelLoading.LoadTarget(settings, console);
        if (settings.Messages is not null && target.ChatTemplate is null)
        {
            throw new GeneratorException($"No prompt given, and the demo conversation needs a chat template, which {target.Folder} lacks. " +
                "Pass a prompt as an argument (SpecDecode.Generate \"Once upon a time\") or with --prompt-file <file>.");
        }
        try
        {
            if (settings.Compare)
            {
                return await CompareRun.RunAsync(settings, target, console, cancellationToken).ConfigureAwait(false);
            }
            using LoadedDrafter drafter = ModelLoading.CreateDrafter(settings.Draft, settings, target, console);
            using SpeculativeEngine engine = ModelLoading.CreateEngine(target, drafter.Drafter, settings, console);
            if (settings.Chat)
            {
                return await ChatSession.RunAsync(settings, engine, console, input, cancellationToken).ConfigureAwait(false);
            }
            GenerationResult result = await StreamingOutput.StreamAsync(console, engine, Request(settings, settings.Prompt, null), cancellationToken).ConfigureAwait(false);
            Summary.Write(console, "Summary", result.Statistics, settings.DraftName);
            return ToolExitCodes.Ok;
        }
        catch (RequestRejectedException e)
        {
            throw new GeneratorException(ToolRunner.FirstLine(e.Message) + $" (--max-context sets the context: {settings.Context} tokens now.)", e);
        }
    }

    /// <summary>The request for a text prompt, or for <see cref="GeneratorSettings.Messages"/> when set (with a null prompt
    /// and no messages, a template for chat messages).</summary>
    public static GenerationRequest Request(GeneratorSettings settings, string? prompt, string? conversationId) => new()
    {
        Prompt = settings.Messages is null ? prompt : null,
        Messages = settings.Messages,
        MaxNewTokens = settings.NewTokens,
        StopStrings = settings.Stop,
        Sampling = settings.Sampling,
        ConversationId = conversationId,
    };
}
