namespace SpecDecode;

/// <summary>Why a request stopped generating.</summary>
public enum FinishReason
{
    /// <summary>It generated <see cref="GenerationRequest.MaxNewTokens"/> tokens.</summary>
    Length,

    /// <summary>It produced a stop token or a stop string.</summary>
    Stop,

    /// <summary>Its context reached the model's maximum context (prompt + generated tokens).</summary>
    ContextFull,
}

/// <summary>The outcome of a request.</summary>
/// <param name="Text">The generated text (without the stop string or stop token that ended it).</param>
/// <param name="TokenIds">The generated token ids (without a stop token; a stop string's tokens are cut with it, so the
/// ids may decode to a little more than <paramref name="Text"/> when the stop string ended inside a token).</param>
/// <param name="FinishReason">Why generation stopped.</param>
/// <param name="Statistics">What speculation did for this request.</param>
public sealed record GenerationResult(string Text, IReadOnlyList<int> TokenIds, FinishReason FinishReason, GenerationStatistics Statistics);

/// <summary>A piece of a streamed generation.</summary>
/// <param name="Text">New text: never splits a multi-byte character or a token that decodes only with its successor;
/// may be empty on the final chunk.</param>
/// <param name="TokenIds">The token ids emitted with this chunk (possibly more than <paramref name="Text"/> shows yet, when
/// text is held back until it is complete or cannot be the start of a stop string).</param>
/// <param name="Final">Set on the last chunk only: the whole result.</param>
public sealed record GenerationChunk(string Text, IReadOnlyList<int> TokenIds, GenerationResult? Final);
