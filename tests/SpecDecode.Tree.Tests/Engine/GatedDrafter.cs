namespace SpecDecode.Tree.Tests;

/// <summary>
/// Holds the engine thread in the <c>gateAt</c>-th <see cref="Observe"/> of one request (the one whose prompt is
/// <c>prompt</c>, or any when null) until the test sets <see cref="Release"/> (at most two minutes): a cancellation made
/// meanwhile is certain to land mid-call. Without it a starved test thread can read a call's last token before cancelling,
/// and nothing is cancelled (seen in the paged engine's test and on a loaded CI run of the engine's). The inner drafter
/// stays the caller's to dispose.
/// </summary>
internal sealed class GatedDrafter(IDrafter inner, int gateAt, IReadOnlyList<int>? prompt = null) : IDrafter
{
    private RequestId? _gated;
    private int _observed;

    public ManualResetEventSlim Release { get; } = new();

    public string Name => inner.Name;

    public int MaxBudget => inner.MaxBudget;

    public void StartRequest(RequestId request, ReadOnlySpan<int> tokens, DraftRequestOptions? options)
    {
        if (prompt is null || tokens.SequenceEqual(prompt.ToArray()))
        {
            _gated = request;
        }
        inner.StartRequest(request, tokens, options);
    }

    public DraftTree Propose(RequestId request, int maxTokens) => inner.Propose(request, maxTokens);

    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        inner.Observe(request, emitted);
        if (request == _gated && ++_observed == gateAt)
        {
            Release.Wait(TimeSpan.FromMinutes(2));
        }
    }

    public void EndRequest(RequestId request) => inner.EndRequest(request);

    public void Dispose() => Release.Dispose();
}
