namespace SpecDecode;

/// <summary>One message of a chat prompt, rendered into tokens with the checkpoint's chat template.</summary>
/// <param name="Role">The role as chat templates name it: <c>system</c>, <c>user</c>, <c>assistant</c> (or another role
/// the template knows, such as <c>tool</c>).</param>
/// <param name="Content">The message text.</param>
public sealed record PromptMessage(string Role, string Content)
{
    /// <summary>A <c>system</c> message.</summary>
    public static PromptMessage System(string content) => new("system", content);

    /// <summary>A <c>user</c> message.</summary>
    public static PromptMessage User(string content) => new("user", content);

    /// <summary>An <c>assistant</c> message.</summary>
    public static PromptMessage Assistant(string content) => new("assistant", content);
}
