namespace SpecDecode;

/// <summary>
/// A request failed because a plug-in of the engine failed for it: the drafter threw (or proposed a draft the engine
/// cannot verify), the tokenizer threw while encoding the prompt or decoding the output, or the speculation policy threw.
/// Only that request fails; the engine goes on serving the others. <see cref="Exception.InnerException"/> is what the
/// plug-in threw, when it threw.
/// </summary>
public sealed class PluginFailedException : SpecDecodeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="plugin">The plug-in, e.g. <c>drafter 'suffix'</c> or <c>tokenizer</c>.</param>
    /// <param name="operation">The call that failed, e.g. <c>Propose</c>.</param>
    /// <param name="request">The request that failed; <see cref="RequestId.Invalid"/> when it had no id yet.</param>
    /// <param name="detail">What went wrong, when the plug-in did not throw (e.g. the draft it returned); null to use the
    /// inner exception's message.</param>
    /// <param name="inner">What the plug-in threw, if it threw.</param>
    public PluginFailedException(string plugin, string operation, RequestId request, string? detail, Exception? inner = null)
        : base(Format(plugin, operation, request, detail, inner), inner)
    {
        Plugin = plugin;
        Operation = operation;
        Request = request;
    }

    /// <summary>The plug-in, e.g. <c>drafter 'suffix'</c>, <c>tokenizer</c> or <c>speculation policy</c>.</summary>
    public string Plugin { get; }

    /// <summary>The call that failed, e.g. <c>Propose</c>, <c>StartRequest</c> or <c>Decode</c>.</summary>
    public string Operation { get; }

    /// <summary>The request that failed.</summary>
    public RequestId Request { get; }

    private static string Format(string plugin, string operation, RequestId request, string? detail, Exception? inner)
    {
        string what = detail ?? (inner is null ? "it failed" : $"it threw {inner.GetType().Name}: {inner.Message}");
        string which = request.IsValid ? $" for request {request.Value}" : "";
        return $"The {plugin} failed in {operation}{which}: {what}. Only this request failed; fix or replace the {plugin}.";
    }
}
