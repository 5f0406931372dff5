using System.Diagnostics;

namespace SpecDecode.Replay;

/// <summary>One LLM call of a trajectory: its prompt and its response as token ids, per the replay protocol.</summary>
/// <remarks>Both are slices of the trajectory's single token array, so prompt k+1 starts with prompt k, response k and
/// the footer by construction. Shapes: <see cref="Prompt"/> is int[<see cref="PromptLength"/>], <see cref="Response"/>
/// is int[<see cref="ResponseLength"/>] with at least one token.</remarks>
[DebuggerDisplay("Call {Index}: prompt {PromptLength}, response {ResponseLength}")]
public readonly struct TraceCall
{
    private readonly int[] _tokens;

    internal TraceCall(int index, int[] tokens, int promptLength, int responseLength)
    {
        Index = index;
        _tokens = tokens;
        PromptLength = promptLength;
        ResponseLength = responseLength;
    }

    /// <summary>k: the position of the call in its trajectory (0-based).</summary>
    public int Index { get; }

    /// <summary>Prompt length in tokens (every message before the response, then the assistant header).</summary>
    public int PromptLength { get; }

    /// <summary>Response length in tokens (the assistant message's content alone); at least 1.</summary>
    public int ResponseLength { get; }

    /// <summary>The prompt ids.</summary>
    public ReadOnlyMemory<int> Prompt => _tokens.AsMemory(0, PromptLength);

    /// <summary>The response ids.</summary>
    public ReadOnlyMemory<int> Response => _tokens.AsMemory(PromptLength, ResponseLength);
}

/// <summary>One trace line: a task's whole agent conversation, tokenized, with its calls.</summary>
[DebuggerDisplay("{TaskId}: {Calls.Length} calls, {TokenCount} tokens")]
public sealed class TraceTrajectory
{
    internal TraceTrajectory(string taskId, bool resolved, long lineNumber, int[] tokens, TraceCall[] calls)
    {
        TaskId = taskId;
        Resolved = resolved;
        LineNumber = lineNumber;
        Tokens = tokens;
        Calls = calls;
    }

    /// <summary>The SWE-bench instance id, e.g. <c>astropy__astropy-12907</c>.</summary>
    public string TaskId { get; }

    /// <summary>Whether the trajectory solved its task.</summary>
    public bool Resolved { get; }

    /// <summary>1-based line of the trace file.</summary>
    public long LineNumber { get; }

    /// <summary>The conversation up to the end of the last replayed response, as token ids (int[TokenCount]).</summary>
    public int[] Tokens { get; }

    /// <summary><see cref="Tokens"/>.Length.</summary>
    public int TokenCount => Tokens.Length;

    /// <summary>The calls in order.</summary>
    public TraceCall[] Calls { get; }
}
