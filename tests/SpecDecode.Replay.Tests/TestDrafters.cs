namespace SpecDecode.Replay.Tests;

/// <summary>Base of the hand-made drafters: tracks each request's context (prompt + observed tokens) and checks the lifecycle.</summary>
internal abstract class RecordingDrafter : IDrafter
{
    protected readonly Dictionary<RequestId, List<int>> Contexts = [];

    public abstract string Name { get; }

    public int MaxBudget => 1024;

    /// <summary>Final context of every ended request, in order.</summary>
    public List<int[]> EndedContexts { get; } = [];

    /// <summary>Conversation id of every started request, in order.</summary>
    public List<string?> Conversations { get; } = [];

    /// <summary>Every request id started, in order.</summary>
    public List<RequestId> Started { get; } = [];

    /// <summary>Lengths of every Observe call.</summary>
    public List<int> ObservedLengths { get; } = [];

    public virtual void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        if (!Contexts.TryAdd(request, [.. prompt.ToArray()]))
        {
            throw new DuplicateRequestException(request, Name);
        }
        Started.Add(request);
        Conversations.Add(options?.ConversationId);
    }

    public DraftTree Propose(RequestId request, int maxTokens)
    {
        List<int> context = Get(request);
        return Draft(request, context, maxTokens);
    }

    protected abstract DraftTree Draft(RequestId request, List<int> context, int maxTokens);

    public virtual void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        Get(request).AddRange(emitted.ToArray());
        ObservedLengths.Add(emitted.Length);
    }

    public void EndRequest(RequestId request)
    {
        EndedContexts.Add(Get(request).ToArray());
        Contexts.Remove(request);
    }

    public void Dispose() { }

    private List<int> Get(RequestId request) =>
        Contexts.TryGetValue(request, out List<int>? c) ? c : throw new UnknownRequestException(request, Name);
}

/// <summary>Never drafts: every step emits exactly one token.</summary>
internal sealed class NothingDrafter : RecordingDrafter
{
    public override string Name => "nothing";

    protected override DraftTree Draft(RequestId request, List<int> context, int maxTokens) => DraftTree.Empty;
}

/// <summary>Drafts a chain that repeats the last context token up to the budget.</summary>
internal sealed class RepeatLastDrafter : RecordingDrafter
{
    public override string Name => "repeat-last";

    protected override DraftTree Draft(RequestId request, List<int> context, int maxTokens) =>
        context.Count == 0 || maxTokens == 0 ? DraftTree.Empty : DraftTree.Chain(Enumerable.Repeat(context[^1], maxTokens).ToArray());
}

/// <summary>
/// An oracle told the true responses in replay order: drafts the next <c>budget</c> true tokens. Every draft token is
/// accepted, so a response of n tokens takes ceil(n / (budget + 1)) steps.
/// </summary>
internal sealed class OracleDrafter(IReadOnlyList<int[]> responses) : RecordingDrafter
{
    private readonly Dictionary<RequestId, (int[] Response, int PromptLength)> _truth = [];
    private int _next;

    public override string Name => "oracle";

    public override void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        base.StartRequest(request, prompt, options);
        _truth[request] = (responses[_next++], prompt.Length);
    }

    protected override DraftTree Draft(RequestId request, List<int> context, int maxTokens)
    {
        (int[] response, int promptLength) = _truth[request];
        int emitted = context.Count - promptLength;
        int n = Math.Min(maxTokens, response.Length - emitted);
        return DraftTree.Chain(response.AsSpan(emitted, n));
    }
}

/// <summary>Breaks the contract: proposes one token more than the budget.</summary>
internal sealed class OverBudgetDrafter : RecordingDrafter
{
    public override string Name => "over-budget";

    protected override DraftTree Draft(RequestId request, List<int> context, int maxTokens) =>
        DraftTree.Chain(Enumerable.Range(0, maxTokens + 1).ToArray());
}

/// <summary>Returns one pre-built draft every step and keeps no context: allocates nothing per step itself.</summary>
internal sealed class FixedDraftDrafter(DraftTree draft) : IDrafter
{
    public string Name => "fixed";

    public int MaxBudget => 1024;

    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options) { }

    public DraftTree Propose(RequestId request, int maxTokens) => draft;

    public void Observe(RequestId request, ReadOnlySpan<int> emitted) { }

    public void EndRequest(RequestId request) { }

    public void Dispose() { }
}
