namespace SpecDecode.Tree.Tests;

/// <summary>
/// The scripted layers' arguments survive garbage collections during the call. TorchSharp's <c>invoke</c> turns each
/// number argument into a temporary <c>Scalar</c> and keeps only its native handle, so a collection before the native
/// call could finalize the Scalar and free what the handle points at (found by the parser fuzzer as a libtorch
/// "Expected false to be true" from <c>Scalar::toLong</c> in one forward of 24,000).
/// </summary>
public sealed class ScriptedDecoderCollectionTests
{
    [Fact]
    public async Task ScriptedForwards_WhileAnotherThreadCollects_GiveTheSameTokens()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1, maxContext: 64);
        Assert.True(model.UsesScriptedLayers);
        int[] prompt = EngineFixture.Prompt(1, 20);
        int Step()
        {
            model.Truncate(0, 0);
            model.Prefill([(0, prompt[..^1])]);
            return model.VerifyGreedy([new TreeInput(0, prompt[^1], DraftTree.Empty)])[0].Bonus;
        }
        int expected = Step();
        using var stop = new CancellationTokenSource();
        Task collector = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                GC.Collect(0);   // the temporaries are young: a gen-0 collection finalizes them
                GC.WaitForPendingFinalizers();
                Thread.Yield();
            }
        });
        try
        {
            for (int step = 0; step < 40; step++)
            {
                Assert.Equal(expected, Step());
            }
        }
        finally
        {
            stop.Cancel();
            await collector;
        }
    }
}
