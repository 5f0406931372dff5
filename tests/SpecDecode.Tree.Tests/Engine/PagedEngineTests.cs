using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The engine on the paged KV cache, on a tiny checkpoint on the CPU: agent conversations (each call's prompt = the
/// previous prompt + its answer + a new message) emit exactly plain greedy decoding's tokens with prefix reuse on and off,
/// with and without speculation, also after a call cancelled midway, and reuse what the earlier calls cached; a pool too
/// small for the load preempts and evicts and still gives every request plain greedy's tokens, with every block back
/// when idle; a long prompt is prefilled a chunk per step while another request decodes.
/// </summary>
public sealed class PagedEngineTests
{
    private static readonly ConcurrentDictionary<string, int[]> References = new();

    private static int[] Reference(int[] prompt, int count) =>
        References.GetOrAdd(string.Join(',', prompt) + "|" + count, _ => EngineFixture.PlainGreedy(prompt, count));

    private static SpeculativeEngine Engine(TargetModel model, IDrafter? drafter, int stepBudget = 2048) =>
        SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 8, AdaptiveSpeculation = false, EndOfSequenceTokenIds = [], StepTokenBudget = stepBudget,
        });

    [Theory]
    [InlineData(true, "none", false)]
    [InlineData(true, "suffix", false)]
    [InlineData(false, "none", false)]
    [InlineData(false, "suffix", false)]
    [InlineData(true, "suffix", true)] // packed prefill forwards (flash attention's contract, on the CPU)
    [InlineData(false, "suffix", true)]
    public async Task AConversationsCallsEmitPlainGreedy_AndReuseTheEarlierCalls(bool reuse, string drafterKind, bool packed)
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2, maxContext: 256, kvBlock: 16, prefixCaching: reuse, prefill: packed ? PrefillAttention.Packed : PrefillAttention.Auto);
        using IDrafter? drafter = drafterKind == "none" ? null : EngineFixture.Drafter(drafterKind);
        using SpeculativeEngine engine = Engine(model, drafter);
        int[] prompt = EngineFixture.Prompt(21, 37);
        for (int call = 0; call < 3; call++)
        {
            GenerationResult result = await engine.GenerateAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 14, ConversationId = "agent" });
            Assert.Equal(Reference(prompt, 14), result.TokenIds);
            if (call > 0 && reuse)
            {
                // the previous prompt and its answer were cached (all but the answer's last token, which was the root),
                // and the new message (9 tokens) was not
                Assert.InRange(result.Statistics.CachedPromptTokens, prompt.Length - 9 - 1, prompt.Length - 9);
            }
            else
            {
                Assert.Equal(0, result.Statistics.CachedPromptTokens);
            }
            prompt = [.. prompt, .. result.TokenIds, .. EngineFixture.Prompt(300 + call, 9)]; // the next call: answer + new message
        }
        Assert.Equal(0, model.KvCache.UsedBlocks);
    }

    [Fact]
    public async Task ACallCancelledMidway_LeavesTheNextCallsExact()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2, maxContext: 256, kvBlock: 16);
        using IDrafter suffix = EngineFixture.Drafter("suffix");
        using var drafter = new GatedDrafter(suffix, gateAt: 3);
        using SpeculativeEngine engine = Engine(model, drafter);
        int[] prompt = EngineFixture.Prompt(33, 41);
        using (var cancel = new CancellationTokenSource())
        {
            int chunks = 0;
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (GenerationChunk _ in engine.StreamAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 60 }, cancel.Token))
                {
                    if (++chunks == 2)
                    {
                        cancel.Cancel(); // the engine waits in its third step's Observe until now
                        drafter.Release.Set();
                    }
                }
            });
        }
        // the agent retries the same call, then goes on with the conversation
        GenerationResult retry = await engine.GenerateAsync(new GenerationRequest { PromptTokens = prompt, MaxNewTokens = 20 });
        Assert.Equal(Reference(prompt, 20), retry.TokenIds);
        Assert.True(retry.Statistics.CachedPromptTokens >= prompt.Length - 1 - 15, $"{retry.Statistics.CachedPromptTokens} cached");
        int[] next = [.. prompt, .. retry.TokenIds, .. EngineFixture.Prompt(7, 11)];
        GenerationResult second = await engine.GenerateAsync(new GenerationRequest { PromptTokens = next, MaxNewTokens = 20 });
        Assert.Equal(Reference(next, 20), second.TokenIds);
        Assert.Equal(0, model.KvCache.UsedBlocks);
    }

    [Theory]
    [InlineData("none", false)]
    [InlineData("suffix", false)]
    [InlineData("suffix", true)]
    public async Task APoolTooSmallForTheLoad_PreemptsAndEvicts_AndEveryRequestStillEmitsPlainGreedy(string drafterKind, bool packed)
    {
        // 16 blocks of 16 tokens; four requests of 60 + 40 tokens at once would need 28
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 4, maxContext: 128, kvTokens: 256, kvBlock: 16, prefill: packed ? PrefillAttention.Packed : PrefillAttention.Auto);
        using IDrafter? drafter = drafterKind == "none" ? null : EngineFixture.Drafter(drafterKind);
        using SpeculativeEngine engine = Engine(model, drafter);
        int[][] prompts = Enumerable.Range(0, 6).Select(i => EngineFixture.Prompt(50 + i, 60)).ToArray();
        GenerationResult[] results = await Task.WhenAll(prompts.Select(p => Task.Run(() =>
            engine.GenerateAsync(new GenerationRequest { PromptTokens = p, MaxNewTokens = 40 }))));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(Reference(prompts[i], 40), results[i].TokenIds);
        }
        Assert.True(engine.Statistics.Totals.Preemptions > 0, "the load should not fit without preemption");
        Assert.Equal(results.Sum(r => r.Statistics.Preemptions), engine.Statistics.Totals.Preemptions);
        KvCacheUsage usage = model.KvCache;
        Assert.Equal(0, usage.UsedBlocks);
        Assert.Equal(usage.Blocks, usage.AvailableBlocks);
    }

    [Fact]
    public async Task ALongPromptIsPrefilledAChunkPerStep_WhileAnotherRequestDecodes()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2, maxContext: 256, kvBlock: 16);
        using SpeculativeEngine engine = Engine(model, drafter: null, stepBudget: 32);
        var prefillForwards = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == engine.Meter && instrument.Name == "specdecode.step.duration")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Value as string == "prefill")
                {
                    Interlocked.Increment(ref prefillForwards);
                }
            }
        });
        listener.Start();
        int[] shortPrompt = EngineFixture.Prompt(61, 10), longPrompt = EngineFixture.Prompt(62, 200);
        Task<GenerationResult> running = engine.GenerateAsync(new GenerationRequest { PromptTokens = shortPrompt, MaxNewTokens = 60 });
        Task<GenerationResult> arriving = engine.GenerateAsync(new GenerationRequest { PromptTokens = longPrompt, MaxNewTokens = 5 });
        GenerationResult[] results = await Task.WhenAll(running, arriving);
        Assert.Equal(Reference(shortPrompt, 60), results[0].TokenIds);
        Assert.Equal(Reference(longPrompt, 5), results[1].TokenIds);
        // 199 prompt tokens at most 31 a step beside the running request: at least 7 prefill forwards
        Assert.True(prefillForwards >= 7, $"{prefillForwards} prefill forwards");
    }
}
