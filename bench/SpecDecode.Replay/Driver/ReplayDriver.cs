using System.Diagnostics;

namespace SpecDecode.Replay;

/// <summary>
/// Replays trace calls through an <see cref="IDrafter"/> as a greedy target would verify its drafts, and measures
/// what each step emits and what drafting costs.
/// </summary>
/// <remarks>
/// <para>Per call, in file order with the drafter's state carried over: <c>StartRequest(new id, prompt,
/// ConversationId = task_id)</c>; then steps until the whole response is emitted: <c>Propose(id, budget)</c>, accepted
/// = <see cref="DraftTree.AcceptGreedy"/> against the remaining true response, emitted = the accepted tokens plus the
/// next true token (the bonus), or only what remains at the end of the response, <c>Observe(id, emitted)</c>; then
/// <c>EndRequest(id)</c>. The drafter only ever receives slices of the response that were emitted.</para>
/// <para>This is the replay protocol of <c>shared/data/swebench/README.md</c> (SuffixDecoding, Oliaro et al., 2024,
/// evaluates its drafter the same way).</para>
/// </remarks>
public static class ReplayDriver
{
    /// <summary>Replays every call of <paramref name="trajectories"/> through <paramref name="drafter"/>.</summary>
    /// <param name="drafter">The drafter; its state carries over from call to call.</param>
    /// <param name="trajectories">Trajectories in file order (read lazily: the time spent reading is reported apart).</param>
    /// <param name="settings">Budget, label and memory probe.</param>
    /// <param name="callCompleted">Invoked after each call (for progress); may be null.</param>
    /// <exception cref="ArgumentOutOfRangeException">The budget is negative or above the drafter's <see cref="IDrafter.MaxBudget"/>.</exception>
    /// <exception cref="ReplayException">The drafter threw, or broke its contract (a draft over the budget).</exception>
    public static ReplayResult Run(IDrafter drafter, IEnumerable<TraceTrajectory> trajectories, ReplaySettings settings,
        Action? callCompleted = null)
    {
        ArgumentNullException.ThrowIfNull(drafter);
        ArgumentNullException.ThrowIfNull(trajectories);
        ArgumentNullException.ThrowIfNull(settings);
        int budget = settings.Budget;
        ArgumentOutOfRangeException.ThrowIfNegative(budget, nameof(settings.Budget));
        if (budget > drafter.MaxBudget)
        {
            throw new ArgumentOutOfRangeException(nameof(settings), budget,
                $"The budget {budget} is above the drafter '{drafter.Name}''s MaxBudget of {drafter.MaxBudget}.");
        }

        long heapBefore = settings.MeasureHeap ? ProcessMemory.LiveManagedBytes() : 0;
        var recorder = new ReplayRecorder(budget);
        int trajectoryCount = 0;
        long nextRequest = 1;
        long readTicks = 0;
        long wallStart = Stopwatch.GetTimestamp();
        using (IEnumerator<TraceTrajectory> e = trajectories.GetEnumerator())
        {
            while (true)
            {
                long readStart = Stopwatch.GetTimestamp();
                bool more = e.MoveNext();
                readTicks += Stopwatch.GetTimestamp() - readStart;
                if (!more)
                {
                    break;
                }
                TraceTrajectory trajectory = e.Current;
                trajectoryCount++;
                var options = new DraftRequestOptions { ConversationId = trajectory.TaskId };
                foreach (TraceCall call in trajectory.Calls)
                {
                    var request = new RequestId(nextRequest++);
                    try
                    {
                        ReplayCall(drafter, request, call, options, budget, recorder);
                    }
                    catch (Exception ex)
                    {
                        throw new ReplayException(
                            $"Drafter '{drafter.Name}' failed on {trajectory.TaskId} (line {trajectory.LineNumber}) call {call.Index}: {ex.Message}", ex);
                    }
                    callCompleted?.Invoke();
                }
            }
        }
        long wallTicks = Stopwatch.GetTimestamp() - wallStart - readTicks;

        long drafterMemory = settings.DrafterMemoryBytes?.Invoke() ?? -1;
        // The recorder's sample arrays are live too: leave them out, so that the growth is what the drafter retains.
        long heapGrowth = settings.MeasureHeap ? ProcessMemory.LiveManagedBytes() - heapBefore - recorder.RetainedBytes : -1;
        GC.KeepAlive(drafter);
        SpeculationMetrics m = recorder.Metrics;
        return new ReplayResult
        {
            Drafter = settings.Label ?? drafter.Name,
            Budget = budget,
            Trajectories = trajectoryCount,
            Calls = recorder.Calls,
            PromptTokens = recorder.PromptTokens,
            ResponseTokens = recorder.ResponseTokens,
            Steps = m.Steps,
            Drafts = m.Drafts,
            DraftedTokens = m.DraftTokens,
            AcceptedTokens = m.AcceptedTokens,
            AcceptedPerPosition = m.AcceptedPerPosition,
            DraftedPerPosition = recorder.DraftedPerDepth(),
            DraftingTimeUs = recorder.DraftingMicroseconds,
            CacheUpdateTimePerTokenUs = recorder.CacheUpdateMicrosecondsPerToken,
            RequestStartMs = recorder.RequestStartMilliseconds,
            EndRequestUs = recorder.EndRequestMicroseconds,
            DraftingSeconds = ReplayRecorder.Seconds(recorder.DraftingTicks),
            CacheUpdateSeconds = ReplayRecorder.Seconds(recorder.ObserveTicks),
            WallSeconds = ReplayRecorder.Seconds(wallTicks),
            TraceReadSeconds = ReplayRecorder.Seconds(readTicks),
            DrafterMemoryBytes = drafterMemory,
            ManagedHeapGrowthBytes = heapGrowth,
            ProcessPeakMemoryBytes = ProcessMemory.PeakBytes(),
        };
    }

    /// <summary>Proposes a draft for the request and verifies it greedily against the true <paramref name="remaining"/>
    /// response tokens (the caller then lets the drafter observe the emitted ones).</summary>
    /// <exception cref="ReplayException">The draft is over the budget.</exception>
    internal static GreedyStep ProposeAndAccept(IDrafter drafter, RequestId request, ReadOnlySpan<int> remaining, int budget)
    {
        long start = Stopwatch.GetTimestamp();
        DraftTree draft = drafter.Propose(request, budget);
        long ticks = Stopwatch.GetTimestamp() - start;
        if (draft.Count > budget)
        {
            throw new ReplayException($"Drafter '{drafter.Name}' proposed {draft.Count} tokens over the budget of {budget}.");
        }
        int accepted = draft.AcceptGreedy(remaining, out _);
        return new GreedyStep(draft, accepted, Math.Min(accepted + 1, remaining.Length), ticks);
    }

    private static void ReplayCall(IDrafter drafter, RequestId request, TraceCall call, DraftRequestOptions options, int budget,
        ReplayRecorder recorder)
    {
        ReadOnlySpan<int> response = call.Response.Span;
        long t0 = Stopwatch.GetTimestamp();
        drafter.StartRequest(request, call.Prompt.Span, options);
        recorder.RecordStart(call.PromptLength, call.ResponseLength, Stopwatch.GetTimestamp() - t0);

        int emittedSoFar = 0;
        while (emittedSoFar < response.Length)
        {
            ReadOnlySpan<int> remaining = response[emittedSoFar..];
            GreedyStep step = ProposeAndAccept(drafter, request, remaining, budget);

            long observeStart = Stopwatch.GetTimestamp();
            drafter.Observe(request, remaining[..step.Emitted]);
            long observeTicks = Stopwatch.GetTimestamp() - observeStart;

            recorder.RecordStep(step.Draft, step.Accepted, step.Emitted, step.ProposeTicks, observeTicks);
            emittedSoFar += step.Emitted;
        }

        long t1 = Stopwatch.GetTimestamp();
        drafter.EndRequest(request);
        recorder.RecordEnd(Stopwatch.GetTimestamp() - t1);
    }
}

/// <summary>One replayed step before the drafter observes it: the draft, how much of it a greedy target accepts, what
/// the step emits (accepted + the bonus token, or only what remains), and the Stopwatch ticks Propose took.</summary>
internal readonly record struct GreedyStep(DraftTree Draft, int Accepted, int Emitted, long ProposeTicks);

/// <summary>Thrown when a drafter fails or breaks the <see cref="IDrafter"/> contract during a replay.</summary>
public sealed class ReplayException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ReplayException(string message, Exception? inner = null) : base(message, inner) { }
}
