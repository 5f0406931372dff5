using BenchmarkDotNet.Attributes;
using Microsoft.ML.Tokenizers;
using SpecDecode.Tree;

namespace SpecDecode.Benchmarks;

/// <summary>
/// The engine's host-side work per step that does not touch the device: packing a step's plan (tokens, parents, depths,
/// validity, lengths for one upload), adaptive speculation's batch-wide selection, and incremental detokenization. All
/// must stay small beside a ~19 ms H100 step (issue 6, goal 4).
/// </summary>
[MemoryDiagnoser]
public class EngineHostBenchmarks
{
    private TreeInput[] _inputs = null!;
    private int[] _lengths = null!;
    private DraftTree[] _trees = null!;
    private AdaptiveSpeculation _adaptive = null!, _ragged = null!;
    private TreeStepSequence[] _sequences = null!;
    private Tokenizer _tokenizer = null!;
    private int[] _response = null!;
    private DraftRows[] _draftLevel = null!;
    private (int Slot, int Row)[] _draftRows = null!;

    /// <summary>Sequences in the step.</summary>
    [Params(1, 8, 32)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(7);
        _trees = Enumerable.Range(0, Batch).Select(_ => Tree(rng, 32)).ToArray();
        _inputs = _trees.Select((t, slot) => new TreeInput(slot, rng.Next(128_000), t)).ToArray();
        _lengths = Enumerable.Range(0, Batch).Select(_ => rng.Next(2_000, 8_000)).ToArray();
        int[] batches = [1, 2, 4, 8, 16, 32];
        int[] widths = [1, 2, 4, 8, 16, 32, 64];
        var seconds = new double[batches.Length, widths.Length];
        for (int i = 0; i < batches.Length; i++)
        {
            for (int j = 0; j < widths.Length; j++)
            {
                seconds[i, j] = 0.017 + 0.00002 * batches[i] * widths[j];
            }
        }
        _adaptive = AdaptiveSpeculation.For(new VerificationCostModel(batches, widths, seconds), treeKernels: false);
        _ragged = AdaptiveSpeculation.For(new VerificationCostModel(batches, widths, seconds), treeKernels: true);
        // the widest kernel step of this batch: each sequence's tree cut to fit 512 rows in all
        int keep = Math.Min(31, KernelTreeStep.MaxStepRows / Batch - 1);
        _sequences = _trees.Select((t, slot) => new TreeStepSequence(slot, _lengths[slot], 1, Prefix(t, keep))).ToArray();
        // a draft model's fourth forward with the default options: 8 nodes below 13 earlier region entries a sequence
        int[] regionParents = [-1, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8];
        _draftLevel = Enumerable.Range(0, Batch).Select(slot => new DraftRows(slot, 13, regionParents,
            Enumerable.Range(2_000, 8).ToArray(), Enumerable.Repeat(3, 8).ToArray(), Enumerable.Range(1_000, 13).ToArray())).ToArray();
        _draftRows = _draftLevel.SelectMany(d => Enumerable.Range(0, 8).Select(row => (d.Slot, row))).ToArray();
        _tokenizer = TiktokenTokenizer.CreateForEncoding("o200k_base");
        _response = [.. _tokenizer.EncodeToIds(string.Concat(Enumerable.Repeat("def test_parse(self):\n    assert parse('x = 1') == {'x': 1}  # ok ünïcödé\n", 40)))];
    }

    /// <summary>The first <paramref name="count"/> nodes of <paramref name="tree"/> (parents precede children, so they form
    /// a tree).</summary>
    private static DraftTree Prefix(DraftTree tree, int count) =>
        DraftTree.Create(tree.Tokens[..count], tree.Parents[..count], tree.Probabilities[..count]);

    /// <summary>A tree of <paramref name="count"/> nodes with falling path probabilities, as drafters make them.</summary>
    private static DraftTree Tree(Random rng, int count)
    {
        var parents = new int[count];
        var probabilities = new float[count];
        var tokens = new int[count];
        for (int n = 0; n < count; n++)
        {
            parents[n] = n == 0 ? -1 : rng.Next(-1, n);
            probabilities[n] = (parents[n] < 0 ? 1f : probabilities[parents[n]]) * (float)(0.3 + 0.7 * rng.NextDouble());
            tokens[n] = 1_000 + n;
        }
        return DraftTree.Create(tokens, parents, probabilities);
    }

    /// <summary>Packs the step's plan for the one host-to-device copy (what every verification does first).</summary>
    [Benchmark]
    public long PackStepPlan() => StepPlan.ForTrees(_inputs, _lengths, 8_192).Packed.Length;

    /// <summary>Adaptive speculation's choice of the cap on nodes per tree over the batch.</summary>
    [Benchmark]
    public int SelectDrafts() => _adaptive.Select(_trees, out _).Sum(t => t.Count);

    /// <summary>The same choice where the tree kernels take ragged steps of up to 512 rows, priced at their padded rows (the
    /// rule walks every row count up to 512).</summary>
    [Benchmark]
    public int SelectDraftsRagged() => _ragged.Select(_trees, out _).Sum(t => t.Count);

    /// <summary>Packs the input array of the widest kernel tree step of the batch (up to 512 rows).</summary>
    [Benchmark]
    public int PackKernelTreeState() => KernelTreeStep.PackState(_sequences, KernelTreeStep.PaddedRows(_sequences.Sum(q => q.Entries))).Length;

    /// <summary>A draft forward as tree-kernel steps: the region of each sequence as a tree input, the steps (past 512
    /// rows, several) and where each wanted row is gathered from; what the kernel path adds on the host per forward.</summary>
    [Benchmark]
    public int MapDraftForward()
    {
        TargetModel.KernelDraftStep(_draftLevel, _draftRows, out TreeInput[] trees, out (int Input, int Entry)[] rows);
        List<int[]> steps = TreeKernelBackend.DraftSteps(trees);
        return TreeKernelBackend.GatherPlan(trees, steps, rows).Order.Length + steps.Count;
    }

    /// <summary>Detokenizes a 1,000-token response in steps of 3 tokens per sequence of the batch (as the engine does
    /// each step), o200k_base.</summary>
    [Benchmark]
    public int Detokenize()
    {
        int released = 0;
        for (int b = 0; b < Batch; b++)
        {
            var text = new TextAssembler(_tokenizer, ["</end>"]);
            for (int i = 0; i + 3 <= Math.Min(_response.Length, 1_000); i += 3)
            {
                released += text.Append(_response.AsSpan(i, 3).ToArray()).Length;
            }
        }
        return released;
    }
}
