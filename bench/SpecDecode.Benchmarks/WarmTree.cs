using SpecDecode.Replay;
using SpecDecode.Suffix;

namespace SpecDecode.Benchmarks;

/// <summary>A global tree warmed with every response of the first trajectories, and data held out from it.</summary>
internal static class WarmTree
{
    public const int WarmTrajectories = 25;

    /// <summary>A new tree holding the responses of the first <see cref="WarmTrajectories"/> trajectories (ids 0..).</summary>
    public static SuffixTree Build()
    {
        var tree = new SuffixTree(64);
        int id = 0;
        foreach (TraceTrajectory t in TraceData.Load().Take(WarmTrajectories))
        {
            foreach (TraceCall call in t.Calls)
            {
                tree.Extend(id++, call.Response.Span);
            }
        }
        return tree;
    }

    /// <summary>Calls of the trajectories after the warm ones.</summary>
    public static TraceCall[] HeldOutCalls() => TraceData.Load().Skip(WarmTrajectories).SelectMany(t => t.Calls).ToArray();

    /// <summary>Held-out responses, in order, cut so that they hold exactly <paramref name="tokens"/> tokens in all.</summary>
    public static int[][] HeldOutResponses(int tokens)
    {
        var result = new List<int[]>();
        foreach (TraceCall call in HeldOutCalls())
        {
            int take = Math.Min(tokens, call.ResponseLength);
            if (take > 0)
            {
                result.Add(call.Response.Span[..take].ToArray());
                tokens -= take;
            }
            if (tokens == 0)
            {
                return result.ToArray();
            }
        }
        throw new InvalidOperationException("Not enough held-out response tokens: load more trajectories.");
    }
}
