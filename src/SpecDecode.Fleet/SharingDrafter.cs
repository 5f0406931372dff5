using SpecDecode.Suffix;
using System.Collections.Concurrent;

namespace SpecDecode.Fleet;

/// <summary>
/// A <see cref="SuffixDrafter"/> whose finished responses are published to the fleet: drafts, observes and ends
/// requests exactly as the inner drafter does, and at <see cref="EndRequest"/> hands the request's emitted tokens to
/// <see cref="ResponseSharing.Publish"/> (a queue write; the step never waits for the broker). A host that already
/// uses a <see cref="SuffixDrafter"/> wraps it and changes nothing else.
/// </summary>
public sealed class SharingDrafter : IDrafter
{
    private readonly SuffixDrafter _inner;
    private readonly ResponseSharing _sharing;
    private readonly ConcurrentDictionary<RequestId, List<int>> _responses = new();

    /// <summary>Wraps <paramref name="inner"/>; <paramref name="sharing"/> must have been started on <c>inner.Cache</c>.</summary>
    /// <exception cref="ArgumentException"><paramref name="sharing"/> feeds another cache.</exception>
    public SharingDrafter(SuffixDrafter inner, ResponseSharing sharing)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(sharing);
        if (!ReferenceEquals(sharing.Cache, inner.Cache))
        {
            throw new ArgumentException("The sharing was started on another cache: start it with ResponseSharing.Start(inner.Cache, …).", nameof(sharing));
        }
        _inner = inner;
        _sharing = sharing;
    }

    /// <summary>The wrapped drafter.</summary>
    public SuffixDrafter Inner => _inner;

    /// <inheritdoc />
    public string Name => _inner.Name + "-shared";

    /// <inheritdoc />
    public int MaxBudget => _inner.MaxBudget;

    /// <inheritdoc />
    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        _inner.StartRequest(request, prompt, options);
        _responses[request] = [];
    }

    /// <inheritdoc />
    public DraftTree Propose(RequestId request, int maxTokens) => _inner.Propose(request, maxTokens);

    /// <inheritdoc />
    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        _inner.Observe(request, emitted);
        if (_responses.TryGetValue(request, out List<int>? response))
        {
            response.AddRange(emitted);
        }
    }

    /// <inheritdoc />
    public void EndRequest(RequestId request)
    {
        _inner.EndRequest(request);
        if (_responses.TryRemove(request, out List<int>? response) && response.Count > 0)
        {
            try
            {
                _sharing.Publish(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(response));
            }
            catch (ObjectDisposedException)
            {
                // sharing was shut down first: the response stays local
            }
        }
    }

    /// <summary>Disposes the inner drafter (not the sharing, which the host disposes asynchronously).</summary>
    public void Dispose() => _inner.Dispose();
}
