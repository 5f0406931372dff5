namespace SpecDecode.Replay;

/// <summary>The speaker of a trace message; the only roles the replay protocol knows.</summary>
public enum MessageRole
{
    /// <summary>The system prompt (<c>"system"</c>).</summary>
    System,

    /// <summary>The user, including command output fed back to the agent (<c>"user"</c>).</summary>
    User,

    /// <summary>The model's own output (<c>"assistant"</c>).</summary>
    Assistant,
}

/// <summary>Conversion between <see cref="MessageRole"/> and the role strings of the trace format.</summary>
public static class MessageRoles
{
    /// <summary>The role as written in the trace and in the chat header, e.g. <c>"assistant"</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="role"/> is not a defined role.</exception>
    public static string ToName(this MessageRole role) => role switch
    {
        MessageRole.System => "system",
        MessageRole.User => "user",
        MessageRole.Assistant => "assistant",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "Not a message role."),
    };

    /// <summary>Parses a role string of the trace (exact, lower case).</summary>
    /// <returns>False for any other string.</returns>
    public static bool TryParse(ReadOnlySpan<char> name, out MessageRole role)
    {
        switch (name)
        {
            case "system": role = MessageRole.System; return true;
            case "user": role = MessageRole.User; return true;
            case "assistant": role = MessageRole.Assistant; return true;
            default: role = default; return false;
        }
    }
}
