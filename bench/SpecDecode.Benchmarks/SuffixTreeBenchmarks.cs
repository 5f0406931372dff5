using BenchmarkDotNet.Attributes;
using SpecDecode.Replay;
using SpecDecode.Suffix;

namespace SpecDecode.Benchmarks;

/// <summary>Append and remove on a global tree warmed with real responses. Figures are per token.</summary>
[MemoryDiagnoser]
[InvocationCount(1)]
public class SuffixTreeUpdateBenchmarks
{
    private const int BatchTokens = 16_384;
    private const int BatchIdBase = 1_000_000;
    private SuffixTree _tree = null!;
    private int[][] _batch = null!;

    [GlobalSetup]
    public void Setup()
    {
        _tree = WarmTree.Build();
        _batch = WarmTree.HeldOutResponses(BatchTokens);
    }

    [IterationCleanup(Target = nameof(Append))]
    public void RemoveBatch() => Remove();

    [IterationSetup(Target = nameof(Remove))]
    public void AppendBatch() => Append();

    /// <summary>Appends held-out responses (16,384 tokens) as new sequences, one token at a time.</summary>
    [Benchmark(OperationsPerInvoke = BatchTokens)]
    public void Append()
    {
        for (int i = 0; i < _batch.Length; i++)
        {
            int id = BatchIdBase + i;
            foreach (int token in _batch[i])
            {
                _tree.Append(id, token);
            }
        }
    }

    /// <summary>Removes those responses again (eviction).</summary>
    [Benchmark(OperationsPerInvoke = BatchTokens)]
    public void Remove()
    {
        for (int i = 0; i < _batch.Length; i++)
        {
            _tree.Remove(BatchIdBase + i);
        }
    }
}

/// <summary>Drafting from the warm tree for contexts taken at random points of held-out responses. Figures are per draft.</summary>
[MemoryDiagnoser]
public class SuffixTreeSpeculateBenchmarks
{
    private const int Drafts = 1000;
    private SuffixTree _tree = null!;
    private int[][] _contexts = null!;

    /// <summary>Path drafts (false) or tree drafts (true).</summary>
    [Params(false, true)]
    public bool UseTree { get; set; }

    /// <summary>Draft budget.</summary>
    [Params(32)]
    public int Budget { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _tree = WarmTree.Build();
        TraceCall[] held = WarmTree.HeldOutCalls();
        var rng = new Random(1);
        _contexts = new int[Drafts][];
        for (int i = 0; i < Drafts; i++)
        {
            TraceCall call = held[rng.Next(held.Length)];
            int[] tokens = [.. call.Prompt.Span, .. call.Response.Span];
            int at = call.PromptLength + rng.Next(Math.Max(1, call.ResponseLength));
            _contexts[i] = tokens[Math.Max(0, at - 64)..at];
        }
    }

    /// <summary>One draft with the reference settings (factor 1, offset 0, min prob 0.1).</summary>
    [Benchmark(OperationsPerInvoke = Drafts)]
    public int Speculate()
    {
        var settings = new SpeculationSettings(Budget, new MatchLengthRule(Budget, 1f, 0f), 0.1f, UseTree);
        int total = 0;
        foreach (int[] context in _contexts)
        {
            total += _tree.Speculate(context, settings).Count;
        }
        return total;
    }
}
