using System.Runtime.CompilerServices;
using System.Text;
using Microsoft.Extensions.AI;

namespace SpecDecode.Extensions.AI;

/// <summary>
/// A Microsoft.Extensions.AI <see cref="IChatClient"/> over any <see cref="ISpeculativeGenerator"/> (e.g. the
/// <c>SpeculativeEngine</c> of SpecDecode.Tree), so that a host application plugs speculative generation into a
/// Microsoft.Extensions.AI or Semantic Kernel pipeline.
/// </summary>
/// <remarks>
/// <para>Messages become <see cref="GenerationRequest.Messages"/> (role name and text), rendered by the engine with the
/// checkpoint's chat template (<c>SpeculativeEngineOptions.ChatTemplate</c> in SpecDecode.Tree). Only text is supported: a message
/// with other content (images, data, tool calls, tool results, reasoning), and options the engine cannot honour (tools,
/// a JSON response format, penalties, another model id), are refused with <see cref="NotSupportedException"/>, never
/// dropped silently.</para>
/// <para>Options map as follows: <see cref="ChatOptions.MaxOutputTokens"/> to <see cref="GenerationRequest.MaxNewTokens"/>
/// (default 256); <see cref="ChatOptions.StopSequences"/> to <see cref="GenerationRequest.StopStrings"/>;
/// <see cref="ChatOptions.Temperature"/>, <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.TopP"/> and
/// <see cref="ChatOptions.Seed"/> to <see cref="GenerationRequest.Sampling"/>: none of them set is greedy decoding; any of
/// them set samples, with temperature 1 unless given (temperature 0 is greedy);
/// <see cref="ChatOptions.ConversationId"/> to <see cref="GenerationRequest.ConversationId"/>, which lets the drafters
/// reuse what they indexed for the conversation's earlier turns. The engine keeps no chat history: every call must carry
/// the whole conversation. Responses therefore carry no <see cref="ChatResponse.ConversationId"/>: in
/// Microsoft.Extensions.AI a returned id means the service keeps the history, and callers would then send only the new
/// messages.</para>
/// <para>The response's <see cref="ChatResponse.FinishReason"/> is <see cref="ChatFinishReason.Stop"/> for a stop token or
/// stop string and <see cref="ChatFinishReason.Length"/> for the token budget or a full context; its
/// <see cref="ChatResponse.Usage"/> counts prompt and generated tokens; the engine's
/// <see cref="GenerationResult"/> is its <see cref="ChatResponse.RawRepresentation"/>.</para>
/// <para>The client does not own the generator: disposing the client leaves it running.</para>
/// </remarks>
public sealed class SpeculativeChatClient : IChatClient
{
    /// <summary>The provider name in <see cref="ChatClientMetadata"/>.</summary>
    public const string ProviderName = "SpecDecode";

    private readonly ISpeculativeGenerator _generator;
    private readonly ChatClientMetadata _metadata;

    /// <summary>Creates a chat client over <paramref name="generator"/>.</summary>
    /// <param name="generator">The engine; it needs a chat template for chat messages.</param>
    /// <param name="modelId">The model's name, reported as <see cref="ChatResponse.ModelId"/> and
    /// <see cref="ChatClientMetadata.DefaultModelId"/>; null for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="generator"/> is null.</exception>
    public SpeculativeChatClient(ISpeculativeGenerator generator, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(generator);
        _generator = generator;
        _metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: modelId);
    }

    /// <summary>The generator the client sends requests to.</summary>
    public ISpeculativeGenerator Generator => _generator;

    /// <summary>The model name given at creation (null for none).</summary>
    public string? ModelId => _metadata.DefaultModelId;

    /// <summary>Generates the assistant's reply to <paramref name="messages"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is null.</exception>
    /// <exception cref="ArgumentException">There are no messages, or a message or option is out of range.</exception>
    /// <exception cref="NotSupportedException">A message has non-text content, or an option the engine cannot honour is set.</exception>
    /// <exception cref="RequestRejectedException">The engine can never serve the request (e.g. the prompt is too long).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        GenerationRequest request = ToRequest(messages, options);
        DateTimeOffset created = DateTimeOffset.UtcNow;
        GenerationResult result = await _generator.GenerateAsync(request, cancellationToken).ConfigureAwait(false);
        string responseId = NewId();
        var message = new ChatMessage(ChatRole.Assistant, result.Text) { MessageId = responseId, RawRepresentation = result };
        return new ChatResponse(message)
        {
            ResponseId = responseId,
            ModelId = ModelId,
            CreatedAt = created,
            FinishReason = ToFinishReason(result.FinishReason),
            Usage = ToUsage(result.Statistics),
            RawRepresentation = result,
        };
    }

    /// <summary>Streams the assistant's reply to <paramref name="messages"/>: one update per
    /// <see cref="GenerationChunk"/> (with the chunk as its raw representation); the last one carries the finish reason
    /// and a <see cref="UsageContent"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is null.</exception>
    /// <exception cref="ArgumentException">There are no messages, or a message or option is out of range.</exception>
    /// <exception cref="NotSupportedException">A message has non-text content, or an option the engine cannot honour is set.</exception>
    /// <exception cref="RequestRejectedException">The engine can never serve the request.</exception>
    /// <exception cref="OperationCanceledException">The enumeration was cancelled.</exception>
    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        // Validated here, so that a refused request throws when the call is made rather than at the first MoveNextAsync.
        GenerationRequest request = ToRequest(messages, options);
        return Stream(request, cancellationToken);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Stream(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        string responseId = NewId();
        DateTimeOffset created = DateTimeOffset.UtcNow;
        await foreach (GenerationChunk chunk in _generator.StreamAsync(request, cancellationToken).ConfigureAwait(false))
        {
            var contents = new List<AIContent>(2);
            if (chunk.Text.Length > 0)
            {
                contents.Add(new TextContent(chunk.Text));
            }
            if (chunk.Final is { } final)
            {
                contents.Add(new UsageContent(ToUsage(final.Statistics)));
            }
            yield return new ChatResponseUpdate(ChatRole.Assistant, contents)
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = ModelId,
                CreatedAt = created,
                FinishReason = chunk.Final is { } f ? ToFinishReason(f.FinishReason) : null,
                RawRepresentation = chunk,
            };
        }
    }

    /// <summary>Returns <see cref="ChatClientMetadata"/> (provider <c>SpecDecode</c>), this client, or the generator when
    /// <paramref name="serviceType"/> asks for them without a key; null otherwise.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="serviceType"/> is null.</exception>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }
        if (serviceType == typeof(ChatClientMetadata))
        {
            return _metadata;
        }
        if (serviceType.IsInstanceOfType(this))
        {
            return this;
        }
        return serviceType.IsInstanceOfType(_generator) ? _generator : null;
    }

    /// <summary>Does nothing: the client does not own the generator.</summary>
    public void Dispose()
    {
    }

    /// <summary>The engine request for <paramref name="messages"/> and <paramref name="options"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> is null.</exception>
    /// <exception cref="ArgumentException">There are no messages, or an option is out of range.</exception>
    /// <exception cref="NotSupportedException">Non-text content, or an option the engine cannot honour.</exception>
    public GenerationRequest ToRequest(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var prompt = new List<PromptMessage>();
        foreach (ChatMessage message in messages)
        {
            ArgumentNullException.ThrowIfNull(message, nameof(messages));
            prompt.Add(new PromptMessage(message.Role.Value, Text(message)));
        }
        if (prompt.Count == 0)
        {
            throw new ArgumentException("Give at least one chat message.", nameof(messages));
        }
        var request = new GenerationRequest { Messages = prompt };
        if (options is not null)
        {
            CheckSupported(options);
            request = request with
            {
                MaxNewTokens = options.MaxOutputTokens ?? request.MaxNewTokens,
                StopStrings = options.StopSequences is { } stops ? [.. stops] : [],
                Sampling = Sampling(options),
                ConversationId = options.ConversationId,
            };
        }
        request.Validate();
        return request;
    }

    private static string Text(ChatMessage message)
    {
        if (message.Contents.Count == 1 && message.Contents[0] is TextContent { } only && only.GetType() == typeof(TextContent))
        {
            return only.Text ?? "";
        }
        var text = new StringBuilder();
        foreach (AIContent content in message.Contents)
        {
            if (content.GetType() != typeof(TextContent))
            {
                throw new NotSupportedException(
                    $"A {message.Role} message has {content.GetType().Name}: SpeculativeChatClient supports text only (TextContent in system, user, assistant and other role messages); images, data, tool calls, tool results and reasoning are not supported.");
            }
            text.Append(((TextContent)content).Text);
        }
        return text.ToString();
    }

    private void CheckSupported(ChatOptions options)
    {
        if (options.Tools is { Count: > 0 })
        {
            throw new NotSupportedException(
                "SpeculativeChatClient does not support tools (function calling); leave ChatOptions.Tools empty. Supported options: MaxOutputTokens, StopSequences, Temperature, TopK, TopP, Seed, ConversationId.");
        }
        if (options.ResponseFormat is not null and not ChatResponseFormatText)
        {
            throw new NotSupportedException(
                "SpeculativeChatClient generates plain text only; leave ChatOptions.ResponseFormat null or ChatResponseFormat.Text.");
        }
        if (options.FrequencyPenalty is { } frequency && frequency != 0 || options.PresencePenalty is { } presence && presence != 0)
        {
            throw new NotSupportedException(
                "SpeculativeChatClient does not support frequency or presence penalties (they would change the target distribution that verification preserves); leave them null or 0.");
        }
        if (options.ModelId is { } model && model != ModelId)
        {
            throw new NotSupportedException(
                $"This client serves the model '{ModelId}' only; ChatOptions.ModelId asks for '{model}'. Leave ModelId null or use another client.");
        }
    }

    private static SamplingOptions? Sampling(ChatOptions options)
    {
        if (options.Temperature is null && options.TopK is null && options.TopP is null && options.Seed is null)
        {
            return null;
        }
        var sampling = new SamplingOptions { Seed = options.Seed };
        if (options.Temperature is float temperature)
        {
            sampling.Temperature = temperature;
        }
        if (options.TopK is int topK)
        {
            sampling.TopK = topK;
        }
        if (options.TopP is float topP)
        {
            sampling.TopP = topP;
        }
        return sampling;
    }

    private static ChatFinishReason ToFinishReason(FinishReason reason) =>
        reason == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length;

    private static UsageDetails ToUsage(GenerationStatistics statistics) => new()
    {
        InputTokenCount = statistics.PromptTokens,
        OutputTokenCount = statistics.GeneratedTokens,
        TotalTokenCount = statistics.PromptTokens + statistics.GeneratedTokens,
    };

    private static string NewId() => "specdecode-" + Guid.NewGuid().ToString("N");
}
