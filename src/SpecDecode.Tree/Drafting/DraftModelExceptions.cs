namespace SpecDecode.Tree;

/// <summary>
/// Thrown by <see cref="DraftModelDrafter.EnsureSameVocabulary"/> when the draft model and the target do not share a
/// vocabulary: a token id would mean different text to the two models, so the draft's proposals would be rejected (or,
/// past the target's vocabulary, invalid).
/// </summary>
public sealed class VocabularyMismatchException : SpecDecodeException
{
    /// <summary>Creates the exception with a message that says what differs and what to do.</summary>
    /// <param name="message">What differs and what to do.</param>
    /// <param name="targetVocabSize">The target model's <c>vocab_size</c>.</param>
    /// <param name="draftVocabSize">The draft model's <c>vocab_size</c>.</param>
    /// <param name="tokenId">The first token id found to differ, where one was compared; null otherwise.</param>
    public VocabularyMismatchException(string message, int targetVocabSize, int draftVocabSize, int? tokenId = null)
        : base(message)
    {
        TargetVocabSize = targetVocabSize;
        DraftVocabSize = draftVocabSize;
        TokenId = tokenId;
    }

    /// <summary>The target model's <c>vocab_size</c> (rows of its embedding table).</summary>
    public int TargetVocabSize { get; }

    /// <summary>The draft model's <c>vocab_size</c>.</summary>
    public int DraftVocabSize { get; }

    /// <summary>The first token id found to mean different things to the two tokenizers; null when the mismatch is not
    /// about one id (vocabulary sizes, or a probe text's encoding).</summary>
    public int? TokenId { get; }
}

/// <summary>
/// Thrown by <see cref="DraftModelDrafter.StartRequest"/> when every KV-cache slot of the draft model is held by an
/// active request. End a request first, or create the drafter with a larger <see cref="DraftModelOptions.MaxRequests"/>.
/// </summary>
public sealed class DraftSlotsExhaustedException : InvalidOperationException
{
    /// <summary>Creates the exception for a drafter of <paramref name="slots"/> slots refusing <paramref name="request"/>.</summary>
    public DraftSlotsExhaustedException(RequestId request, int slots)
        : base($"draft-model: request {request} cannot start, all {slots} KV-cache slots are held by active requests. " +
               "End a request first (EndRequest frees its slot), or raise DraftModelOptions.MaxRequests.")
    {
        Request = request;
        Slots = slots;
    }

    /// <summary>The request that could not start.</summary>
    public RequestId Request { get; }

    /// <summary>The drafter's slot count (<see cref="DraftModelOptions.MaxRequests"/>).</summary>
    public int Slots { get; }
}
