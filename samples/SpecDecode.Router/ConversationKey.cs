using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.WebUtilities;

namespace SpecDecode.Router;

/// <summary>
/// Finds a request's conversation: the <see cref="RouterOptions.ConversationHeader"/> header, or else a hash of the
/// first messages of an OpenAI-style body (<c>{"messages":[{"role":…,"content":…},…]}</c>), which an agent resends
/// unchanged with every call of one conversation.
/// </summary>
internal static class ConversationKey
{
    /// <summary>The key <see cref="HttpContext.Items"/> holds the conversation under.</summary>
    public const string ItemKey = "SpecDecode.Conversation";

    /// <summary>The conversation of the request, or null when it names none (then any replica may serve it).</summary>
    /// <remarks>The body is buffered (so it can be forwarded, and sent again on a retry) and parsed once.</remarks>
    public static async Task<string?> FindAsync(HttpRequest request, RouterOptions options)
    {
        if (request.Headers.TryGetValue(RouterOptions.ConversationHeader, out var header) && !string.IsNullOrWhiteSpace(header))
        {
            return "h:" + header.ToString().Trim();
        }
        if (!HttpMethods.IsPost(request.Method) || request.ContentLength is 0 || request.ContentLength > options.MaxBodyBytes
            || request.ContentType?.Contains("json", StringComparison.OrdinalIgnoreCase) != true)
        {
            return null;
        }
        // No buffer limit: a limit throws when a body without a Content-Length passes it, and the client would get a 500.
        // The server's own request-size limit (Kestrel's MaxRequestBodySize) bounds what is buffered.
        request.EnableBuffering(bufferThreshold: 1 << 20);
        try
        {
            if (request.ContentLength is null)
            {
                // chunked: its size shows once it is read; past 1 MB it is buffered on disk (it is forwarded anyway)
                await request.Body.DrainAsync(request.HttpContext.RequestAborted);
                if (request.Body.Length > options.MaxBodyBytes)
                {
                    return null;
                }
                request.Body.Position = 0;
            }
            using JsonDocument body = await JsonDocument.ParseAsync(request.Body, cancellationToken: request.HttpContext.RequestAborted);
            return FromMessages(body.RootElement, options.FirstMessages);
        }
        catch (JsonException)
        {
            return null;   // not JSON after all: the replica will answer it
        }
        finally
        {
            request.Body.Position = 0;
        }
    }

    /// <summary>A hash of the first <paramref name="count"/> messages' roles and contents, or null without messages.</summary>
    internal static string? FromMessages(JsonElement root, int count)
    {
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("messages", out JsonElement messages)
            || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            return null;
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        int taken = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            if (taken++ == count)
            {
                break;
            }
            string role = message.ValueKind == JsonValueKind.Object && message.TryGetProperty("role", out JsonElement r) ? r.ToString() : "";
            string content = message.ValueKind == JsonValueKind.Object && message.TryGetProperty("content", out JsonElement c) ? c.GetRawText() : message.GetRawText();
            hash.AppendData(Encoding.UTF8.GetBytes(role));
            hash.AppendData([0]);
            hash.AppendData(Encoding.UTF8.GetBytes(content));
            hash.AppendData([0]);
        }
        return "m:" + Convert.ToHexStringLower(hash.GetHashAndReset().AsSpan(0, 16));
    }
}
