using BenchmarkDotNet.Attributes;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Benchmarks;

/// <summary>
/// Speculative sampling of one step's trees (<see cref="SamplingTreeVerifier"/>) at the Llama-3 vocabulary, temperature
/// 0.7, point-mass drafts (the suffix drafter's): the closed form against the general loop over child ranks. On the CPU
/// both are bound by the [B, T, V] passes they make, which is what the closed form cuts; the GPU figure is issue 18's
/// (a sampled tree step cost 1.19-1.31x its greedy step on the H100, fifth session of 2026-12-07).
/// </summary>
[MemoryDiagnoser]
public class SampledVerificationBenchmarks
{
    private const int Vocabulary = 128_256;
    private Tensor _logits = null!;
    private int[][] _parents = null!, _tokens = null!;
    private SamplingOptions[] _options = null!;

    /// <summary>Sequences × rows: one tree of 32 nodes and its root, or 8 trees of 8.</summary>
    [Params("1x33", "8x8")]
    public string Shape { get; set; } = "1x33";

    /// <summary>The closed form (true) or the general loop (false).</summary>
    [Params(true, false)]
    public bool ClosedForm { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        TorchRuntime.EnsureLoaded();
        string[] parts = Shape.Split('x');
        int batch = int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
        int rows = int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        var rng = new Random(5);
        _parents = new int[batch][];
        _tokens = new int[batch][];
        for (int b = 0; b < batch; b++)
        {
            // a suffix-like tree: a chain with up to three alternatives at each of its first nodes
            _parents[b] = new int[rows];
            _tokens[b] = new int[rows];
            _parents[b][0] = -1;
            for (int t = 1; t < rows; t++)
            {
                _parents[b][t] = t < 4 ? 0 : t < 10 ? (t - 4) / 2 + 1 : t - 1;
                _tokens[b][t] = 1000 + 7 * t + b;
            }
        }
        torch.manual_seed(3);
        _logits = torch.randn(batch, rows, Vocabulary) * 3;
        _options = [.. Enumerable.Range(0, batch).Select(_ => new SamplingOptions { Temperature = 0.7f })];
    }

    [Benchmark]
    public int Verify()
    {
        SequenceSampling[] sequences = [.. _options.Select((o, b) => new SequenceSampling(o, SamplingStream.Create(b), null))];
        TreeSample[] samples = SamplingTreeVerifier.Verify(_logits, _parents, _tokens, sequences, ClosedForm);
        return samples.Sum(s => s.Tokens.Length);
    }

    [GlobalCleanup]
    public void Cleanup() => _logits.Dispose();
}
