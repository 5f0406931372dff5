using SpecDecode.Replay;

namespace SpecDecode.EngineBench;

/// <summary>One LLM call of a trace: the prompt and the recorded response, token ids mapped into the target's vocabulary.</summary>
internal sealed record TraceCallTokens(string TaskId, int CallIndex, int[] Prompt, int[] Response);

/// <summary>
/// The calls a run replays: warm-up calls that only teach the drafter (as the replay's earlier trajectories would), then
/// evaluation calls that go through the engine. Token ids are the replay protocol's o200k_base ids taken modulo the
/// target's vocabulary (a random-weight target only needs ids it can embed; the drafter sees the same mapped ids, and the
/// model-free reference is computed on them too).
/// </summary>
internal sealed record Workload(IReadOnlyList<TraceCallTokens> Warmup, IReadOnlyList<TraceCallTokens> Evaluation, int SkippedTooLong)
{
    public static Workload Load(string traces, int warmupTrajectories, int evaluationCalls, int maxContext, int headroom, int vocab, int maxResponse = 0)
    {
        var warmup = new List<TraceCallTokens>();
        var evaluation = new List<TraceCallTokens>();
        int skipped = 0, trajectory = 0;
        TraceReader reader = TraceReader.Open(traces, ProtocolTokenizer.CreateO200kBase());
        foreach (TraceTrajectory t in reader.Read())
        {
            bool warm = trajectory++ < warmupTrajectories;
            foreach (TraceCall call in t.Calls)
            {
                ReadOnlySpan<int> response = call.Response.Span;
                if (!warm && maxResponse > 0 && response.Length > maxResponse)
                {
                    response = response[..maxResponse];
                }
                var c = new TraceCallTokens(t.TaskId, call.Index, Map(call.Prompt.Span, vocab), Map(response, vocab));
                if (warm)
                {
                    warmup.Add(c);
                }
                else if (c.Response.Length == 0)
                {
                    continue;
                }
                else if (c.Prompt.Length + c.Response.Length + headroom > maxContext)
                {
                    skipped++;
                }
                else
                {
                    evaluation.Add(c);
                }
            }
            if (!warm && evaluation.Count >= evaluationCalls)
            {
                break;
            }
        }
        return new Workload(warmup, evaluation.Take(evaluationCalls).ToArray(), skipped);
    }

    private static int[] Map(ReadOnlySpan<int> ids, int vocab)
    {
        var mapped = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            mapped[i] = ids[i] % vocab;
        }
        return mapped;
    }

    /// <summary>Teaches a drafter the warm-up calls: each prompt, then its whole response, then the end of the request.</summary>
    public void Teach(IDrafter drafter)
    {
        long id = -1_000_000;
        foreach (TraceCallTokens call in Warmup)
        {
            var request = new RequestId(id--);
            drafter.StartRequest(request, call.Prompt, new DraftRequestOptions { ConversationId = call.TaskId });
            drafter.Observe(request, call.Response);
            drafter.EndRequest(request);
        }
    }
}
