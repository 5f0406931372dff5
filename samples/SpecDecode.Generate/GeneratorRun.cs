using Spectre.Console;
using SpecDecode.Tree;

namespace SpecDecode.Generate;

/// <summary>One run of the generator: load, then generate once, compare, or chat.</summary>
public static class GeneratorRun
{
    /// <summary>Runs the generator with <paramref name="settings"/>; returns the exit code.</summary>
    /// <exception cref="GeneratorException">Something the user can fix.</exception>
    public static async Task<int> RunAsync(GeneratorSettings settings, IAnsiConsole console, TextReader input, CancellationToken cancellationToken)
    {
        if (!settings.Chat && string.IsNullOrEmpty(settings.Prompt))
        {
            throw new GeneratorException("No prompt: pass it as an argument (SpecDecode.Generate \"Once upon a time\"), with --prompt-file <file>, or chat with --chat.");
        }
        if (settings.Draft is not (DraftKind.DraftModel or DraftKind.Hybrid) && settings.DraftModelFolder is not null)
        {
            throw new GeneratorException($"--draft-model is used only with --draft draft-model or --draft hybrid, not with --draft {settings.DraftName}.");
        }
        using LoadedTarget target = ModelLoading.LoadTarget(settings, console);
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
            GenerationResult result = await StreamingOutput.StreamAsync(console, engine, Request(settings, settings.Prompt!, null), cancellationToken).ConfigureAwait(false);
            Summary.Write(console, "Summary", result.Statistics, settings.DraftName);
            return ExitCodes.Ok;
        }
        catch (RequestRejectedException e)
        {
            throw new GeneratorException(e.Message + " (--max-context sets the context.)", ExitCodes.Usage, e);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            console.MarkupLine("[yellow]Cancelled.[/]");
            return ExitCodes.Failed;
        }
    }

    /// <summary>The request for a text prompt (or, with a null prompt, a template for chat messages).</summary>
    public static GenerationRequest Request(GeneratorSettings settings, string? prompt, string? conversationId) => new()
    {
        Prompt = prompt,
        MaxNewTokens = settings.MaxNewTokens,
        StopStrings = settings.Stop,
        Sampling = settings.Sampling,
        ConversationId = conversationId,
    };
}
