using System.Runtime.ExceptionServices;

namespace SpecDecode;

/// <summary>
/// When a step asks one drafter for many requests' drafts on several threads at once, and how. <see cref="IDrafter"/>
/// lets calls for different requests overlap, so the engine and the hybrid drafter run a large batch's
/// <see cref="IDrafter.Propose"/> calls in parallel: the suffix drafter's ~70 µs a request was 1-2 ms of a 13-15 ms step at
/// batch 32-48 on an H100 machine, drafted one after another. The one owner of that rule.
/// </summary>
internal static class ParallelProposals
{
    /// <summary>Requests from which a step drafts in parallel (below it the threads' start-up costs more than it saves).</summary>
    public const int MinRequests = 8;

    /// <summary>Runs <paramref name="body"/> for each item, in parallel when there are <see cref="MinRequests"/> or more
    /// and more than one core. A body that throws: the first exception is rethrown as itself (not wrapped), as the serial
    /// loop would throw it; bodies that must not fail the others catch their own.</summary>
    public static void ForEach(IReadOnlyList<int> items, Action<int> body)
    {
        if (items.Count < MinRequests || Environment.ProcessorCount < 2)
        {
            foreach (int item in items)
            {
                body(item);
            }
            return;
        }
        try
        {
            Parallel.ForEach(items, body);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
    }
}
