using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;
using SpecDecode.Tree;

namespace SpecDecode.Generate;

/// <summary>Streams one request's text to the console as it comes. On a terminal a live line under the text shows
/// tokens/s and acceptance; when the output is redirected the text goes out raw and one line of figures follows it.</summary>
public static class StreamingOutput
{
    /// <summary>Streams <paramref name="request"/> through <paramref name="engine"/> and returns its result.</summary>
    public static async Task<GenerationResult> StreamAsync(IAnsiConsole console, SpeculativeEngine engine, GenerationRequest request,
        CancellationToken cancellationToken)
    {
        GenerationStatistics before = engine.Statistics.Totals;
        var clock = Stopwatch.StartNew();
        int tokens = 0;
        GenerationResult? result = null;
        if (console.Profile.Capabilities.Interactive && console.Profile.Capabilities.Ansi)
        {
            // Completed lines are written above the live display; the unfinished line and the figures live in it.
            string pending = string.Empty;
            IRenderable View() => new Rows(new Text(pending), new Markup("[grey]" + Markup.Escape(Live(engine, before, tokens, clock.Elapsed)) + "[/]"));
            await console.Live(View()).AutoClear(true).Overflow(VerticalOverflow.Ellipsis).Cropping(VerticalOverflowCropping.Top).StartAsync(async ctx =>
            {
                await foreach (GenerationChunk chunk in engine.StreamAsync(request, cancellationToken).ConfigureAwait(false))
                {
                    tokens += chunk.TokenIds.Count;
                    pending += chunk.Text;
                    int newline = pending.LastIndexOf('\n');
                    if (newline >= 0)
                    {
                        console.Write(new Text(pending[..(newline + 1)]));
                        pending = pending[(newline + 1)..];
                    }
                    result = chunk.Final ?? result;
                    ctx.UpdateTarget(View());
                }
            }).ConfigureAwait(false);
            console.Write(new Text(pending));
        }
        else
        {
            TextWriter writer = console.Profile.Out.Writer;
            await foreach (GenerationChunk chunk in engine.StreamAsync(request, cancellationToken).ConfigureAwait(false))
            {
                tokens += chunk.TokenIds.Count;
                await writer.WriteAsync(chunk.Text).ConfigureAwait(false);
                await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                result = chunk.Final ?? result;
            }
        }
        console.WriteLine();
        if (result is null)
        {
            throw new InvalidOperationException("The engine ended the stream without a final chunk.");
        }
        console.MarkupLine("[grey]" + Markup.Escape(Line(result.Statistics)) + "[/]");
        if (result.FinishReason == FinishReason.ContextFull)
        {
            console.MarkupLine("[yellow]" + Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"Stopped early: the context is full ({result.Statistics.PromptTokens} prompt + {result.Statistics.GeneratedTokens} generated tokens). Raise --max-context (up to the model's max_position_embeddings) or shorten the prompt for more.")) + "[/]");
        }
        return result;
    }

    /// <summary>One line of figures for a finished request.</summary>
    public static string Line(GenerationStatistics s) => string.Create(CultureInfo.InvariantCulture,
        $"{s.GeneratedTokens} tokens in {Seconds(s)} s: {s.TokensPerSecond:F1} tokens/s, {s.MeanTokensPerStep:F2} tokens/step, acceptance {s.AcceptanceRate:P1}");

    private static string Live(SpeculativeEngine engine, GenerationStatistics before, int tokens, TimeSpan elapsed)
    {
        GenerationStatistics now = engine.Statistics.Totals;
        long drafted = now.DraftTokens - before.DraftTokens;
        long accepted = now.AcceptedTokens - before.AcceptedTokens;
        double rate = elapsed.TotalSeconds > 0 ? tokens / elapsed.TotalSeconds : 0;
        string acceptance = drafted == 0 ? "no drafts yet" : $"acceptance {(double)accepted / drafted:P0}";
        return string.Create(CultureInfo.InvariantCulture, $"{tokens} tokens, {rate:F1} tokens/s, {acceptance}");
    }

    private static string Seconds(GenerationStatistics s) =>
        (s.TotalTime - s.QueueTime).TotalSeconds.ToString("F2", CultureInfo.InvariantCulture);
}
