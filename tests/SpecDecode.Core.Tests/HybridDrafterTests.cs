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
            Calls.Add($"propose {request}");
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

    [Fact]
    public void StrongCheapDraft_IsUsed_WeakOneFallsBackToTheModel()
    {
        var strong = new FixedDrafter("suffix", 7, 0.99f);   // score ~ 3.9 for 4 tokens
        var weak = new FixedDrafter("suffix", 7, 0.1f);      // score ~ 0.11
        var model = new FixedDrafter("model", 9, 0.5f, batch: true);
        var r = new RequestId(1);

        var hybridStrong = new HybridDrafter(strong, model, new HybridDrafterOptions { InitialModelAcceptance = 2 });
        hybridStrong.StartRequest(r, [1, 2], null);
        Assert.Equal(7, hybridStrong.Propose(r, 4).Tokens[0]);

        var hybridWeak = new HybridDrafter(weak, model, new HybridDrafterOptions { InitialModelAcceptance = 2 });
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
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 2, AcceptanceSmoothing = 0.5 });
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
        var hybrid = new HybridDrafter(cheap, model);
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
        var hybrid = new HybridDrafter(cheap, model, new HybridDrafterOptions { InitialModelAcceptance = 1, AcceptanceSmoothing = 0.5, MinModelAcceptance = 0.4 });
        var r = new RequestId(5);
        hybrid.StartRequest(r, [1], null);
        Assert.Equal(9, hybrid.Propose(r, 3).Tokens[0]);   // 1 >= 0.4: the model
        hybrid.Observe(r, [5]);                              // 1 -> 0.5
        Assert.Equal(9, hybrid.Propose(r, 3).Tokens[0]);   // 0.5 >= 0.4: the model again
        hybrid.Observe(r, [5]);                              // 0.5 -> 0.25
        Assert.Equal(7, hybrid.Propose(r, 3).Tokens[0]);   // 0.25 < 0.4: not asked; the cheap draft stands
        Assert.Equal(2, hybrid.ModelDrafts);
    }
}

