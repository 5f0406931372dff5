namespace SpecDecode.Replay.Tests;

public sealed class ReplayDriverTests
{
    private static readonly ReplaySettings NoHeap = new() { Budget = 4, MeasureHeap = false };

    private static TraceTrajectory[] TwoTrajectories() =>
    [
        TestTrajectories.Make("task-a",
            [TestTrajectories.Random(1, 20), TestTrajectories.Random(2, 7)],
            [TestTrajectories.Random(3, 13), TestTrajectories.Random(4, 1)]),
        TestTrajectories.Make("task-b",
            [TestTrajectories.Random(5, 3)],
            [TestTrajectories.Random(6, 40)], line: 2),
    ];

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(12)]
    [InlineData(100)]
    public void Oracle_takes_ceil_of_length_over_budget_plus_one_steps(int budget)
    {
        TraceTrajectory[] trajectories = TwoTrajectories();
        int[][] responses = trajectories.SelectMany(t => t.Calls).Select(c => c.Response.ToArray()).ToArray();
        using var oracle = new OracleDrafter(responses);

        ReplayResult r = ReplayDriver.Run(oracle, trajectories, NoHeap with { Budget = budget });

        long expectedSteps = responses.Sum(x => (x.Length + budget) / (budget + 1));
        Assert.Equal(expectedSteps, r.Steps);
        Assert.Equal(responses.Sum(x => x.Length), r.ResponseTokens);
        Assert.Equal(3, r.Calls);
        Assert.Equal(2, r.Trajectories);
        Assert.Equal(r.DraftedTokens, r.AcceptedTokens);
        Assert.Equal(budget == 0 ? 0.0 : 1.0, r.AcceptanceRate);
        Assert.Equal((double)r.ResponseTokens / r.Steps, r.MeanAcceptedTokensPerStep);
        if (budget > 0)
        {
            Assert.All(r.AcceptanceByPosition, a => Assert.Equal(1.0, a));
        }
    }

    [Fact]
    public void Drafter_that_drafts_nothing_takes_one_step_per_token()
    {
        TraceTrajectory[] trajectories = TwoTrajectories();
        using var nothing = new NothingDrafter();

        ReplayResult r = ReplayDriver.Run(nothing, trajectories, NoHeap);

        Assert.Equal(r.ResponseTokens, r.Steps);
        Assert.Equal(1.0, r.MeanAcceptedTokensPerStep);
        Assert.Equal(0, r.Drafts);
        Assert.Equal(0, r.DraftedTokens);
        Assert.Equal(0.0, r.AcceptanceRate);
        Assert.Empty(r.AcceptedPerPosition);
        Assert.Empty(r.DraftedPerPosition);
        Assert.All(nothing.ObservedLengths, n => Assert.Equal(1, n));
    }

    [Fact]
    public void Drafter_sees_exactly_the_prompt_and_the_emitted_tokens()
    {
        // Runs of repeated tokens make RepeatLast accept a varying number of tokens per step.
        int[] response = [5, 5, 5, 5, 7, 7, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 9];
        TraceTrajectory t = TestTrajectories.Make("task-a", [[1, 2, 3, 5]], [response]);
        using var drafter = new RepeatLastDrafter();

        ReplayResult r = ReplayDriver.Run(drafter, [t], NoHeap with { Budget = 3 });

        int[] final = Assert.Single(drafter.EndedContexts);
        Assert.Equal([1, 2, 3, 5, .. response], final);
        // Context 5 drafts 5,5,5 → all accepted + bonus 5; then 5 drafts 5,5,5 vs 7,7,1 → 0 + bonus 7; ...
        Assert.Equal([4, 1, 2, 1, 4, 4, 1], drafter.ObservedLengths);
        Assert.Equal(drafter.ObservedLengths.Count, r.Steps);
        Assert.Equal(drafter.ObservedLengths.Sum(), r.ResponseTokens);
    }

    [Fact]
    public void Each_call_gets_a_new_request_id_and_the_task_as_conversation()
    {
        TraceTrajectory[] trajectories = TwoTrajectories();
        using var drafter = new NothingDrafter();

        ReplayDriver.Run(drafter, trajectories, NoHeap);

        Assert.Equal(3, drafter.Started.Distinct().Count());
        Assert.Equal(["task-a", "task-a", "task-b"], drafter.Conversations);
        // Prompt of call 1 = prompt 0 + response 0 + what came between.
        int[] first = drafter.EndedContexts[0];
        TraceCall second = trajectories[0].Calls[1];
        Assert.Equal(first, second.Prompt.Span[..first.Length].ToArray());
    }

    [Fact]
    public void Draft_over_the_budget_is_a_replay_error_naming_the_call()
    {
        using var drafter = new OverBudgetDrafter();
        var ex = Assert.Throws<ReplayException>(() => ReplayDriver.Run(drafter, TwoTrajectories(), NoHeap));
        Assert.Contains("task-a", ex.Message);
        Assert.Contains("over the budget", ex.Message);
    }

    [Fact]
    public void Budget_above_the_drafters_maximum_is_rejected()
    {
        using var drafter = new NothingDrafter();
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            ReplayDriver.Run(drafter, TwoTrajectories(), NoHeap with { Budget = drafter.MaxBudget + 1 }));
    }

    [Fact]
    public void Timings_and_memory_are_filled()
    {
        using var drafter = new RepeatLastDrafter();
        ReplayResult r = ReplayDriver.Run(drafter, TwoTrajectories(),
            new ReplaySettings { Budget = 4, DrafterMemoryBytes = () => 1234 });

        Assert.Equal(r.Steps, r.DraftingTimeUs.Count);
        Assert.Equal(r.Steps, r.CacheUpdateTimePerTokenUs.Count);
        Assert.Equal(3, r.RequestStartMs.Count);
        Assert.Equal(3, r.EndRequestUs.Count);
        Assert.True(r.DraftingTimeUs.P99 >= r.DraftingTimeUs.Median);
        Assert.Equal(1234, r.DrafterMemoryBytes);
        Assert.True(r.ManagedHeapGrowthBytes != -1);
        Assert.True(r.ProcessPeakMemoryBytes > 0);
        Assert.True(r.WallSeconds > 0);
    }

    [Fact]
    public void Drafter_memory_is_minus_one_when_not_exposed()
    {
        using var drafter = new NothingDrafter();
        ReplayResult r = ReplayDriver.Run(drafter, TwoTrajectories(), NoHeap);
        Assert.Equal(-1, r.DrafterMemoryBytes);
        Assert.Equal(-1, r.ManagedHeapGrowthBytes);
    }

    [Fact]
    public void Replay_loop_allocates_nothing_per_step()
    {
        // Steps of 1 token each (the draft never matches). Compare 10,000 and 50,000 steps: what the loop allocates per
        // step shows in the difference (both fit the sample arrays' initial capacity, so they do not grow).
        using var drafter = new FixedDraftDrafter(DraftTree.Chain([1, 2, 3, 4]));
        long Allocated(int steps)
        {
            TraceTrajectory t = TestTrajectories.Make("task-a", [[1, 2, 3]], [Enumerable.Repeat(7, steps).ToArray()]);
            long before = GC.GetAllocatedBytesForCurrentThread();
            ReplayResult r = ReplayDriver.Run(drafter, [t], NoHeap);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(steps, r.Steps);
            return allocated;
        }
        Allocated(1_000); // JIT and first-use allocations

        long small = Allocated(10_000), large = Allocated(50_000);

        Assert.True(large - small < 40_000, $"{small} bytes for 10,000 steps, {large} bytes for 50,000 steps");
    }
}
