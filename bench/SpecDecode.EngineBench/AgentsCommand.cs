using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using SpecDecode.Replay;
using SpecDecode.Suffix;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.EngineBench;

/// <summary>One call of an agent run: what was asked, what was cached, what it cost.</summary>
internal sealed record AgentCall(string TaskId, int Call, int PromptTokens, int NewTokens, long CachedTokens, long PrefilledTokens,
    int ResponseTokens, double TimeToFirstTokenMs, double DecodeMs, double TotalMs, int Preemptions, bool Exact);

/// <summary>One configuration of the agent replay: N agents, each replaying its trajectories' calls in order.</summary>
internal sealed record AgentRun(string Variant, bool Reuse, int Agents, int Trajectories, int Calls, double Seconds, double MeanTrajectorySeconds,
    double TokensPerSecond, long PromptTokens, long NewTokens, long CachedTokens, long PrefilledTokens, double PrefilledOverNew,
    double MeanTimeToFirstTokenMs, double MeanDecodeMs, long Preemptions, int Mismatches, IReadOnlyList<AgentCall> PerCall, int GraphsCaptured);

/// <summary>A continued call's time to first token: the first such call at this length (which may capture CUDA graphs for
/// a new key bucket), a second one from the same cached conversation with other new tokens, and a third. The calls emit
/// one token each, so a graph captured at a shape's second use is captured in the second call and replayed in the
/// third; an agent's real call (hundreds of tokens) reaches that second use in its own second step.</summary>
internal sealed record ContinuedCall(int Context, int NewTokens, bool Reuse, double TimeToFirstTokenMs, long CachedTokens, double WarmTimeToFirstTokenMs,
    double ThirdTimeToFirstTokenMs);

/// <summary>How many SWE-bench conversations the KV pool holds, against fixed slots: at their final lengths (each as
/// long as it ever gets), and at the lengths they hold while they run (each conversation taken at each of its calls,
/// prompt and answer: what an agent's conversation occupies between and during its calls).</summary>
internal sealed record Concurrency(long PoolTokens, int BlockSize, int FixedSlotTokens, int FixedSlots, int RealLengthConversations, double MeanConversationTokens,
    int RunningLengthConversations = 0, double MeanRunningTokens = 0);

internal sealed record AgentsReport(string Date, string Device, string Model, int MaxContext, int BlockSize, long KvTokens, string KvPool,
    Concurrency Concurrency, IReadOnlyList<ContinuedCall> Continued, IReadOnlyList<AgentRun> Runs, string StepPaths);

/// <summary>
/// <c>agents</c>: whole SWE-bench trajectories replayed as agent conversations through the engine (issue 17's benchmark):
/// each agent sends its trajectory's calls one after another, call k's prompt exactly the conversation so far as the trace
/// records it (prompt k + 1 extends prompt k + response k), the recorded response forcing acceptance on a random-weight
/// target; N agents at once. Prompts are really prefilled (prefix reuse is what is measured). Per call: prompt tokens, new
/// tokens (not in the previous call's prompt and response), tokens found cached, tokens prefilled, time to first token,
/// decode time; per run: wall time, mean end-to-end time per trajectory, tokens/s; for prefix reuse on and off, plain and
/// adaptive suffix speculation. Also: the time to first token of a continued long conversation, and how many
/// conversations at their real lengths the KV pool holds against fixed slots.
/// </summary>
internal static class AgentsCommand
{
    public static Command Build()
    {
        var traces = new Option<string>("--traces") { DefaultValueFactory = _ => "../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz" };
        var config = new Option<string>("--config") { Description = "The target's config.json (weights are random).", DefaultValueFactory = _ => "../shared/fixtures/configs/llama-3.1-8b.config.json" };
        var skip = new Option<int>("--skip-trajectories") { Description = "Trajectories that only teach the suffix drafter first.", DefaultValueFactory = _ => 40 };
        var agents = new Option<string>("--agents") { Description = "Agent counts (comma list).", DefaultValueFactory = _ => "1,8" };
        var perAgent = new Option<int>("--trajectories-per-agent") { DefaultValueFactory = _ => 1 };
        var callsPer = new Option<int>("--calls") { Description = "Calls per trajectory at most (0: all).", DefaultValueFactory = _ => 0 };
        var longest = new Option<int>("--max-trajectory-calls") { Description = "Replay only trajectories of at most this many calls, whole (0: any).", DefaultValueFactory = _ => 0 };
        var maxContext = new Option<int>("--max-context") { Description = "Tokens per sequence; a trajectory stops at its first call that does not fit.", DefaultValueFactory = _ => 32768 };
        var kvTokens = new Option<long>("--kv-tokens") { Description = "KV pool tokens (0: what fits in --gpu-gib beside the model less 8 GiB for activations and graphs; on the CPU agents × max context).", DefaultValueFactory = _ => 0 };
        var gpu = new Option<double>("--gpu-gib") { Description = "The GPU's memory (an H100 here offers about 78 GiB).", DefaultValueFactory = _ => 78 };
        var block = new Option<int>("--kv-block") { DefaultValueFactory = _ => new TargetModelOptions().KvBlockSize };
        var variants = new Option<string>("--variants") { Description = "plain, suffix-adaptive.", DefaultValueFactory = _ => "plain,suffix-adaptive" };
        var reuse = new Option<string>("--reuse") { Description = "on, off or on,off.", DefaultValueFactory = _ => "on,off" };
        var continued = new Option<string>("--continued") { Description = "Context:new pairs for the time-to-first-token probe, e.g. 30000:1000 (empty: none).", DefaultValueFactory = _ => "30000:1000" };
        var only = new Option<bool>("--concurrency-only") { Description = "Print the concurrency figures for the pool and stop (no model is loaded)." };
        var graphs = new Option<bool>("--cuda-graphs") { Description = "TargetModelOptions.CudaGraphs (the kernels at batch 1).", DefaultValueFactory = _ => true };
        var prefill = new Option<string>("--prefill") { Description = "auto (packed chunks with flash attention where it runs) or masked (the masked chunks).", DefaultValueFactory = _ => "auto" };
        prefill.AcceptOnlyFromAmong("auto", "masked");
        var continuedOnly = new Option<bool>("--continued-only") { Description = "Measure the continued calls (--continued) and stop: no trajectories are replayed." };
        var keyBucket = new Option<int>("--key-bucket")
        {
            Description = "Keys per CUDA graph bucket (a graph is captured per step shape and bucket; coarser: fewer captures, more idle attention blocks).",
            DefaultValueFactory = _ => new TargetModelOptions().CudaGraphKeyBucket,
        };
        keyBucket.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 64 or > 1 << 20)
            {
                r.AddError("--key-bucket: give a number of keys from 64 to 1048576.");
            }
        });
        var output = new Option<string>("--out") { DefaultValueFactory = _ => "bench/out" };
        var command = new Command("agents", "Replay whole trajectories as agent conversations (prefix reuse on and off).")
        {
            traces, config, skip, agents, perAgent, callsPer, maxContext, kvTokens, block, variants, reuse, continued, graphs, output, gpu, longest, only,
            prefill, continuedOnly, keyBucket,
        };
        command.SetAction(p => Run(p.GetValue(traces)!, p.GetValue(config)!, p.GetValue(skip),
            p.GetValue(agents)!.Split(',', StringSplitOptions.TrimEntries).Select(int.Parse).ToArray(), p.GetValue(perAgent), p.GetValue(callsPer),
            p.GetValue(maxContext), p.GetValue(kvTokens), p.GetValue(block), p.GetValue(variants)!.Split(',', StringSplitOptions.TrimEntries),
            p.GetValue(reuse)!.Split(',', StringSplitOptions.TrimEntries).Select(r => r == "on").ToArray(), p.GetValue(continued)!,
            p.GetValue(graphs), p.GetValue(output)!, p.GetValue(gpu), p.GetValue(longest), p.GetValue(only),
            p.GetValue(prefill) == "masked" ? PrefillAttention.Masked : PrefillAttention.Auto, p.GetValue(continuedOnly), p.GetValue(keyBucket)));
        return command;
    }

    private static int Run(string traces, string configPath, int skip, int[] agentCounts, int perAgent, int callsPer, int maxContext, long kvTokens,
        int block, string[] variants, bool[] reuses, string continuedSpec, bool graphs, string output, double gpuGib, int longest, bool concurrencyOnly,
        PrefillAttention prefill, bool continuedOnly, int keyBucket)
    {
        TorchRuntime.EnsureLoaded();
        Device device = TorchRuntime.DefaultDevice;
        ModelConfig config = ModelConfig.Load(configPath);
        int maxAgents = agentCounts.Max();
        (List<TraceCallTokens> teach, List<List<TraceCallTokens>> trajectories, List<int> finalLengths, List<int> callLengths) =
            Load(traces, skip, maxAgents * perAgent, callsPer, maxContext, config.VocabSize, longest);
        Console.WriteLine($"{trajectories.Count} trajectories, {trajectories.Sum(t => t.Count)} calls (mean prompt {trajectories.SelectMany(t => t).Average(c => c.Prompt.Length):F0}, " +
            $"mean response {trajectories.SelectMany(t => t).Average(c => c.Response.Length):F0} tokens); {teach.Count} calls teach the drafter");

        ScalarType dtype = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        long pool = kvTokens;
        if (pool == 0)
        {
            pool = device.type == DeviceType.CUDA ? KvTokensFitting(config, maxContext, maxAgents, block, dtype, graphs, (long)(gpuGib * (1L << 30))) : (long)maxAgents * maxContext;
        }
        TargetModelOptions Options(bool reuse) => new()
        {
            Device = device, DType = dtype, MaxBatch = maxAgents, MaxContext = maxContext, KvCacheTokens = pool, KvBlockSize = block,
            CudaGraphs = graphs && device.type == DeviceType.CUDA, PrefixCaching = reuse, PrefillAttention = prefill, CudaGraphKeyBucket = keyBucket,
        };
        TargetModelOptions options = Options(true);
        Concurrency concurrency = Fit(config, options, finalLengths, callLengths);
        Console.WriteLine($"KV pool {pool} tokens in blocks of {block}: {concurrency.FixedSlots} fixed slots of {concurrency.FixedSlotTokens}, " +
            $"{concurrency.RealLengthConversations} SWE-bench conversations at their final lengths (mean {concurrency.MeanConversationTokens:F0} tokens), " +
            $"{concurrency.RunningLengthConversations} at the lengths they hold while running (mean {concurrency.MeanRunningTokens:F0} tokens)");
        if (concurrencyOnly)
        {
            return 0;
        }
        Tokenizer tokenizer = TiktokenTokenizer.CreateForEncoding("o200k_base");

        var continuedCalls = new List<ContinuedCall>();
        var runs = new List<AgentRun>();
        string stepPaths = "";
        foreach (bool reuse in reuses)
        {
            using TargetModel model = TargetModel.CreateRandom(config, Options(reuse), seed: 1);
            stepPaths = model.StepPaths;
            Console.WriteLine(stepPaths);
            foreach (string pair in continuedSpec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                string[] parts = pair.Split(':');
                ContinuedCall c = Continue(model, tokenizer, int.Parse(parts[0], CultureInfo.InvariantCulture), int.Parse(parts[1], CultureInfo.InvariantCulture), reuse);
                continuedCalls.Add(c);
                Console.WriteLine($"continued call: {c.Context} cached + {c.NewTokens} new tokens, reuse {(reuse ? "on" : "off")}: time to first token {c.TimeToFirstTokenMs:F1} ms ({c.CachedTokens} tokens found cached), a second such call {c.WarmTimeToFirstTokenMs:F1} ms, a third {c.ThirdTimeToFirstTokenMs:F1} ms");
            }
            if (continuedOnly)
            {
                continue;
            }
            VerificationCostModel? cost = variants.Any(v => v != "plain") ? VerificationCostModel.Measure(model, 2048, maxWidth: 33) : null;
            // warm-up, untimed: the first calls of one trajectory through every variant (kernels, graphs, JIT)
            foreach (string variant in variants)
            {
                Replay(model, tokenizer, teach, [trajectories[0].Take(2).ToList()], 1, variant, reuse, cost);
            }
            foreach (int agents in agentCounts)
            {
                foreach (string variant in variants)
                {
                    model.DropCachedPrefixes(); // every run starts from a cold prefix cache
                    AgentRun run = Replay(model, tokenizer, teach, trajectories.Take(agents * perAgent).ToList(), agents, variant, reuse, cost);
                    runs.Add(run);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{variant} reuse={(reuse ? "on" : "off")} agents={agents}: {run.Seconds:F1} s, {run.MeanTrajectorySeconds:F1} s per trajectory, {run.TokensPerSecond:F1} tokens/s; " +
                        $"prefilled {run.PrefilledTokens} of {run.PromptTokens} prompt tokens ({run.PrefilledOverNew:F2}x the {run.NewTokens} new ones), " +
                        $"TTFT {run.MeanTimeToFirstTokenMs:F0} ms, decode {run.MeanDecodeMs:F0} ms per call, {run.Preemptions} preemptions, {run.Mismatches} mismatches, {run.GraphsCaptured} graphs captured"));
                }
            }
        }
        string deviceName = device.type == DeviceType.CUDA ? "cuda" : "cpu";
        var report = new AgentsReport(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), deviceName, Path.GetFileName(configPath),
            maxContext, block, pool, $"{pool} tokens", concurrency, continuedCalls, runs, stepPaths);
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "agents.json"), JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        string md = Markdown(report);
        File.WriteAllText(Path.Combine(output, "agents.md"), md);
        Console.WriteLine(md);
        return runs.Any(r => r.Mismatches != 0) ? 1 : 0;
    }

    /// <summary>The trajectories after <paramref name="skip"/> (whose calls teach the drafter), cut at their first call
    /// that does not fit <paramref name="maxContext"/> with its response, and the final lengths of all the trace's
    /// conversations that fit.</summary>
    private static (List<TraceCallTokens> Teach, List<List<TraceCallTokens>> Trajectories, List<int> FinalLengths, List<int> CallLengths) Load(string traces,
        int skip, int count, int callsPer, int maxContext, int vocab, int longest)
    {
        var teach = new List<TraceCallTokens>();
        var trajectories = new List<List<TraceCallTokens>>();
        var finals = new List<int>();
        var running = new List<int>();
        int index = 0;
        foreach (TraceTrajectory t in TraceReader.Open(traces, ProtocolTokenizer.CreateO200kBase()).Read())
        {
            var calls = new List<TraceCallTokens>();
            foreach (TraceCall call in t.Calls)
            {
                var c = new TraceCallTokens(t.TaskId, call.Index, Map(call.Prompt.Span, vocab), Map(call.Response.Span, vocab));
                if (c.Prompt.Length + c.Response.Length + 64 > maxContext)
                {
                    break;
                }
                calls.Add(c);
                running.Add(c.Prompt.Length + c.Response.Length);
            }
            if (calls.Count > 0)
            {
                finals.Add(calls[^1].Prompt.Length + calls[^1].Response.Length);
            }
            if (index++ < skip)
            {
                teach.AddRange(calls);
            }
            else if (trajectories.Count < count && calls.Count > 0 && (longest == 0 || t.Calls.Length <= longest) && calls.Count == t.Calls.Length)
            {
                trajectories.Add(callsPer > 0 ? calls.Take(callsPer).ToList() : calls);
            }
        }
        return (teach, trajectories, finals, running);
    }

    private static int[] Map(ReadOnlySpan<int> ids, int vocab)
    {
        var mapped = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            mapped[i] = ids[i] % vocab;
        }
        return mapped;
    }

    /// <summary>The KV tokens that fit in <paramref name="gpuBytes"/> beside the model, less 8 GiB for activations, the
    /// graphs' pools and libtorch's own allocations.</summary>
    private static long KvTokensFitting(ModelConfig config, int maxContext, int agents, int block, ScalarType dtype, bool graphs, long gpuBytes)
    {
        MemoryEstimate estimate = MemoryEstimate.For(config, new TargetModelOptions { MaxBatch = agents, MaxContext = maxContext, DType = dtype, KvBlockSize = block, CudaGraphs = graphs });
        return Math.Max(maxContext, estimate.KvTokensFor(gpuBytes - (8L << 30)));
    }

    /// <summary>How many of the trace's conversations (final lengths, in trace order) the pool holds at once, against
    /// fixed slots of 32k tokens.</summary>
    private static Concurrency Fit(ModelConfig config, TargetModelOptions options, List<int> finalLengths, List<int> callLengths)
    {
        MemoryEstimate estimate = MemoryEstimate.For(config, options);
        const int slot = 32768;
        int fixedSlots = (int)(estimate.KvTokens / slot);
        int real = estimate.SequencesFitting(Enumerable.Repeat(finalLengths, 1000).SelectMany(l => l));
        // the pool over the mean blocks a running conversation holds (every call of every conversation, whole blocks): how
        // many run at once on average, whatever their order in the trace
        double meanBlocks = callLengths.Average(l => (double)((l + options.KvBlockSize - 1) / options.KvBlockSize));
        int running = (int)(estimate.KvTokens / options.KvBlockSize / meanBlocks);
        return new Concurrency(estimate.KvTokens, options.KvBlockSize, slot, fixedSlots, real, finalLengths.Average(), running, callLengths.Average());
    }

    /// <summary>A conversation of <paramref name="context"/> random tokens is served (one token), then continued three times
    /// from that cached call with <paramref name="added"/> new tokens each: the continued calls' times to first token.</summary>
    private static ContinuedCall Continue(TargetModel model, Tokenizer tokenizer, int context, int added, bool reuse)
    {
        var random = new Random(context + added);
        int[] first = Enumerable.Range(0, context).Select(_ => random.Next(model.Config.VocabSize)).ToArray();
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, null, new SpeculativeEngineOptions { EndOfSequenceTokenIds = [] });
        GenerationResult a = engine.GenerateAsync(new GenerationRequest { PromptTokens = first, MaxNewTokens = 1 }).GetAwaiter().GetResult();
        GenerationResult Continued() => engine.GenerateAsync(new GenerationRequest
        {
            PromptTokens = [.. first, .. a.TokenIds, .. Enumerable.Range(0, added - 1).Select(_ => random.Next(model.Config.VocabSize))],
            MaxNewTokens = 1,
        }).GetAwaiter().GetResult();
        GenerationResult b = Continued(), warm = Continued(), third = Continued(); // from the same cached conversation, other new tokens
        return new ContinuedCall(context, added, reuse, b.Statistics.TimeToFirstToken.TotalMilliseconds, b.Statistics.CachedPromptTokens,
            warm.Statistics.TimeToFirstToken.TotalMilliseconds, third.Statistics.TimeToFirstToken.TotalMilliseconds);
    }

    /// <summary>N agents, each replaying its trajectories' calls in order through one engine.</summary>
    private static AgentRun Replay(TargetModel model, Tokenizer tokenizer, List<TraceCallTokens> teach, List<List<TraceCallTokens>> trajectories, int agents,
        string variant, bool reuse, VerificationCostModel? cost)
    {
        using IDrafter? drafter = variant == "plain" ? null : new SuffixDrafter(new SuffixDrafterOptions());
        if (drafter is not null)
        {
            new Workload(teach, [], 0).Teach(drafter);
        }
        using SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter, new SpeculativeEngineOptions
        {
            MaxBatch = agents, MaxDraftTokens = 32, AdaptiveSpeculation = drafter is not null, CostModel = cost, EndOfSequenceTokenIds = [],
        });
        var perCall = new System.Collections.Concurrent.ConcurrentBag<AgentCall>();
        var trajectorySeconds = new System.Collections.Concurrent.ConcurrentBag<double>();
        long graphsBefore = model.CudaGraphChurn.Added;
        long start = Stopwatch.GetTimestamp();
        Task[] workers = Enumerable.Range(0, agents).Select(agent => Task.Run(async () =>
        {
            for (int t = agent; t < trajectories.Count; t += agents)
            {
                long begun = Stopwatch.GetTimestamp();
                int[]? previous = null;
                foreach (TraceCallTokens call in trajectories[t])
                {
                    GenerationResult r = await engine.GenerateForcedAsync(new GenerationRequest
                    {
                        PromptTokens = call.Prompt, MaxNewTokens = call.Response.Length, StopTokenIds = [], ConversationId = call.TaskId,
                    }, call.Response);
                    GenerationStatistics s = r.Statistics;
                    int newTokens = previous is null ? call.Prompt.Length : call.Prompt.Length - previous.Length;
                    double ttft = s.TimeToFirstToken.TotalMilliseconds, total = s.TotalTime.TotalMilliseconds;
                    perCall.Add(new AgentCall(call.TaskId, call.CallIndex, call.Prompt.Length, newTokens, s.CachedPromptTokens, call.Prompt.Length - s.CachedPromptTokens,
                        r.TokenIds.Count, ttft, total - ttft, total, s.Preemptions, r.TokenIds.SequenceEqual(call.Response)));
                    previous = [.. call.Prompt, .. call.Response];
                }
                trajectorySeconds.Add(Stopwatch.GetElapsedTime(begun).TotalSeconds);
            }
        })).ToArray();
        Task.WaitAll(workers);
        double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        AgentCall[] calls = [.. perCall.OrderBy(c => c.TaskId, StringComparer.Ordinal).ThenBy(c => c.Call)];
        long prompt = calls.Sum(c => (long)c.PromptTokens), fresh = calls.Sum(c => (long)c.NewTokens), cached = calls.Sum(c => c.CachedTokens);
        return new AgentRun(variant, reuse, agents, trajectories.Count, calls.Length, seconds, trajectorySeconds.Average(), calls.Sum(c => (long)c.ResponseTokens) / seconds,
            prompt, fresh, cached, prompt - cached, (double)(prompt - cached) / fresh, calls.Average(c => c.TimeToFirstTokenMs), calls.Average(c => c.DecodeMs),
            calls.Sum(c => (long)c.Preemptions), calls.Count(c => !c.Exact), calls,
            (int)(model.CudaGraphChurn.Added - graphsBefore)); // captures (one per new shape or key bucket) cost time inside the run
    }

    private static string Markdown(AgentsReport report)
    {
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"Agent replay, {report.Model} (random weights), {report.Device}, {report.Date}; KV pool {report.KvTokens} tokens in blocks of {report.BlockSize}, {report.MaxContext} per sequence.");
        md.AppendLine();
        md.AppendLine("Paths: " + report.StepPaths);
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Concurrency: {report.Concurrency.FixedSlots} fixed {report.Concurrency.FixedSlotTokens}-token slots, or {report.Concurrency.RealLengthConversations} SWE-bench conversations at their final lengths (mean {report.Concurrency.MeanConversationTokens:F0} tokens): {(double)report.Concurrency.RealLengthConversations / Math.Max(1, report.Concurrency.FixedSlots):F2}x; at the lengths they hold while running (mean {report.Concurrency.MeanRunningTokens:F0} tokens) {report.Concurrency.RunningLengthConversations}: {(double)report.Concurrency.RunningLengthConversations / Math.Max(1, report.Concurrency.FixedSlots):F2}x.");
        md.AppendLine();
        foreach (ContinuedCall c in report.Continued)
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"- continued call, {c.Context} + {c.NewTokens} tokens, reuse {(c.Reuse ? "on" : "off")}: time to first token {c.TimeToFirstTokenMs:F1} ms, a second such call {c.WarmTimeToFirstTokenMs:F1} ms, a third {c.ThirdTimeToFirstTokenMs:F1} ms");
        }
        md.AppendLine();
        md.AppendLine("| variant | reuse | agents | calls | s | s per trajectory | tokens/s | prefilled / new tokens | TTFT ms | decode ms per call | preemptions | mismatches | speedup (reuse on / off) |");
        md.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (AgentRun r in report.Runs)
        {
            AgentRun? off = report.Runs.FirstOrDefault(o => !o.Reuse && o.Agents == r.Agents && o.Variant == r.Variant);
            string speedup = r.Reuse && off is not null ? (off.MeanTrajectorySeconds / r.MeanTrajectorySeconds).ToString("F2", CultureInfo.InvariantCulture) + "x" : "";
            md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Variant} | {(r.Reuse ? "on" : "off")} | {r.Agents} | {r.Calls} | {r.Seconds:F1} | {r.MeanTrajectorySeconds:F1} | {r.TokensPerSecond:F1} | {r.PrefilledOverNew:F2} | {r.MeanTimeToFirstTokenMs:F0} | {r.MeanDecodeMs:F0} | {r.Preemptions} | {r.Mismatches} | {speedup} |"));
        }
        return md.ToString();
    }
}
