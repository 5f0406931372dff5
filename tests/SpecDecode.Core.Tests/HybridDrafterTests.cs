namespace SpecDecode.Core.Tests;

/// <summary>The hybrid rule: the cheap draft when its score beats the model's expected acceptance for the request.</summary>
public sealed class HybridDrafterTests
{
    /// <summary>Returns a fixed chain with a fixed per-node probability and records every call.</summary>
    private sealed class FixedDrafter(string name, int token, float probability, bool batch = false) : IBatchDrafter
    {
        public List<string> Calls { get; } = [];
        public string Name => name;
        public int MaxBudget => 64;
        public int BatchCalls { get; private set; }
        public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options) => Calls.Add($"start {request}");
        public DraftTree Propose(RequestId request, int maxTokens)
        {
            lock (Calls) // calls for different requests may overlap (a large batch drafts in parallel)
            {
                Calls.Add($"propose {request}");
            }
            return DraftTree.Chain(Enumerable.Repeat(token, maxTokens).ToArray(),
                Enumerable.Range(1, maxTokens).Select(i => MathF.Pow(probability, i)).ToArray());
        }
        public IReadOnlyList<DraftTree> ProposeBatch(IReadOnlyList<DraftQuery> queries)
        {
            if (!batch)
            {
                throw new InvalidOperationException("not a batch drafter in this test");
            }
            BatchCalls++;
            return queries.Select(q => Propose(q.Request, q.MaxTokens)).ToArray();
        }
        public void Observe(RequestId request, ReadOnlySpan<int> emitted) => Calls.Add($"observe {request} {emitted.Length}");
        public void EndRequest(RequestId request) => Calls.Add($"end {request}");
        public void Dispose() { }
    }

    /// <summary>A clock that moves only when told to.</summary>
    private sealed class ManualClock : TimeProvider
    {
        public long Ticks { get; private set; } = 1;
        public override long TimestampFrequency => 1_000_000;
        public override long GetTimestamp() => Ticks;
        public void AdvanceMs(double ms) => Ticks += (long)(ms * 1000);
    }

    /// <summary>A model drafter that takes <paramref name="ms"/> of the clock per proposal, or <paramref name="firstMs"/>
    /// for its first (a first use that captures graphs) when given.</summary>
    private sealed class SlowModel(ManualClock clock, double ms, double? firstMs = null) : IBatchDrafter
    {
        private readonly FixedDrafter _inner = new("model", 9, 0.9f, batch: true);
        public int BatchCalls => _inner.BatchCalls;
        public string Name => "slow model";
        public int MaxBudget => 64;
        public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options) { }
        public DraftTree Propose(RequestId request, int maxTokens) => ProposeBatch([new DraftQuery(request, maxTokens)])[0];
        public IReadOnlyList<DraftTree> ProposeBatch(IReadOnlyList<DraftQuery> queries)
        {
            clock.AdvanceMs(BatchCalls == 0 && firstMs is double first ? first : ms);
            return _inner.ProposeBatch(queries);
        }
        public void Observe(RequestId request, ReadOnlySpan<int> emitted) { }
        public void EndRequest(RequestId request) { }
        public void Dispose() { }
    }

    /// <summary>Steps of <paramref name="stepMs"/> each (the verification, on the clock), every request proposing
    /// 4 tokens; returns the tokens of the last step's drafts' first nodes.</summary>
    private static int[] Steps(HybridDrafter hybrid, ManualClock clock, RequestId[] requests, int steps, double stepMs)
    {
        int[] first = [];
        for (int s = 0; s < steps; s++)
        {
            first = [.. hybrid.ProposeBatch([.. requests.Select(r => new DraftQuery(r, 4))]).Select(d => d.Tokens[0])];
            clock.AdvanceMs(stepMs);
            foreach (RequestId r in requests)
            {
                hybrid.Observe(r, [9, 9, 5]); // two of the model's tokens accepted: its estimate stays at 2
            }
        }
        return first;
    }

    [Theory]
    [InlineData(1, 2.0, true)]    // 1 request: gain 1.06 of 1.94 tokens is worth a 2 ms draft on a 20 ms step (0.55 > 0.1)
    [InlineData(1, 15.0, false)]  // a 15 ms draft on a 20 ms step is not (0.55 < 0.75)
    [InlineData(16, 2.0, true)]   // gain and tokens both grow with the batch: the ratio stays 0.55
    public void TheModelIsAskedOnlyWhenItsExtraTokensPayForItsTime(int batch, double modelMs, bool modelUsed)
    {
        var clock = new ManualClock();
        var cheap = new FixedDrafter("suffix", 7, 0.5f);  // score 0.94 for 4 tokens
        var model = new SlowModel(clock, modelMs);
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, AcceptanceSmoothing = 0.5, Time = clock });
        RequestId[] requests = [.. Enumerable.Range(1, batch).Select(i => new RequestId(i))];
        foreach (RequestId r in requests)
        {
            hybrid.StartRequest(r, [1], null);
        }
        int[] first = Steps(hybrid, clock, requests, steps: 6, stepMs: 20);
        Assert.Equal(modelMs / 1e3, hybrid.ModelDraftSeconds, 6);
        Assert.Equal(20 / 1e3, hybrid.StepSeconds, 6);
        Assert.All(first, t => Assert.Equal(modelUsed ? 9 : 7, t));
        // the model ran for the first step (nothing measured yet), and after that only where it pays
        Assert.Equal(modelUsed ? 6 : 1, model.BatchCalls);
        Assert.Equal(modelUsed ? 0 : 5L * batch, hybrid.ModelDraftsSkippedForCost);
    }

    [Fact]
    public void AModelSkippedForASlowFirstProposal_IsProbedAgain_AndUsedOnceItPays()
    {
        // the first proposal takes 100 ms (first uses), later ones 2 ms: worth it on a 20 ms step (see the theory above)
        var clock = new ManualClock();
        var cheap = new FixedDrafter("suffix", 7, 0.5f);
        var model = new SlowModel(clock, 2, firstMs: 100);
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, Time = clock, ModelProbeSteps = 8 });
        var r = new RequestId(1);
        hybrid.StartRequest(r, [1], null);
        Steps(hybrid, clock, [r], steps: 8, stepMs: 20);
        Assert.Equal(1, model.BatchCalls); // asked first, then skipped for its 100 ms
        Assert.Equal(7, hybrid.ModelDraftsSkippedForCost);
        Assert.Equal(0, hybrid.ModelProbes);
        // after 8 skipped steps the next probes: 2 ms replaces the estimate, and from then on the model pays every step
        Assert.All(Steps(hybrid, clock, [r], steps: 5, stepMs: 20), t => Assert.Equal(9, t));
        Assert.Equal(1, hybrid.ModelProbes);
        Assert.Equal(0.002, hybrid.ModelDraftSeconds, 6);
        Assert.Equal(5, model.BatchCalls); // the first, the probe, three that paid
        Assert.Equal(8, hybrid.ModelDraftsSkippedForCost);
    }

    [Fact]
    public void AModelThatStaysSlow_IsProbedAtDoublingIntervals_OrNeverWithProbesOff()
    {
        var clock = new ManualClock();
        var cheap = new FixedDrafter("suffix", 7, 0.5f);
        var model = new SlowModel(clock, 15); // never pays on a 20 ms step
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, Time = clock, ModelProbeSteps = 4 });
        var r = new RequestId(1);
        hybrid.StartRequest(r, [1], null);
        Steps(hybrid, clock, [r], steps: 1 + 5 + 9 + 17, stepMs: 20);
        // asked first, then probed after 4, 8 and 16 skipped steps
        Assert.Equal(3, hybrid.ModelProbes);
        Assert.Equal(4, model.BatchCalls);
        Assert.Equal(4 + 8 + 16, hybrid.ModelDraftsSkippedForCost);

        var never = new HybridDrafter(cheap, new SlowModel(clock, 15), new HybridDrafterOptions { InitialModelAcceptance = 2, Time = clock, ModelProbeSteps = 0 });
        never.StartRequest(r, [1], null);
        Steps(never, clock, [r], steps: 40, stepMs: 20);
        Assert.Equal(0, never.ModelProbes);
        Assert.Equal(39, never.ModelDraftsSkippedForCost);
        Assert.Throws<ArgumentOutOfRangeException>(() => new HybridDrafter(cheap, model, new HybridDrafterOptions { ModelProbeSteps = -1 }));
    }

    [Fact]
    public void AnIdleGapIsNotAStep_AndWithoutTheCostRuleASlowModelIsStillAsked()
    {
        var clock = new ManualClock();
        var cheap = new FixedDrafter("suffix", 7, 0.5f);
        var model = new SlowModel(clock, 15);
        var weighed = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, Time = clock });
        var r = new RequestId(1);
        weighed.StartRequest(r, [1], null);
        Steps(weighed, clock, [r], steps: 3, stepMs: 20);
        clock.AdvanceMs(60_000); // no request for a minute
        Steps(weighed, clock, [r], steps: 1, stepMs: 20);
        Assert.Equal(0.020, weighed.StepSeconds, 6);

        var unweighed = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, Time = clock, WeighDraftCost = false });
        unweighed.StartRequest(r, [1], null);
        Assert.All(Steps(unweighed, clock, [r], steps: 4, stepMs: 20), t => Assert.Equal(9, t));
        Assert.Equal(0, unweighed.ModelDraftsSkippedForCost);
    }

    [Fact]
    public void StrongCheapDraft_IsUsed_WeakOneFallsBackToTheModel()
    {
        var strong = new FixedDrafter("suffix", 7, 0.99f);   // score ~ 3.9 for 4 tokens
        var weak = new FixedDrafter("suffix", 7, 0.1f);      // score ~ 0.11
        var model = new FixedDrafter("model", 9, 0.5f, batch: true);
        var r = new RequestId(1);

        var hybridStrong = new HybridDrafter(strong, model, new HybridDrafterOptions { InitialModelAcceptance = 2, WeighDraftCost = false });
        hybridStrong.StartRequest(r, [1, 2], null);
        Assert.Equal(7, hybridStrong.Propose(r, 4).Tokens[0]);

        var hybridWeak = new HybridDrafter(weak, model, new HybridDrafterOptions { InitialModelAcceptance = 2, WeighDraftCost = false });
        hybridWeak.StartRequest(r, [1, 2], null);
        Assert.Equal(9, hybridWeak.Propose(r, 4).Tokens[0]);
        Assert.Equal(1, hybridWeak.ModelDrafts);
        Assert.Equal(1, hybridStrong.CheapDrafts);
    }

    [Fact]
    public void ModelAcceptanceIsLearned_PoorModelDraftsHandTheRequestBackToTheCheapDrafter()
    {
        var cheap = new FixedDrafter("suffix", 7, 0.5f);   // score ~ 0.94 for 4 tokens
        var model = new FixedDrafter("model", 9, 0.9f, batch: true);
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, AcceptanceSmoothing = 0.5, WeighDraftCost = false });
        var r = new RequestId(3);
        hybrid.StartRequest(r, [1], null);

        Assert.Equal(9, hybrid.Propose(r, 4).Tokens[0]);   // 0.94 < 2: the model
        hybrid.Observe(r, [5]);                              // nothing accepted: 2 -> 1
        Assert.Equal(9, hybrid.Propose(r, 4).Tokens[0]);   // 0.94 < 1: still the model
        hybrid.Observe(r, [5]);                              // 1 -> 0.5
        Assert.Equal(7, hybrid.Propose(r, 4).Tokens[0]);   // 0.94 > 0.5: the cheap drafter
        hybrid.Observe(r, [7, 7, 7, 5]);                     // cheap draft's acceptance does not move the model's estimate
        Assert.Equal(7, hybrid.Propose(r, 4).Tokens[0]);
    }

    [Fact]
    public void BothDraftersSeeTheWholeLifecycle_AndTheModelRunsOnceForTheBatch()
    {
        var cheap = new FixedDrafter("suffix", 7, 0.01f);
        var model = new FixedDrafter("model", 9, 0.9f, batch: true);
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { WeighDraftCost = false });
        RequestId a = new(1), b = new(2);
        hybrid.StartRequest(a, [1], null);
        hybrid.StartRequest(b, [1], null);
        IReadOnlyList<DraftTree> drafts = hybrid.ProposeBatch([new DraftQuery(a, 3), new DraftQuery(b, 0)]);
        Assert.Equal(3, drafts[0].Count);
        Assert.True(drafts[1].IsEmpty);
        Assert.Equal(1, model.BatchCalls);
        hybrid.Observe(a, [4, 5]);
        hybrid.EndRequest(a);
        Assert.Contains("observe 1 2", cheap.Calls);
        Assert.Contains("observe 1 2", model.Calls);
        Assert.Contains("end 1", cheap.Calls);
        Assert.Contains("end 1", model.Calls);
        Assert.Throws<UnknownRequestException>(() => hybrid.Propose(a, 2));
        Assert.Throws<DuplicateRequestException>(() => hybrid.StartRequest(b, [1], null));
    }

    [Fact]
    public void ModelThatStoppedPaying_IsNotAskedAgain_EvenWithoutACheapDraft()
    {
        var cheap = new FixedDrafter("suffix", 7, 0f);   // score 0: nothing to offer
        var model = new FixedDrafter("model", 9, 0.9f, batch: true);
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 1, AcceptanceSmoothing = 0.5, MinModelAcceptance = 0.4, WeighDraftCost = false });
        var r = new RequestId(5);
        hybrid.StartRequest(r, [1], null);
        Assert.Equal(9, hybrid.Propose(r, 3).Tokens[0]);   // 1 >= 0.4: the model
        hybrid.Observe(r, [5]);                              // 1 -> 0.5
        Assert.Equal(9, hybrid.Propose(r, 3).Tokens[0]);   // 0.5 >= 0.4: the model again
        hybrid.Observe(r, [5]);                              // 0.5 -> 0.25
        Assert.Equal(7, hybrid.Propose(r, 3).Tokens[0]);   // 0.25 < 0.4: not asked; the cheap draft stands
        Assert.Equal(2, hybrid.ModelDrafts);
    }

    /// <summary>A batch of 10 drafts its cheap proposals in parallel (<see cref="ParallelProposals"/>): the same drafts, in
    /// the queries' order, each request asked once; a query for an unknown request fails the call before any request is
    /// drafted.</summary>
    [Fact]
    public void ALargeBatchDraftsInParallel_WithTheSerialResult_AndABadQueryDraftsNothing()
    {
        var cheap = new FixedDrafter("suffix", 7, 0.5f);
        var model = new FixedDrafter("model", 9, 0.9f, batch: true);
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { MinModelAcceptance = 100 }); // cheap drafts only
        RequestId[] requests = [.. Enumerable.Range(1, 10).Select(i => new RequestId(i))];
        foreach (RequestId r in requests)
        {
            hybrid.StartRequest(r, [1], null);
        }
        Assert.True(requests.Length >= ParallelProposals.MinRequests);

        IReadOnlyList<DraftTree> drafts = hybrid.ProposeBatch([.. requests.Select((r, i) => new DraftQuery(r, i % 5))]);

        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(i % 5, drafts[i].Count); // each query's own budget: the drafts are in the queries' order
        }
        Assert.Equal(8, cheap.Calls.Count(c => c.StartsWith("propose", StringComparison.Ordinal))); // budget 0 asks nothing
        Assert.Equal(0, model.BatchCalls);

        int before = cheap.Calls.Count;
        Assert.Throws<UnknownRequestException>(() => hybrid.ProposeBatch([.. requests.Select(r => new DraftQuery(r, 2)), new DraftQuery(new RequestId(99), 2)]));
        Assert.Equal(before, cheap.Calls.Count);
    }
}
