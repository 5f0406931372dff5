namespace SpecDecode.Tree.Tests;

/// <summary>
/// Recorded responses deciding acceptance for sampled requests (benchmarks: issue 18's "sampled requests within 10 % of
/// greedy at the same acceptance"): the speculative sampling runs as for any sampled request, then the recorded path
/// is taken, so a sampled run emits the recorded tokens with exactly the greedy forced run's acceptance.
/// </summary>
public sealed class ForcedSamplingTests
{
    [Theory]
    [InlineData(new[] { 7, 8, 9 }, "0,3,4", "7,8,9")]   // down the second branch, then the recorded bonus
    [InlineData(new[] { 5, 9 }, "0,1", "5,9")]          // the first branch for one token
    [InlineData(new[] { 5, 6 }, "0,1,2", "5,6,0")]      // the whole branch; past the reference the bonus is token 0
    [InlineData(new[] { 4 }, "0", "4")]                 // no child matches: the recorded token is the bonus
    [InlineData(new int[0], "0", "0")]
    public void TheRecordedTokensTakeTheirPathThroughTheTree(int[] reference, string accepted, string emitted)
    {
        // entries: 0 the root; 1 (token 5) and 3 (token 7) under it; 2 (6) under 1; 4 (8) under 3 (nodes: entry - 1)
        DraftTree draft = DraftTree.Create([5, 6, 7, 8], [-1, 0, -1, 2], []);
        TreeSample sample = SampledAcceptance.ForcedPath(draft, reference);
        Assert.Equal(accepted, string.Join(",", sample.AcceptedNodes));
        Assert.Equal(emitted, string.Join(",", sample.Tokens));
    }

    [Fact]
    public async Task ASampledForcedRunEmitsTheRecordedTokens_AtTheGreedyForcedRunsAcceptance()
    {
        int[] prompt = EngineFixture.Prompt(41, 60);
        int[] response = [.. prompt[10..40], .. EngineFixture.Prompt(42, 12)]; // partly in the prompt: the suffix drafter finds it
        (GenerationResult Result, long Accepted, long SampledSteps) Run(SamplingOptions? sampling)
        {
            using TargetModel model = EngineFixture.LoadModel(maxBatch: 1, maxContext: 192);
            using IDrafter drafter = EngineFixture.Drafter("suffix");
            using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
            {
                MaxDraftTokens = 8, AdaptiveSpeculation = false, EndOfSequenceTokenIds = [],
            });
            GenerationResult result = engine.GenerateForcedAsync(new GenerationRequest
            {
                PromptTokens = prompt, MaxNewTokens = response.Length, StopTokenIds = [], Sampling = sampling,
            }, response).GetAwaiter().GetResult();
            return (result, engine.Statistics.Totals.AcceptedTokens, model.SampledSteps);
        }
        var greedy = Run(null);
        var sampled = Run(new SamplingOptions { Temperature = 0.7f, Seed = 3 });
        Assert.Equal(response, greedy.Result.TokenIds);
        Assert.Equal(response, sampled.Result.TokenIds);
        Assert.True(greedy.Accepted > 0, "the drafts should be accepted somewhere");
        Assert.Equal(greedy.Accepted, sampled.Accepted);
        Assert.Equal(0, greedy.SampledSteps);
        Assert.True(sampled.SampledSteps > 0, "the sampled run never ran the speculative sampling");
    }
}
