using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace SpecDecode.Server;

/// <summary>
/// <c>POST /v1/chat/completions</c> and <c>POST /v1/completions</c>: one request in, the engine's answer out, whole or
/// as server-sent events. A client that disconnects cancels its request (the request's <c>RequestAborted</c> token
/// reaches the engine, which frees the slot at the next step). Refusals are OpenAI-style errors: 400 for a bad field or a
/// prompt longer than the context, 404 for another model, 503 when the server is full.
/// </summary>
public sealed class CompletionEndpoints(ModelHost host, Admission admission, ServerMetrics metrics, ILogger<CompletionEndpoints> logger)
{
    private static readonly byte[] Done = Encoding.UTF8.GetBytes("data: [DONE]\n\n");

    /// <summary>Handles a chat completion.</summary>
    public Task ChatAsync(HttpContext context) => HandleAsync(context, chat: true);

    /// <summary>Handles a text completion.</summary>
    public Task CompletionAsync(HttpContext context) => HandleAsync(context, chat: false);

    private async Task HandleAsync(HttpContext context, bool chat)
    {
        long start = Stopwatch.GetTimestamp();
        CancellationToken aborted = context.RequestAborted;
        try
        {
            JsonElement body = await OpenAiRequest.ReadBodyAsync(context.Request, aborted).ConfigureAwait(false);
            string? conversation = context.Request.Headers[OpenAiRequest.ConversationHeader];
            OpenAiRequest request = chat ? OpenAiRequest.Chat(body, host, conversation) : OpenAiRequest.Completion(body, host, conversation);
            using IDisposable lease = admission.TryEnter()
                ?? throw new OpenAiException(503, $"The server is full ({admission.Limit} requests decoding or waiting); retry shortly.", code: "server_overloaded");
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            if (request.Stream)
            {
                await StreamAsync(context, request, chat, id, created, start, aborted).ConfigureAwait(false);
                return;
            }
            GenerationResult result = await host.GenerateAsync(request, aborted).ConfigureAwait(false);
            metrics.Finished(result.Statistics, Stopwatch.GetElapsedTime(start));
            OpenAiUsage usage = OpenAiUsage.Of(result.Statistics);
            string finish = Finish(result.FinishReason);
            object response = chat
                ? new ChatCompletionResponse(id, "chat.completion", created, host.ServedModelName,
                    [new ChatChoiceResponse(0, new ChatMessageBody("assistant", result.Text), null, null, finish)], usage)
                : new TextCompletionResponse(id, "text_completion", created, host.ServedModelName, [new TextChoiceResponse(0, result.Text, null, finish)], usage);
            await context.Response.WriteAsJsonAsync(response, response.GetType(), ServerJson.Options, aborted).ConfigureAwait(false);
        }
        catch (Exception e) when (!context.Response.HasStarted && Refusal(e) is OpenAiException refusal)
        {
            await refusal.WriteAsync(context).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // the client went away: its request was cancelled in the engine; there is no one to answer
        }
    }

    private async Task StreamAsync(HttpContext context, OpenAiRequest request, bool chat, string id, long created, long start, CancellationToken aborted)
    {
        await using IAsyncEnumerator<GenerationChunk> chunks = host.Engine.StreamAsync(request.Generation, aborted).GetAsyncEnumerator(aborted);
        // the first chunk before the headers: a refused request (a prompt over the context) still gets its 400
        bool any = await chunks.MoveNextAsync().ConfigureAwait(false);
        metrics.FirstToken(Stopwatch.GetElapsedTime(start));
        HttpResponse response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        if (chat)
        {
            await EventAsync(response, Chunk(id, created, new ChatMessageBody("assistant", ""), null), aborted).ConfigureAwait(false);
        }
        GenerationResult? final = null;
        while (any)
        {
            GenerationChunk chunk = chunks.Current;
            if (chunk.Text.Length > 0)
            {
                object data = chat
                    ? Chunk(id, created, new ChatMessageBody(null, chunk.Text), null)
                    : new TextCompletionResponse(id, "text_completion", created, host.ServedModelName, [new TextChoiceResponse(0, chunk.Text, null, null)], null);
                await EventAsync(response, data, aborted).ConfigureAwait(false);
            }
            final = chunk.Final ?? final;
            any = await chunks.MoveNextAsync().ConfigureAwait(false);
        }
        if (final is null)
        {
            throw new InvalidOperationException("The engine ended the stream without a result.");
        }
        metrics.Finished(final.Statistics, Stopwatch.GetElapsedTime(start));
        string finish = Finish(final.FinishReason);
        await EventAsync(response, chat
            ? Chunk(id, created, new ChatMessageBody(null, null), finish)
            : new TextCompletionResponse(id, "text_completion", created, host.ServedModelName, [new TextChoiceResponse(0, "", null, finish)], null), aborted).ConfigureAwait(false);
        if (request.IncludeUsage)
        {
            OpenAiUsage usage = OpenAiUsage.Of(final.Statistics);
            await EventAsync(response, chat
                ? new ChatCompletionResponse(id, "chat.completion.chunk", created, host.ServedModelName, [], usage)
                : new TextCompletionResponse(id, "text_completion", created, host.ServedModelName, [], usage), aborted).ConfigureAwait(false);
        }
        await response.Body.WriteAsync(Done, aborted).ConfigureAwait(false);
        await response.Body.FlushAsync(aborted).ConfigureAwait(false);
    }

    private ChatCompletionResponse Chunk(string id, long created, ChatMessageBody delta, string? finish) =>
        new(id, "chat.completion.chunk", created, host.ServedModelName, [new ChatChoiceResponse(0, null, delta, null, finish)], null);

    private static async Task EventAsync(HttpResponse response, object data, CancellationToken cancellationToken)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(data, data.GetType(), ServerJson.Options);
        await response.Body.WriteAsync("data: "u8.ToArray(), cancellationToken).ConfigureAwait(false);
        await response.Body.WriteAsync(json, cancellationToken).ConfigureAwait(false);
        await response.Body.WriteAsync("\n\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>OpenAI's finish reasons: <c>stop</c> for a stop token or string, <c>length</c> for the token budget or a
    /// full context.</summary>
    public static string Finish(FinishReason reason) => reason == FinishReason.Stop ? "stop" : "length";

    /// <summary>The answer to a failure that is the request's fault or the server's state; null for a bug (logged,
    /// answered 500).</summary>
    private OpenAiException? Refusal(Exception e)
    {
        switch (e)
        {
            case OpenAiException o:
                return o;
            case RequestRejectedException r:
                return OpenAiException.BadRequest(r.Message.Replace("(TargetModelOptions.MaxContext)", "(the server's --max-context)", StringComparison.Ordinal)
                    .Replace("load the model with a larger MaxContext", "start the server with a larger --max-context", StringComparison.Ordinal), null, "context_length_exceeded");
            case ArgumentException a:
                return OpenAiException.BadRequest(a.Message);
            case ObjectDisposedException:
                return new OpenAiException(503, "The server is shutting down.", code: "server_shutting_down");
            case OperationCanceledException:
                return null;
            default:
                logger.LogError(e, "Request failed");
                return new OpenAiException(500, $"The server failed on this request ({e.GetType().Name}); see its log.");
        }
    }
}
