using System.Diagnostics;
using Microsoft.ML.Tokenizers;
using SpecDecode.Replay;
using SpecDecode.Suffix;
using SpecDecode.Tree;
using SpecDecode.Tokenization;
using static TorchSharp.torch;

namespace SpecDecode.Soak;

/// <summary>Memory after one round: the managed heap after a full collection, the process's resident set, and the suffix
/// cache's own estimate.</summary>
public sealed record SoakRound(int Round, long Requests, long ManagedBytes, long ResidentBytes, long SuffixCacheBytes, TimeSpan Elapsed);

/// <summary>
/// Runs the soak: solo greedy references for the prompt pool, then <see cref="SoakSettings.Rounds"/> rounds in which every
/// client sends its requests to the current engine while faults are injected; some rounds dispose the engine under the
/// clients and create another on the same model; at the end the model is disposed under a running engine. Every engine's
/// accepted requests must each have ended exactly once.
/// </summary>
public static class SoakRunner
{
    /// <summary>Runs the soak and writes progress to <paramref name="log"/>.</summary>
    public static SoakReport Run(SoakSettings settings, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(log);
        var tally = new SoakTally();
        void Unobserved(object? sender, UnobservedTaskExceptionEventArgs e)
        {
            tally.Escaped("unobserved task exception: " + e.Exception.GetBaseException());
            e.SetObserved();
        }
        void Unhandled(object sender, UnhandledExceptionEventArgs e)
        {
            // The runtime ends the process after this handler: say what escaped first.
            Console.Error.WriteLine("SOAK FAILED: an exception escaped onto a thread: " + e.ExceptionObject);
            tally.Escaped("unhandled: " + e.ExceptionObject);
        }
        TaskScheduler.UnobservedTaskException += Unobserved;
        AppDomain.CurrentDomain.UnhandledException += Unhandled;
        try
        {
            return RunCore(settings, log, tally);
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= Unobserved;
            AppDomain.CurrentDomain.UnhandledException -= Unhandled;
        }
    }

    private static SoakReport RunCore(SoakSettings settings, TextWriter log, SoakTally tally)
    {
        var total = Stopwatch.StartNew();
        string folder = settings.ModelFolder ?? Path.Combine(RepoRoot.Find(), "models", "default");
        Tokenizer tokenizer = CheckpointTokenizer.Load(folder);
        ChatTemplate? template = ChatTemplate.Load(folder);
        var references = Stopwatch.StartNew();
        IReadOnlyList<SoakPrompt> prompts = SoakWorkload.Create(folder, tokenizer, template, settings);
        log.WriteLine($"{prompts.Count} prompts, solo greedy references in {references.Elapsed.TotalSeconds:F1} s " +
            $"({prompts.Sum(p => p.Reference.Count)} tokens)");

        var dice = new FaultDice(settings.Seed);
        TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = settings.MaxBatch, MaxContext = settings.MaxContext });
        var suffix = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedResponses = 256, MaxCachedConversations = 16 });
        using var drafter = new RandomFaultDrafter(suffix, dice, settings.DrafterFaultRate, model.Config.VocabSize);
        var logger = new RandomFaultLogger(dice, settings.LoggerFaultRate);
        using var listener = new RandomFaultMetricsListener(dice, settings.MetricsFaultRate);
        int engines = 0;   // a count, not a list: the harness must not keep disposed engines alive (the memory trend)
        EngineLife NewLife()
        {
            var life = new EngineLife(++engines, SpeculativeEngine.Create(model, tokenizer, drafter, new SpeculativeEngineOptions
            {
                ChatTemplate = template,
                MaxDraftTokens = 12,
                // Adaptive speculation's choices depend on measured times; off, every draft is verified (the harder case).
                AdaptiveSpeculation = false,
                Logger = logger,
            }));
            return life;
        }
        EngineLife current = NewLife();
        var random = new Random(settings.Seed);
        var clients = Enumerable.Range(0, settings.Clients)
            .Select(c => new SoakClient(c, prompts, () => Volatile.Read(ref current), tally, settings.RequestTimeout, settings.Seed * 1000 + c))
            .ToArray();
        var rounds = new List<SoakRound>();
        log.WriteLine("round  requests  served  engine  managed MB  resident MB  suffix cache MB  seconds");
        for (int round = 1; round <= settings.Rounds; round++)
        {
            var watch = Stopwatch.StartNew();
            Task[] running = clients.Select(c => Task.Run(() => c.RunAsync(settings.RequestsPerClient))).ToArray();
            Task<EngineLife>? disposer = null;
            if (settings.DisposeEveryRounds > 0 && round % settings.DisposeEveryRounds == 0)
            {
                // Somewhere in the round's first three quarters (by the previous round's length).
                int delay = random.Next(50, Math.Max(100, (int)(0.75 * (rounds.Count > 0 ? rounds[^1].Elapsed.TotalMilliseconds : 1000))));
                disposer = Task.Run(async () =>
                {
                    await Task.Delay(delay);
                    EngineLife old = current;
                    old.MarkDisposing();
                    old.Engine.Dispose();
                    Volatile.Write(ref current, NewLife());   // the model is free again once the old engine is disposed
                    return old;
                });
            }
            Task.WaitAll(running);
            if (disposer is not null)
            {
                // Counted once the round's clients are done: a client records an accepted submission just after making it.
                Account(disposer.Result, tally);
            }
            long managed = ProcessMemory.LiveManagedBytes();   // a full collection: unobserved task exceptions surface here
            var r = new SoakRound(round, tally.Requests, managed, Environment.WorkingSet, suffix.EstimateMemoryBytes(), watch.Elapsed);
            rounds.Add(r);
            log.WriteLine($"{round,5}  {r.Requests,8}  {tally.Count(SoakOutcome.Served),6}  {current.Number,6}  {Mb(r.ManagedBytes),10:F1}  " +
                $"{Mb(r.ResidentBytes),11:F1}  {Mb(r.SuffixCacheBytes),15:F1}  {r.Elapsed.TotalSeconds,7:F1}");
        }

        if (settings.DisposeModelAtEnd)
        {
            // Every client sends one more request; the model is disposed while they run.
            EngineLife last = current;
            Task[] burst = clients.Select(c => Task.Run(() => c.RunAsync(1))).ToArray();
            Thread.Sleep(300);
            last.MarkDisposing();
            model.Dispose();
            Task.WaitAll(burst);
            last.Engine.Dispose();
            Account(last, tally);
            log.WriteLine($"model disposed under engine {last.Number}: {tally.Count(SoakOutcome.EndedByDisposal)} requests ended by disposal so far");
        }
        else
        {
            current.MarkDisposing();
            current.Engine.Dispose();
            Account(current, tally);
            model.Dispose();
        }
        ProcessMemory.LiveManagedBytes();

        string? integrity = null;
        try
        {
            suffix.Cache.CheckIntegrity();
            SuffixCacheStatistics cache = suffix.Cache.GetStatistics();
            if (cache.ActiveRequests != 0)
            {
                integrity = $"{cache.ActiveRequests} requests are still active in the suffix cache after every engine ended";
            }
        }
        catch (Exception e)
        {
            integrity = e.Message;
        }
        return new SoakReport(settings, tally, rounds, engines, integrity, drafter.Injected, logger.Injected, logger.Calls,
            listener.Injected, total.Elapsed);
    }

    /// <summary>After an engine's disposal every request it accepted has ended, each once: its completed count must equal them.</summary>
    private static void Account(EngineLife life, SoakTally tally)
    {
        EngineStatistics s = life.Engine.Statistics;
        if (s.Completed != life.Accepted || s.Active != 0 || s.Waiting != 0)
        {
            tally.AccountingFailed($"engine {life.Number}: {life.Accepted} requests accepted, {s.Completed} ended, {s.Active} active, {s.Waiting} waiting after Dispose");
        }
    }

    private static double Mb(long bytes) => bytes / (1024.0 * 1024.0);
}
