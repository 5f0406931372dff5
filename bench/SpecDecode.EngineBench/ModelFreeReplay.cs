namespace SpecDecode.EngineBench;

/// <summary>The replay protocol's model-free figure for the evaluation calls: each step the drafter proposes under the
/// budget, the accepted length is the longest path matching the recorded response, accepted + 1 tokens are emitted (only
/// what remains at the end). Calls run one after another in file order, as the engine serves them at batch 1.</summary>
internal static class ModelFreeReplay
{
    public static (double TokensPerStep, double AcceptanceRate, long Steps, long Tokens) Run(IDrafter drafter, IReadOnlyList<TraceCallTokens> calls, int budget)
    {
        long steps = 0, tokens = 0, drafted = 0, accepted = 0, id = 1;
        foreach (TraceCallTokens call in calls)
        {
            var request = new RequestId(id++);
            drafter.StartRequest(request, call.Prompt, new DraftRequestOptions { ConversationId = call.TaskId });
            int done = 0;
            while (done < call.Response.Length)
            {
                int remaining = call.Response.Length - done;
                DraftTree draft = drafter.Propose(request, Math.Min(budget, remaining - 1));
                int n = draft.AcceptGreedy(call.Response.AsSpan(done), out _);
                int emit = Math.Min(n + 1, remaining);
                drafted += draft.Count;
                accepted += n;
                drafter.Observe(request, call.Response.AsSpan(done, emit));
                done += emit;
                steps++;
            }
            tokens += call.Response.Length;
            drafter.EndRequest(request);
        }
        return ((double)tokens / steps, drafted == 0 ? 0 : (double)accepted / drafted, steps, tokens);
    }
}
