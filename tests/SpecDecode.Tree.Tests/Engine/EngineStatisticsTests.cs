using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>What the engine's statistics count when a step verifies more tokens than the request emits.</summary>
public sealed class EngineStatisticsTests
{
    [Fact]
    public async Task TokensVerifiedPastAStopToken_AreNotCountedAsGenerated()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        // The draft model is the target itself, so whole drafts are accepted, past the stop token too.
        using DraftModelDrafter draft = DraftModelDrafter.Create(EngineFixture.LoadModel(1, 400),
            new DraftModelOptions { MaxRequests = 1, Device = CPU, MaxContext = 400, MaxDepth = 4 });
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, draft, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 8,
            AdaptiveSpeculation = false,
            EndOfSequenceTokenIds = [],
        });
        int[] prompt = EngineFixture.Prompt(11, 16);
        int[] plain = EngineFixture.PlainGreedy(prompt, 12);
        // The stop token: the first token of the continuation after the first that was not seen before it.
        int at = Enumerable.Range(1, plain.Length - 1).First(i => !plain[..i].Contains(plain[i]));
        GenerationResult result = await engine.GenerateAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 12, StopTokenIds = [plain[at]] });

        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(plain[..at], result.TokenIds);
        // Verified tokens (accepted + one bonus per step) go past the stop token; generated tokens end at it.
        Assert.True(result.Statistics.AcceptedTokens + result.Statistics.Steps > at + 1,
            $"the drafts should have been accepted past the stop token: {result.Statistics.AcceptedTokens} accepted in {result.Statistics.Steps} steps");
        Assert.Equal(at + 1, result.Statistics.GeneratedTokens);
        Assert.Equal(at + 1, engine.Statistics.Totals.GeneratedTokens);
        Assert.Equal(prompt.Length, result.Statistics.PromptTokens);
        Assert.Equal(prompt.Length, engine.Statistics.Totals.PromptTokens);
        Assert.Equal((at + 1.0) / result.Statistics.Steps, result.Statistics.MeanTokensPerStep, 12);
    }
}
