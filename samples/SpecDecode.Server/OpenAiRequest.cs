using System.Text;
using System.Text.Json;

namespace SpecDecode.Server;

/// <summary>An OpenAI request the server accepted, mapped to the engine: the generation request, whether to stream,
/// whether the stream ends with a usage chunk, and in benchmark mode the recorded answer that forces acceptance.</summary>
/// <param name="Generation">The engine's request (prompt, budget, stops, sampling, conversation).</param>
/// <param name="Stream">Answer as server-sent events.</param>
/// <param name="IncludeUsage"><c>stream_options.include_usage</c>: a last chunk with the usage.</param>
/// <param name="ForcedResponse">Benchmark mode only: the recorded answer's ids.</param>
public sealed record OpenAiRequest(GenerationRequest Generation, bool Stream, bool IncludeUsage, int[]? ForcedResponse)
{
    /// <summary>The header that names the conversation a call continues (mapped to
    /// <see cref="GenerationRequest.ConversationId"/>): the suffix drafter reuses what it indexed for its earlier turns,
    /// and a conversation-affine router routes on it.</summary>
    public const string ConversationHeader = "X-SpecDecode-Conversation";

    /// <summary>Reads the body as a JSON object.</summary>
    /// <exception cref="OpenAiException">It is not JSON, or not an object.</exception>
    public static async Task<JsonElement> ReadBodyAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        try
        {
            using JsonDocument document = await JsonDocument.ParseAsync(request.Body, default, cancellationToken).ConfigureAwait(false);
            return document.RootElement.ValueKind == JsonValueKind.Object
                ? document.RootElement.Clone()
                : throw OpenAiException.BadRequest("The request body must be a JSON object.");
        }
        catch (JsonException e)
        {
            throw OpenAiException.BadRequest($"The request body is not valid JSON: {e.Message}");
        }
    }

    /// <summary>Maps a <c>/v1/chat/completions</c> body.</summary>
    /// <exception cref="OpenAiException">A field the server cannot honour, or a model it does not serve.</exception>
    public static OpenAiRequest Chat(JsonElement body, ModelHost host, string? conversationId)
    {
        ArgumentNullException.ThrowIfNull(host);
        CheckModel(body, host);
        Refuse(body, "tools", "tool_choice", "functions", "function_call", "audio", "prediction", "web_search_options");
        if (!body.TryGetProperty("messages", out JsonElement messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw OpenAiException.BadRequest("'messages' must be a non-empty array of {role, content}.", "messages");
        }
        var prompt = new List<PromptMessage>();
        int index = 0;
        foreach (JsonElement m in messages.EnumerateArray())
        {
            prompt.Add(Message(m, index++));
        }
        int? maxTokens = OptionalInt(body, "max_completion_tokens", 1) ?? OptionalInt(body, "max_tokens", 1);
        GenerationRequest generation = host.Benchmark is { } b
            ? new GenerationRequest { PromptTokens = b.EncodePrompt(prompt) }
            : new GenerationRequest { Messages = prompt };
        return Build(body, host, conversationId, maxTokens ?? host.Capacity, generation);
    }

    /// <summary>Maps a <c>/v1/completions</c> body.</summary>
    /// <exception cref="OpenAiException">A field the server cannot honour, or a model it does not serve.</exception>
    public static OpenAiRequest Completion(JsonElement body, ModelHost host, string? conversationId)
    {
        ArgumentNullException.ThrowIfNull(host);
        CheckModel(body, host);
        Refuse(body, "suffix");
        if (body.TryGetProperty("echo", out JsonElement echo) && echo.ValueKind == JsonValueKind.True)
        {
            throw OpenAiException.BadRequest("'echo' is not supported: the answer holds the completion only.", "echo");
        }
        if (body.TryGetProperty("best_of", out JsonElement bestOf) && !(bestOf.ValueKind == JsonValueKind.Number && bestOf.TryGetInt32(out int b) && b == 1))
        {
            throw OpenAiException.BadRequest("'best_of' must be 1: one completion per request.", "best_of");
        }
        if (!body.TryGetProperty("prompt", out JsonElement prompt))
        {
            throw OpenAiException.BadRequest("'prompt' is required: a string (or an array of one string, or of token ids).", "prompt");
        }
        GenerationRequest generation = prompt.ValueKind switch
        {
            JsonValueKind.String => new GenerationRequest { Prompt = NonEmpty(prompt.GetString()!) },
            JsonValueKind.Array when prompt.GetArrayLength() == 1 && prompt[0].ValueKind == JsonValueKind.String =>
                new GenerationRequest { Prompt = NonEmpty(prompt[0].GetString()!) },
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt.EnumerateArray().All(t => t.ValueKind == JsonValueKind.Number) =>
                new GenerationRequest { PromptTokens = TokenIds(prompt) },
            _ => throw OpenAiException.BadRequest("'prompt' must be a string, an array of one string, or an array of token ids (one prompt per request).", "prompt"),
        };
        if (host.Benchmark is { } bench && generation.Prompt is { } text)
        {
            generation = new GenerationRequest { PromptTokens = bench.EncodeResponse(text) };
        }
        int maxTokens = OptionalInt(body, "max_tokens", 1) ?? 16;
        return Build(body, host, conversationId, maxTokens, generation);

        static string NonEmpty(string text) =>
            text.Length > 0 ? text : throw OpenAiException.BadRequest("'prompt' is empty.", "prompt");
    }

    private static OpenAiRequest Build(JsonElement body, ModelHost host, string? conversationId, int maxTokens, GenerationRequest prompt)
    {
        if (OptionalInt(body, "n", 1) is int n && n != 1)
        {
            throw OpenAiException.BadRequest("'n' must be 1: one choice per request.", "n");
        }
        foreach (string penalty in new[] { "presence_penalty", "frequency_penalty" })
        {
            if (OptionalNumber(body, penalty) is double p && p != 0)
            {
                throw OpenAiException.BadRequest($"'{penalty}' is not supported (it would change the model's distribution); leave it out or 0.", penalty);
            }
        }
        if (body.TryGetProperty("logprobs", out JsonElement logprobs) && logprobs.ValueKind is not (JsonValueKind.False or JsonValueKind.Null))
        {
            throw OpenAiException.BadRequest("'logprobs' is not supported.", "logprobs");
        }
        if (body.TryGetProperty("logit_bias", out JsonElement bias) && bias.ValueKind == JsonValueKind.Object && bias.EnumerateObject().Any())
        {
            throw OpenAiException.BadRequest("'logit_bias' is not supported (it would change the model's distribution).", "logit_bias");
        }
        if (body.TryGetProperty("response_format", out JsonElement format) && format.ValueKind == JsonValueKind.Object
            && format.TryGetProperty("type", out JsonElement type) && type.GetString() != "text")
        {
            throw OpenAiException.BadRequest("'response_format' must be text: constrained (JSON) output is not supported.", "response_format");
        }
        bool stream = OptionalBool(body, "stream") ?? false;
        bool includeUsage = body.TryGetProperty("stream_options", out JsonElement options) && options.ValueKind == JsonValueKind.Object
            && (OptionalBool(options, "include_usage") ?? false);

        int[]? forced = null;
        if (body.TryGetProperty(BenchmarkMode.Field, out JsonElement bench) && bench.ValueKind != JsonValueKind.Null)
        {
            if (host.Benchmark is not { } mode)
            {
                throw OpenAiException.BadRequest($"'{BenchmarkMode.Field}' is honoured only by a server started in benchmark mode (--benchmark-random-weights).", BenchmarkMode.Field);
            }
            if (bench.ValueKind != JsonValueKind.Object || !bench.TryGetProperty("forced_response", out JsonElement text) || text.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.BadRequest($"'{BenchmarkMode.Field}' must be {{\"forced_response\": \"<the recorded answer>\"}}.", BenchmarkMode.Field);
            }
            if (stream)
            {
                throw OpenAiException.BadRequest("Forced answers are replayed without streaming; set 'stream' to false.", "stream");
            }
            forced = mode.EncodeResponse(text.GetString()!);
            if (forced.Length == 0)
            {
                throw OpenAiException.BadRequest("The forced response is empty.", BenchmarkMode.Field);
            }
            maxTokens = Math.Min(maxTokens, forced.Length);
        }

        GenerationRequest generation = prompt with
        {
            MaxNewTokens = maxTokens,
            StopStrings = Stops(body),
            Sampling = forced is null ? Sampling(body) : null,
            ConversationId = string.IsNullOrWhiteSpace(conversationId) ? null : conversationId,
            StopTokenIds = forced is null ? null : [],
        };
        return new OpenAiRequest(generation, stream, includeUsage, forced);
    }

    /// <summary>OpenAI's sampling: temperature defaults to 1 (0 is greedy), top_p to 1; <c>top_k</c> (vLLM's extension)
    /// -1 or 0 is off; a seed makes sampling reproducible.</summary>
    private static SamplingOptions? Sampling(JsonElement body)
    {
        double temperature = OptionalNumber(body, "temperature") ?? 1.0;
        if (!(temperature >= 0 && temperature <= 2))
        {
            throw OpenAiException.BadRequest("'temperature' must lie in [0, 2] (0 is greedy decoding).", "temperature");
        }
        double topP = OptionalNumber(body, "top_p") ?? 1.0;
        if (!(topP > 0 && topP <= 1))
        {
            throw OpenAiException.BadRequest("'top_p' must lie in (0, 1].", "top_p");
        }
        int topK = OptionalInt(body, "top_k", -1) ?? 0;
        long? seed = body.TryGetProperty("seed", out JsonElement s) && s.ValueKind != JsonValueKind.Null
            ? s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out long v) ? v : throw OpenAiException.BadRequest("'seed' must be an integer.", "seed")
            : null;
        return temperature == 0
            ? null
            : new SamplingOptions { Temperature = (float)temperature, TopP = (float)topP, TopK = Math.Max(0, topK), Seed = seed };
    }

    private static IReadOnlyList<string> Stops(JsonElement body)
    {
        if (!body.TryGetProperty("stop", out JsonElement stop) || stop.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        string[] stops = stop.ValueKind switch
        {
            JsonValueKind.String => [stop.GetString()!],
            JsonValueKind.Array when stop.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => [.. stop.EnumerateArray().Select(e => e.GetString()!)],
            _ => throw OpenAiException.BadRequest("'stop' must be a string or an array of strings.", "stop"),
        };
        return stops.Any(string.IsNullOrEmpty) ? throw OpenAiException.BadRequest("'stop' strings must not be empty.", "stop") : stops;
    }

    private static PromptMessage Message(JsonElement m, int index)
    {
        string param = $"messages[{index}]";
        if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out JsonElement roleElement) || roleElement.ValueKind != JsonValueKind.String)
        {
            throw OpenAiException.BadRequest($"{param} must be an object with a 'role' and a 'content'.", param);
        }
        string role = roleElement.GetString()!;
        if (role is "tool" or "function" || m.TryGetProperty("tool_calls", out _))
        {
            throw OpenAiException.BadRequest($"{param}: tool calls and tool results are not supported; send the tool's output as a user message.", param);
        }
        if (role is not ("system" or "user" or "assistant" or "developer"))
        {
            throw OpenAiException.BadRequest($"{param}: role '{role}' is not one of system, developer, user, assistant.", param);
        }
        if (!m.TryGetProperty("content", out JsonElement content))
        {
            throw OpenAiException.BadRequest($"{param} has no 'content'.", param);
        }
        string text = content.ValueKind switch
        {
            JsonValueKind.String => content.GetString()!,
            JsonValueKind.Array => Parts(content, param),
            _ => throw OpenAiException.BadRequest($"{param}.content must be a string or an array of text parts.", param),
        };
        // OpenAI's "developer" role is the system role of newer models; chat templates know "system"
        return new PromptMessage(role == "developer" ? "system" : role, text);
    }

    private static string Parts(JsonElement parts, string param)
    {
        var text = new StringBuilder();
        foreach (JsonElement part in parts.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.GetString() != "text"
                || !part.TryGetProperty("text", out JsonElement t) || t.ValueKind != JsonValueKind.String)
            {
                throw OpenAiException.BadRequest($"{param}.content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported, not images, audio or files.", param);
            }
            text.Append(t.GetString());
        }
        return text.ToString();
    }

    private static int[] TokenIds(JsonElement prompt)
    {
        var ids = new int[prompt.GetArrayLength()];
        int i = 0;
        foreach (JsonElement t in prompt.EnumerateArray())
        {
            ids[i++] = t.TryGetInt32(out int id) && id >= 0 ? id : throw OpenAiException.BadRequest("'prompt' token ids must be non-negative integers.", "prompt");
        }
        return ids;
    }

    private static void CheckModel(JsonElement body, ModelHost host)
    {
        if (body.TryGetProperty("model", out JsonElement model) && model.ValueKind == JsonValueKind.String && model.GetString() != host.ServedModelName)
        {
            throw new OpenAiException(404, $"The model '{model.GetString()}' does not exist here; this server serves '{host.ServedModelName}' (GET /v1/models).", "model", "model_not_found");
        }
    }

    private static void Refuse(JsonElement body, params string[] fields)
    {
        foreach (string field in fields)
        {
            if (body.TryGetProperty(field, out JsonElement value) && value.ValueKind is not JsonValueKind.Null
                && !(value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0)
                && !(value.ValueKind == JsonValueKind.String && value.GetString() == "none"))
            {
                throw OpenAiException.BadRequest($"'{field}' is not supported by this server: it generates text only.", field);
            }
        }
    }

    private static int? OptionalInt(JsonElement body, string name, int min)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int v) && v >= min
            ? v
            : throw OpenAiException.BadRequest($"'{name}' must be an integer of at least {min}.", name);
    }

    private static double? OptionalNumber(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return value.ValueKind == JsonValueKind.Number ? value.GetDouble() : throw OpenAiException.BadRequest($"'{name}' must be a number.", name);
    }

    private static bool? OptionalBool(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw OpenAiException.BadRequest($"'{name}' must be true or false.", name),
        };
    }
}
