using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The engine's reliability rule: every submitted request completes, fails or is cancelled exactly once, also when the
/// engine or its model is disposed at any moment, and nothing a plug-in throws (drafter, logger, tokenizer, policy,
/// metrics listener) ends the process or strands a request; a plug-in failure fails only the request it concerns.
/// Each test reproduces a defect of issue 16.
/// </summary>
public sealed class EngineFaultTests
{
    // How long a request may take before the test calls it stranded. 30 s once failed a test here with three test hosts
    // on two cores (its message was not kept); a hang still fails at 120 s.
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);
    private static readonly ConcurrentDictionary<(int, int, int), int[]> References = new();

    private static int[] Reference(int seed, int promptLength, int count) =>
        References.GetOrAdd((seed, promptLength, count), k => EngineFixture.PlainGreedy(EngineFixture.Prompt(k.Item1, k.Item2), k.Item3));

    private static GenerationRequest Healthy(int seed, int count = 12) =>
        new() { PromptTokens = EngineFixture.Prompt(seed, 20), MaxNewTokens = count };

    private static GenerationRequest Poisoned(int seed) =>
        new() { PromptTokens = [FaultyDrafter.PoisonToken, .. EngineFixture.Prompt(seed, 20)], MaxNewTokens = 12 };

    /// <summary>Issue 16 item 1: a submitter held between the engine's "stopping" check and its enqueue while the engine
    /// is disposed got a task that never completed.</summary>
    [Fact]
    public async Task RequestSubmittedWhileTheEngineIsDisposed_IsNeverLost()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        var tokenizer = new GatedTokenizer();
        var engine = SpeculativeEngine.Create(model, tokenizer, null, new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });
        tokenizer.Release.Reset();
        Task<GenerationResult> submitting = Task.Run(() => engine.GenerateAsync(new GenerationRequest { Prompt = "held", MaxNewTokens = 4 }));
        Assert.True(tokenizer.Entered.Wait(Patience), "the submitter never reached the tokenizer");
        engine.Dispose();
        tokenizer.Release.Set();

        // Refused at submission or failed afterwards: either way an ObjectDisposedException, never a task left pending.
        Task outcome = submitting;
        Assert.True(await Task.WhenAny(outcome, Task.Delay(Patience)) == outcome, "the request submitted during Dispose never completed");
        await Assert.ThrowsAsync<ObjectDisposedException>(() => outcome);
    }

    /// <summary>Issue 16 item 1, under load: submitters on several threads race Dispose; every request they got a task for
    /// ends, and each exactly once in the engine's count.</summary>
    [Fact]
    public async Task SubmittersRacingDispose_EveryRequestEnds()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        for (int round = 0; round < 6; round++)
        {
            var engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });
            var tasks = new ConcurrentBag<Task<GenerationResult>>();
            using var start = new Barrier(4);
            Task[] submitters = Enumerable.Range(0, 3).Select(t => Task.Run(() =>
            {
                start.SignalAndWait();
                for (int i = 0; ; i++)
                {
                    try
                    {
                        tasks.Add(engine.GenerateAsync(Healthy(1000 * t + i, count: 3)));
                    }
                    catch (ObjectDisposedException)
                    {
                        return;
                    }
                }
            })).ToArray();
            start.SignalAndWait();
            await Task.Delay(20 * round);
            engine.Dispose();
            await Task.WhenAll(submitters).WaitAsync(Patience);
            Task all = Task.WhenAll(tasks.ToArray());
            Assert.True(await Task.WhenAny(all, Task.Delay(Patience)) == all, $"round {round}: a request never ended");
            Assert.All(tasks, t => Assert.True(t.IsCompletedSuccessfully || t.Exception?.InnerException is ObjectDisposedException,
                $"round {round}: {t.Status} {t.Exception?.InnerException}"));
            Assert.Equal(tasks.Count, engine.Statistics.Completed);
        }
    }

    /// <summary>Issue 16 item 2: a drafter whose EndRequest throws during a cancellation killed the process.</summary>
    [Fact]
    public async Task DrafterEndRequestThrowing_OnCancelAndOnCompletion_LeavesEveryRequestItsOutcome()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2, maxContext: 600);
        using var drafter = new FaultyDrafter(EngineFixture.Drafter("suffix"), Fault.EndRequestThrows, model.Config.VocabSize);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [] });
        using var cancel = new CancellationTokenSource();
        Task streaming = Task.Run(async () =>
        {
            await foreach (GenerationChunk _ in engine.StreamAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(5, 20), MaxNewTokens = 500 }, cancel.Token))
            {
                cancel.Cancel();
            }
        });
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => streaming.WaitAsync(Patience));

        GenerationResult after = await engine.GenerateAsync(Healthy(6)).WaitAsync(Patience);
        Assert.Equal(Reference(6, 20, 12), after.TokenIds);
        Assert.Equal(2, drafter.EndRequestCalls);
        Assert.Equal(2, engine.Statistics.Completed);
    }

    /// <summary>Issue 16 item 3: a logger that throws killed the process (the StepFailed call inside the loop's catch threw
    /// again on the engine thread), and made Create throw.</summary>
    [Fact]
    public async Task ThrowingLogger_NeitherStopsTheEngineNorChangesAnOutcome()
    {
        var logger = new ThrowingLogger();
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using var drafter = new FaultyDrafter(EngineFixture.Drafter("suffix"), Fault.ProposeThrows, model.Config.VocabSize);
        using (SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [], Logger = logger }))
        {
            Task<GenerationResult> poisoned = engine.GenerateAsync(Poisoned(8));
            Task<GenerationResult> healthy = engine.GenerateAsync(Healthy(9));
            await Assert.ThrowsAsync<PluginFailedException>(() => poisoned.WaitAsync(Patience));
            Assert.Equal(Reference(9, 20, 12), (await healthy.WaitAsync(Patience)).TokenIds);
            Assert.Throws<RequestRejectedException>(() => { _ = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(1, 400) }); });
        }
        Assert.True(logger.Calls > 3, "the engine should have tried to log");
    }

    /// <summary>Issue 16 item 5: a second engine on one model was not refused, and both gave wrong tokens silently.</summary>
    [Fact]
    public async Task SecondEngineOnOneModel_IsRefused_UntilTheFirstIsDisposed()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        var options = new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] };
        using (SpeculativeEngine first = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, options))
        {
            ModelInUseException refused = Assert.Throws<ModelInUseException>(() => SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, options));
            Assert.Contains("Dispose", refused.Message);
            Assert.Equal(Reference(10, 20, 12), (await first.GenerateAsync(Healthy(10))).TokenIds);
        }
        using SpeculativeEngine second = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, options);
        Assert.Equal(Reference(11, 20, 12), (await second.GenerateAsync(Healthy(11))).TokenIds);
    }

    /// <summary>Issue 16 item 6 and the plug-in rule: a drafter or policy that fails for one request (throws, or proposes
    /// a token outside the vocabulary or more nodes than its budget) fails that request only; the requests beside it in
    /// the same steps get plain greedy output. With 9 beside it the step drafts in parallel
    /// (<see cref="ParallelProposals.MinRequests"/>), and the rule holds there too.</summary>
    [Theory]
    [InlineData(Fault.StartRequestThrows, 3)]
    [InlineData(Fault.ProposeThrows, 3)]
    [InlineData(Fault.ProposeTokenOutsideVocabulary, 3)]
    [InlineData(Fault.ProposeOverBudget, 3)]
    [InlineData(Fault.ObserveThrows, 3)]
    [InlineData(Fault.PolicyThrows, 3)]
    [InlineData(Fault.ProposeThrows, 9)]
    [InlineData(Fault.ProposeTokenOutsideVocabulary, 9)]
    public async Task PluginFailingForOneRequest_FailsOnlyThatRequest(Fault fault, int beside)
    {
        Assert.True(beside + 1 < ParallelProposals.MinRequests || beside + 1 >= ParallelProposals.MinRequests + 2,
            "the cases are meant to sit clearly on either side of the parallel drafting threshold");
        using TargetModel model = EngineFixture.LoadModel(maxBatch: beside + 1);
        using var drafter = new FaultyDrafter(EngineFixture.Drafter("suffix"), fault, model.Config.VocabSize);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = 8,
            AdaptiveSpeculation = false,
            Policy = drafter,
            EndOfSequenceTokenIds = [],
        });
        Task<GenerationResult>[] healthy = [.. Enumerable.Range(0, beside).Select(i => engine.GenerateAsync(Healthy(20 + i, count: 24)))];
        Task<GenerationResult> poisoned = engine.GenerateAsync(Poisoned(30));

        PluginFailedException failed = await Assert.ThrowsAsync<PluginFailedException>(() => poisoned.WaitAsync(Patience));
        Assert.Contains(fault == Fault.PolicyThrows ? "policy" : "drafter", failed.Plugin);
        for (int i = 0; i < healthy.Length; i++)
        {
            Assert.Equal(Reference(20 + i, 20, 24), (await healthy[i].WaitAsync(Patience)).TokenIds);
        }
        Assert.Equal(beside + 1, engine.Statistics.Completed);
        Assert.Equal(0, engine.Statistics.Active);
    }

    /// <summary>Found by the soak bench: a streamed request that failed left its internal completion task faulted and
    /// unobserved, so TaskScheduler.UnobservedTaskException fired for every failed stream (hosts log that as an escaped
    /// error). The stream's reader gets the error; nothing else may see it.</summary>
    [Fact]
    public async Task FailedStream_RaisesNoUnobservedTaskException()
    {
        var unobserved = new List<Exception>();
        void Record(object? sender, UnobservedTaskExceptionEventArgs e)
        {
            if (e.Exception.GetBaseException() is PluginFailedException { Plugin: "drafter 'faulty'" } failed)
            {
                lock (unobserved)
                {
                    unobserved.Add(failed);
                }
            }
        }
        TaskScheduler.UnobservedTaskException += Record;
        try
        {
            using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
            using var drafter = new FaultyDrafter(EngineFixture.Drafter("suffix"), Fault.ProposeThrows, model.Config.VocabSize);
            using (SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
                new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [] }))
            {
                for (int i = 0; i < 3; i++)
                {
                    await Assert.ThrowsAsync<PluginFailedException>(() => ReadAll(engine, Poisoned(80 + i)));
                }
            }
            for (int i = 0; i < 3; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= Record;
        }
        Assert.Empty(unobserved);
    }

    private static async Task ReadAll(SpeculativeEngine engine, GenerationRequest request)
    {
        await foreach (GenerationChunk _ in engine.StreamAsync(request).ConfigureAwait(false))
        {
        }
    }

    /// <summary>The plug-in rule for the tokenizer: decoding that throws fails the requests it decodes for, with a typed
    /// error, and the engine serves again once the tokenizer works.</summary>
    [Fact]
    public async Task TokenizerThrowingWhileDecoding_FailsTheRequestTyped_AndTheEngineGoesOn()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        var tokenizer = new GatedTokenizer { FailDecode = true };
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, null, new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });
        PluginFailedException failed = await Assert.ThrowsAsync<PluginFailedException>(() => engine.GenerateAsync(Healthy(40)).WaitAsync(Patience));
        Assert.Equal("tokenizer", failed.Plugin);
        tokenizer.FailDecode = false;
        Assert.Equal(Reference(41, 20, 12), (await engine.GenerateAsync(Healthy(41)).WaitAsync(Patience)).TokenIds);
    }

    /// <summary>The plug-in rule for metrics: a listener that throws from its measurement callback changes no outcome.</summary>
    [Fact]
    public async Task ThrowingMetricsListener_ChangesNoOutcome()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [] });
        int calls = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, engine.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, _, _) => { Interlocked.Increment(ref calls); throw new InvalidOperationException("injected listener failure"); });
        listener.SetMeasurementEventCallback<double>((_, _, _, _) => throw new InvalidOperationException("injected listener failure"));
        listener.SetMeasurementEventCallback<int>((_, _, _, _) => throw new InvalidOperationException("injected listener failure"));
        listener.Start();

        GenerationResult[] results = await Task.WhenAll(engine.GenerateAsync(Healthy(50)), engine.GenerateAsync(Healthy(51))).WaitAsync(Patience);
        Assert.Equal(Reference(50, 20, 12), results[0].TokenIds);
        Assert.Equal(Reference(51, 20, 12), results[1].TokenIds);
        Assert.True(calls > 0, "the listener was never called");
    }

    /// <summary>Issue 16 item 10: an already-cancelled token threw synchronously instead of giving a cancelled task.</summary>
    [Fact]
    public async Task AlreadyCancelledToken_GivesACancelledTask()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Task<GenerationResult> task = engine.GenerateAsync(Healthy(60), cancelled.Token);
        Assert.True(task.IsCanceled);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => task);
    }

    /// <summary>Issue 16 item 10: disposing the model under a running engine failed the request with a libtorch error
    /// ("Tensor invalid -- empty handle") instead of <see cref="ObjectDisposedException"/>.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(15)]
    public async Task ModelDisposedUnderARunningEngine_FailsTheRequestWithObjectDisposed(int delayMs)
    {
        // 5,000 tokens to go: the request must still be running when the model is disposed, also on a loaded machine (with
        // 500, a full suite on two cores sometimes finished the request before the dispose)
        TargetModel model = EngineFixture.LoadModel(maxBatch: 2, maxContext: 5100);
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, null, new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });
        using var started = new SemaphoreSlim(0);
        Task running = Task.Run(async () =>
        {
            await foreach (GenerationChunk _ in engine.StreamAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(70, 20), MaxNewTokens = 5000 }))
            {
                started.Release();
            }
        });
        Assert.True(await started.WaitAsync(Patience), "no chunk arrived");
        Thread.Sleep(delayMs);   // dispose at different points of the steps
        model.Dispose();
        ObjectDisposedException disposed = await Assert.ThrowsAsync<ObjectDisposedException>(() => running.WaitAsync(Patience));
        Assert.Contains("target model was disposed", disposed.Message);
        ObjectDisposedException refused = Assert.Throws<ObjectDisposedException>(() => { _ = engine.GenerateAsync(Healthy(71)); });
        Assert.Contains("model was disposed", refused.Message);
    }
}
