using BenchmarkDotNet.Attributes;
using SpecDecode.Replay;
using SpecDecode.Suffix;

namespace SpecDecode.Benchmarks;

/// <summary>
/// Starting a request with a long agentic prompt: building its context tree from scratch (what the reference does at
/// every call) versus continuing the conversation's tree from the previous call. Each invocation starts the second-last
/// call of every one of the benchmark's trajectories; figures are per request.
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1)]
public class RequestStartBenchmarks
{
    private SuffixDecodingCache _cache = null!;
    private (string Task, int[] PreviousPrompt, int[] PreviousResponse, int[] Prompt)[] _calls = null!;
    private const int Requests = TraceData.Trajectories;

    [GlobalSetup]
    public void Setup()
    {
        _calls = TraceData.Load()
            .Where(t => t.Calls.Length >= 3)
            .Select(t => (t.TaskId, t.Calls[^3].Prompt.ToArray(), t.Calls[^3].Response.ToArray(), t.Calls[^2].Prompt.ToArray()))
            .ToArray();
        if (_calls.Length != Requests)
        {
            throw new InvalidOperationException($"Expected {Requests} trajectories with three calls or more, found {_calls.Length}.");
        }
    }

    /// <summary>Mean prompt length of the started requests, for the report.</summary>
    public double MeanPromptTokens => _calls.Average(c => c.Prompt.Length);

    [IterationSetup(Target = nameof(StartFromScratch))]
    public void NewCache() => _cache = new SuffixDecodingCache();

    [IterationSetup(Target = nameof(StartContinuingConversation))]
    public void CacheWithPreviousCalls()
    {
        _cache = new SuffixDecodingCache();
        long id = 0;
        foreach (var c in _calls)
        {
            var request = new RequestId(id++);
            _cache.StartRequest(request, c.PreviousPrompt, new DraftRequestOptions { ConversationId = c.Task });
            _cache.AddTokens(request, c.PreviousResponse);
            _cache.EndRequest(request);
        }
    }

    /// <summary>Indexes the whole prompt, as the reference does at every call.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Requests)]
    public void StartFromScratch()
    {
        long id = 1000;
        foreach (var c in _calls)
        {
            _cache.StartRequest(new RequestId(id++), c.Prompt, null);
        }
    }

    /// <summary>Continues the conversation's tree: only the tokens new since the previous call are inserted.</summary>
    [Benchmark(OperationsPerInvoke = Requests)]
    public void StartContinuingConversation()
    {
        long id = 1000;
        foreach (var c in _calls)
        {
            _cache.StartRequest(new RequestId(id++), c.Prompt, new DraftRequestOptions { ConversationId = c.Task });
        }
    }
}
