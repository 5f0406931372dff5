namespace SpecDecode;

/// <summary>
/// Proposes draft token trees for the requests of a speculative decoder. Model-free drafters (suffix tree, prompt
/// lookup) and model drafters share this lifecycle.
/// </summary>
/// <remarks>
/// <para>Lifecycle per request: <see cref="StartRequest"/> once with the prompt, then any number of steps, each a
/// <see cref="Propose"/> for the current context followed by <see cref="Observe"/> with the tokens the target emitted
/// (the accepted draft tokens plus the bonus token), and finally <see cref="EndRequest"/>. The drafter tracks each
/// request's context itself: the prompt followed by every observed token.</para>
/// <para>Threading: calls for different requests may run concurrently on different threads; calls for one request
/// must not overlap (one step at a time per request, as a decoder naturally does).</para>
/// </remarks>
public interface IDrafter : IDisposable
{
    /// <summary>A short name for reports, e.g. <c>suffix</c> or <c>prompt-lookup</c>.</summary>
    string Name { get; }

    /// <summary>Starts drafting for a request whose context begins with <paramref name="prompt"/>.</summary>
    /// <param name="request">A valid id not currently active in this drafter.</param>
    /// <param name="prompt">The prompt token ids; may be empty.</param>
    /// <param name="options">Per-request options (for example a conversation id); <c>null</c> for the defaults.</param>
    /// <exception cref="DuplicateRequestException">The request is already active.</exception>
    /// <exception cref="ArgumentException">The id is invalid or a token id is negative.</exception>
    void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options);

    /// <summary>Proposes a draft tree that continues the request's current context.</summary>
    /// <param name="request">An active request.</param>
    /// <param name="maxTokens">The budget: the tree has at most this many nodes; 0 gives <see cref="DraftTree.Empty"/>.</param>
    /// <returns>A tree of at most <paramref name="maxTokens"/> nodes, possibly <see cref="DraftTree.Empty"/>.</returns>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxTokens"/> is negative or above <see cref="MaxBudget"/>.</exception>
    DraftTree Propose(RequestId request, int maxTokens);

    /// <summary>Appends the tokens the target emitted this step (accepted draft tokens and the bonus token) to the request's context.</summary>
    /// <exception cref="UnknownRequestException">The request is not active.</exception>
    /// <exception cref="ArgumentException">A token id is negative.</exception>
    void Observe(RequestId request, ReadOnlySpan<int> emitted);

    /// <summary>Ends the request; what the drafter learned from it may stay cached for later requests.</summary>
    /// <exception cref="UnknownRequestException">The request is not active (never started, or already ended).</exception>
    void EndRequest(RequestId request);

    /// <summary>The largest budget <see cref="Propose"/> accepts.</summary>
    int MaxBudget { get; }
}

/// <summary>Per-request options for <see cref="IDrafter.StartRequest"/>.</summary>
public sealed record DraftRequestOptions
{
    /// <summary>
    /// Names the conversation this request continues. When the prompt extends the context of the conversation's
    /// previous request (its prompt followed by its response), drafters that index the context reuse that index and
    /// only add the new tokens, instead of rebuilding it. <c>null</c> for a stand-alone request.
    /// </summary>
    public string? ConversationId { get; init; }

    /// <summary>
    /// How the target will verify this request's drafts: <c>null</c> or temperature 0 for greedy decoding. Model
    /// drafters read it (a greedy request gets the draft model's most probable tree; a sampled one gets a chain drawn
    /// from the draft distribution, whose probabilities the verifier then needs); model-free drafters ignore it.
    /// </summary>
    public SamplingOptions? Sampling { get; init; }
}

/// <summary>What a batched drafter is asked for one request in one step.</summary>
/// <param name="Request">An active request.</param>
/// <param name="MaxTokens">The budget (see <see cref="IDrafter.Propose"/>).</param>
public readonly record struct DraftQuery(RequestId Request, int MaxTokens);

/// <summary>
/// A drafter that drafts for many requests at once, e.g. a draft model that runs one batched forward for all of them.
/// An engine calls <see cref="ProposeBatch"/> once per step instead of <see cref="IDrafter.Propose"/> per request.
/// </summary>
public interface IBatchDrafter : IDrafter
{
    /// <summary>Proposes one draft per query, in the queries' order (each as <see cref="IDrafter.Propose"/> would).</summary>
    /// <exception cref="UnknownRequestException">A request is not active.</exception>
    /// <exception cref="ArgumentException">A request appears twice.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A budget is negative or above <see cref="IDrafter.MaxBudget"/>.</exception>
    IReadOnlyList<DraftTree> ProposeBatch(IReadOnlyList<DraftQuery> queries);
}
