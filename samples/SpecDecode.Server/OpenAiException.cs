using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpecDecode.Server;

/// <summary>A request the server refuses, answered as OpenAI answers it: <c>{"error": {"message", "type", "param",
/// "code"}}</c> with <see cref="Status"/>.</summary>
/// <param name="status">The HTTP status: 400, 401, 404, 503.</param>
/// <param name="message">What is wrong and what to send instead.</param>
/// <param name="param">The request field at fault, if one is.</param>
/// <param name="code">A machine-readable code (OpenAI's where it has one: <c>context_length_exceeded</c>,
/// <c>model_not_found</c>, <c>invalid_api_key</c>).</param>
public sealed class OpenAiException(int status, string message, string? param = null, string? code = null) : Exception(message)
{
    /// <summary>The HTTP status.</summary>
    public int Status { get; } = status;

    /// <summary>The request field at fault, if one is.</summary>
    public string? Param { get; } = param;

    /// <summary>The machine-readable code, if any.</summary>
    public string? Code { get; } = code;

    /// <summary>OpenAI's error type for <see cref="Status"/>.</summary>
    public string Type => Status switch
    {
        401 => "authentication_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    /// <summary>A 400 for a bad field.</summary>
    public static OpenAiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    /// <summary>Writes the error body with its status.</summary>
    public Task WriteAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.StatusCode = Status;
        if (Status == 503)
        {
            context.Response.Headers.RetryAfter = "1";
        }
        var body = new ErrorBody(new ErrorDetail(Message, Type, Param, Code));
        return context.Response.WriteAsJsonAsync(body, ServerJson.Options);
    }

    private sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

    private sealed record ErrorDetail(
        [property: JsonPropertyName("message")] string Message,
        [property: JsonPropertyName("type")] string Type,
        [property: JsonPropertyName("param")] string? Param,
        [property: JsonPropertyName("code")] string? Code);
}

/// <summary>The server's JSON settings: nulls written (OpenAI writes <c>"logprobs": null</c>), no indentation.</summary>
public static class ServerJson
{
    /// <summary>The options every response is written with.</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };
}
