using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Tree verification of one sequence through SpecDecode's tree kernels (<see cref="KernelTreeStep"/>), replayed as CUDA
/// graphs, one per (slot, padded row count, key bucket): where the graphed plain step runs the decode-step kernels, a
/// <see cref="VerifyGreedy"/> call with one sequence and a draft of 1 to 63 nodes takes this path, and so does
/// <see cref="VerifyForced"/>.
/// </summary>
public sealed partial class TargetModel
{
    private KernelTreeStep? _treeStep;
    private readonly Dictionary<(int Slot, int Rows, long Keys), CudaGraph?> _treeGraphs = [];

    /// <summary>Whether one-sequence trees of up to 63 draft nodes run through the tree kernels (with
    /// <see cref="UsesDecodeKernels"/>, for models whose shapes they cover).</summary>
    public bool UsesTreeKernels => UsesDecodeKernels && KernelTreeStep.Unsupported(Config) is null;

    /// <summary>True sends trees down the usual path even where <see cref="UsesTreeKernels"/>: benchmarks compare both on
    /// one model.</summary>
    internal bool SuspendTreeKernels { get; set; }

    /// <summary>Tree graphs captured so far; for benchmarks.</summary>
    internal int CapturedTreeGraphCount => _treeGraphs.Count;

    private bool IsKernelTree(IReadOnlyList<TreeInput> inputs) =>
        !SuspendCudaGraphs && !SuspendTreeKernels && UsesTreeKernels && inputs.Count == 1
        && inputs[0].Draft.Count > 0 && inputs[0].Draft.Count < KernelTreeStep.MaxRows;

    /// <summary>One tree step through the slot's graph for its padded rows and key bucket (captured on first use): uploads
    /// the step's inputs, replays, reads the result (the step's one synchronisation) and advances the cached length.
    /// <paramref name="forced"/>: per entry, the token that counts as the target's choice after it, or -1 (null: none).</summary>
    private VerifiedStep[] KernelTree(TreeInput input, long[]? forced)
    {
        int slot = input.Slot, length = _cache.Length(slot);
        (KernelTreeStep step, int rows, long keys) = PrepareTree(input, forced);
        CudaGraph.Run(_treeGraphs, (slot, rows, keys), _graphs!.Capturing, () => step.Enqueue(slot, rows, keys));
        long[] result;
        using (var scope = NewDisposeScope())
        {
            result = step.Result.cpu().data<long>().ToArray();
        }
        VerifiedStep verified = KernelTreeStep.Read(slot, result, rows);
        GreedyAcceptance.Commit(_cache, input.Root, verified);
        return [verified];
    }

    /// <summary>The tree step with <paramref name="input"/>'s inputs uploaded at the slot's length: its padded rows and the
    /// keys its attention covers (the key bucket of length + rows). Throws where the entries would pass the capacity.</summary>
    private (KernelTreeStep Step, int Rows, long Keys) PrepareTree(TreeInput input, long[]? forced)
    {
        int length = _cache.Length(input.Slot), entries = input.Draft.Count + 1, rows = KernelTreeStep.PaddedRows(entries);
        StepPlan.CheckRoom(input.Slot, length, entries, Capacity);
        KernelTreeStep step = _treeStep ??= new KernelTreeStep(Config, _weights, _cache, _cos, _sin);
        long[] state = KernelTreeStep.PackState(length, input.Root, input.Draft, rows, forced);
        using (var scope = NewDisposeScope())
        {
            step.State.narrow(0, 0, state.Length).copy_(tensor(state));
        }
        return (step, rows, KeyBucket(length + rows - 1));
    }

    /// <summary>Every entry's logits [entries, vocab] (float32, on the CPU) from the tree kernels, run eagerly, without
    /// accepting anything: the cache keeps its length (the entries' keys and values are written past it, as a step
    /// does). For comparisons with <see cref="TreeLogits"/>.</summary>
    internal Tensor KernelTreeLogits(TreeInput input)
    {
        CheckTrees([input]);
        if (!UsesTreeKernels)
        {
            throw new NotSupportedException("The tree kernels do not run this model here (see UsesTreeKernels).");
        }
        (KernelTreeStep step, int rows, long keys) = PrepareTree(input, null);
        step.Enqueue(input.Slot, rows, keys, accept: false, keepLogits: true);
        using var scope = NewDisposeScope();
        return step.Logits.view(KernelTreeStep.MaxRows, Config.VocabSize).narrow(0, 0, input.Draft.Count + 1).to(float32).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>A copy of the cached keys and values of <paramref name="slot"/> at positions <paramref name="start"/> ..
    /// start + count − 1 (reserved ones), all layers: [layers, 2, kv heads, count, head size] on the CPU. For tests of the
    /// compaction.</summary>
    internal Tensor CacheRows(int slot, int start, int count)
    {
        return _cache.SequenceRows(CheckSlot(slot), start, count);
    }

    /// <summary>The last tree step's argmax per row (unpacked); for diagnostics.</summary>
    internal int[] LastKernelTreeArgmax()
    {
        using var scope = NewDisposeScope();
        return (_treeStep ?? throw new InvalidOperationException("No kernel tree step has run.")).Argmax.cpu().data<long>().ToArray()
            .Select(KernelDecodeStep.Unpack).ToArray();
    }

    private void DisposeTreeKernels()
    {
        foreach (CudaGraph? graph in _treeGraphs.Values)
        {
            graph?.Dispose();
        }
        _treeGraphs.Clear();
        _treeStep?.Dispose();
    }
}
