using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>The graphed paths' faces on the model (<see cref="GraphedDecodeBackend"/>, <see cref="TreeKernelBackend"/>):
/// what runs where, and the hooks tests and benchmarks use.</summary>
public sealed partial class TargetModel
{
    /// <summary>Whether plain decoding steps run as CUDA graphs (see <see cref="TargetModelOptions.CudaGraphs"/>).</summary>
    public bool UsesCudaGraphs => _graphsOn;

    /// <summary>Whether graphed plain steps run SpecDecode's decode-step kernels (see <see cref="TargetModelOptions.DecodeKernels"/>);
    /// false without <see cref="TargetModelOptions.CudaGraphs"/>, and where the model or the GPU is not one they cover.</summary>
    public bool UsesDecodeKernels => _graphsOn && _graphed.Attention == DecodeAttention.Kernels;

    /// <summary>Whether steps of up to 64 sequences with 64 roots and draft nodes in all (one sequence with a draft of up to
    /// 63 nodes, a batch, or any sampled step) run through the tree kernels (with <see cref="UsesDecodeKernels"/>, for
    /// models whose shapes they cover).</summary>
    public bool UsesTreeKernels => _treeKernels is not null && UsesDecodeKernels;

    /// <summary>Plain-step graphs kept now (one per key bucket reached, shared by the slots); for benchmarks and tests.</summary>
    internal int CapturedGraphCount => _graphed.Count;

    /// <summary>Tree graphs kept now; for benchmarks.</summary>
    internal int CapturedTreeGraphCount => _treeKernels?.Count ?? 0;

    /// <summary>Graphs of every kind captured since load, evicted ones included (what a benchmark counts as captures in a
    /// run), and those evicted to stay within <see cref="TargetModelOptions.MaxCudaGraphs"/>.</summary>
    internal (long Added, long Evicted) CudaGraphChurn
    {
        get
        {
            (long added, long evicted) = _graphed.Churn;
            (long treeAdded, long treeEvicted) = _treeKernels?.Churn ?? (0, 0);
            return (added + treeAdded, evicted + treeEvicted);
        }
    }

    /// <summary>Throws when <see cref="TargetModelOptions.CudaGraphs"/> is on where it cannot work; runs before any weight is
    /// allocated.</summary>
    private static void CheckGraphOptions(ModelConfig config, TargetModelOptions options, Device device)
    {
        if (options.CudaGraphs != true)
        {
            return; // off, or automatic: GraphsWork decides without throwing
        }
        if (options.CudaGraphCapture)
        {
            if (device.type != DeviceType.CUDA)
            {
                throw new NotSupportedException($"TargetModelOptions.CudaGraphs needs a CUDA device; this model would run on {device.type}. Leave CudaGraphs off on the CPU.");
            }
            if (!CudaGraph.IsAvailable)
            {
                throw new NotSupportedException("TargetModelOptions.CudaGraphs: " + CudaGraph.UnavailableReason);
            }
        }
        if (!options.ScriptedLayers || config.OutputBias || config.MlpBias)
        {
            throw new NotSupportedException("TargetModelOptions.CudaGraphs needs the scripted decoder layers (ScriptedLayers on, and a model " +
                "without output or MLP projection biases).");
        }
    }

    /// <summary>Why CUDA graphs cannot run this model here, or null (the automatic choice of
    /// <see cref="TargetModelOptions.CudaGraphs"/>).</summary>
    internal static string? GraphsUnavailable(ModelConfig config, TargetModelOptions options, Device device) =>
        !options.CudaGraphCapture ? null
        : device.type != DeviceType.CUDA ? $"the model runs on {device.type}"
        : !CudaGraph.IsAvailable ? CudaGraph.UnavailableReason
        : !options.ScriptedLayers || config.OutputBias || config.MlpBias ? "the scripted layers do not cover the model (or are off)"
        : null;

    /// <summary>Which path runs which steps, and why: the graphed plain step (kernels or captured libtorch), the tree
    /// kernels (trees, batches of up to 512 rows, sampled steps, a draft model's forwards), and the libtorch path for the rest; and how prefill
    /// attends (flash attention over packed chunks, or masked chunks).</summary>
    public string StepPaths
    {
        get
        {
            string plain = Explain(new VerifyStep([new TreeInput(0, 0, DraftTree.Empty)], AcceptanceRule.Greedy));
            string tree = Explain(new VerifyStep([new TreeInput(0, 0, DraftTree.Chain([1, 2, 3]))], AcceptanceRule.Greedy));
            string batch = MaxBatch > 1 ? Explain(new VerifyStep([new TreeInput(0, 0, DraftTree.Empty), new TreeInput(1, 0, DraftTree.Empty)], AcceptanceRule.Greedy)) : "-";
            string sampled = Explain(new VerifyStep([new TreeInput(0, 0, DraftTree.Chain([1, 2, 3]))], AcceptanceRule.Sampled));
            string draft = KernelDraftRefusal([new DraftRows(0, 0, [-1, 0, 1], [0, 1, 2], [0, 1, 2])], [(0, 2)], out _, out _) is { } refused
                ? $"libtorch path ({refused})" : "graphed tree kernels, each region fed again (libtorch path past their limits)";
            string why = !_graphsOn ? $"; CUDA graphs off: {_graphsOffReason}"
                : !UsesDecodeKernels ? $"; decode-step kernels off: {_kernelsOffReason}" : "";
            string prefill = _prefill == PrefillAttention.Masked ? $"masked chunks ({_prefillWhy})" : $"packed chunks ({_prefillWhy})";
            return $"plain steps: {plain}; one-sequence trees: {tree}; batches: {batch}; sampled steps: {sampled}; draft forwards: {draft}; prefill: {prefill}{why}";
        }
    }

    /// <summary>True sends every step down the reference path even with graphs on: benchmarks compare both on one model.</summary>
    internal bool SuspendCudaGraphs
    {
        get => _graphed.Suspended;
        set => _graphed.Suspended = value;
    }

    /// <summary>True sends trees down the reference path even where <see cref="UsesTreeKernels"/>: benchmarks compare both
    /// on one model.</summary>
    internal bool SuspendTreeKernels
    {
        get => _treeKernels?.Suspended ?? false;
        set
        {
            if (_treeKernels is not null)
            {
                _treeKernels.Suspended = value;
            }
        }
    }

    /// <summary>Experiment knob (not public API): how the graphed single-token step computes attention. Steps after a change
    /// capture (and then replay) their own graphs per (slot, bucket, attention), so one model can time every variant
    /// (TreeBench <c>decode-graphs --attention</c>). Only the graphed path reads it.</summary>
    internal DecodeAttention GraphAttention
    {
        get => _graphed.Attention;
        set => _graphed.Attention = value;
    }

    /// <summary>The kernel step's logits [vocab] (bf16) for <paramref name="token"/> at the slot's length, run eagerly;
    /// writes the token's key and value at the length like a step does and leaves the cached length alone.</summary>
    internal Tensor KernelDecodeLogits(int slot, int token)
    {
        ReserveRows([new TreeInput(CheckSlot(slot), token, DraftTree.Empty)]);
        return _graphed.KernelDecodeLogits(slot, token);
    }

    /// <summary>A copy of the logits [vocab] (bf16) the decode-step kernels left last, graphed or eager: the last graphed
    /// plain step's, for checks of a graph against the eager step.</summary>
    internal Tensor LastKernelDecodeLogits() => _graphed.KernelStep().Logits.clone();

    /// <summary>The fixed-shape step's logits [1, 1, vocab] (in the model's dtype); writes the token's key and value at the
    /// length like the step does, and leaves the cached length alone. For tests that compare attention variants.</summary>
    internal Tensor FixedDecodeLogits(int slot, int token, DecodeAttention attention)
    {
        ReserveRows([new TreeInput(CheckSlot(slot), token, DraftTree.Empty)]);
        return _graphed.FixedDecodeLogits(slot, token, attention);
    }

    /// <summary>Every entry's logits [entries, vocab] (float32, on the CPU) from the tree kernels, run eagerly, without
    /// accepting anything: the cache keeps its length (the entries' keys and values are written past it, as a step
    /// does). For comparisons with <see cref="TreeLogits"/>.</summary>
    internal Tensor KernelTreeLogits(TreeInput input) => KernelTreeLogits([input])[0];

    /// <summary>Per input, every entry's logits [entries, vocab] (float32, on the CPU) from one batched tree-kernel step
    /// (at most 64 sequences, 64 entries each and 512 in all), run eagerly, accepting nothing (see <see cref="KernelTreeLogits(TreeInput)"/>).</summary>
    internal Tensor[] KernelTreeLogits(IReadOnlyList<TreeInput> inputs)
    {
        CheckTrees(inputs);
        if (!UsesTreeKernels)
        {
            throw new NotSupportedException("The tree kernels do not run this model here (see UsesTreeKernels).");
        }
        if (TreeKernelBackend.Refuses(inputs, AcceptanceRule.Greedy, suspended: false) is { } why && inputs.Count > 1)
        {
            throw new ArgumentException("The tree kernels do not take this step: " + why + ".", nameof(inputs));
        }
        ReserveRows(inputs);
        return _treeKernels!.Logits(inputs);
    }

    /// <summary>A copy of the cached keys and values of <paramref name="slot"/> at positions <paramref name="start"/> ..
    /// start + count − 1 (reserved ones), all layers: [layers, 2, kv heads, count, head size] on the CPU. For tests of the
    /// compaction.</summary>
    internal Tensor CacheRows(int slot, int start, int count) => _cache.SequenceRows(CheckSlot(slot), start, count);

    /// <summary>The last tree step's argmax per row (unpacked); for diagnostics.</summary>
    internal int[] LastKernelTreeArgmax() => (_treeKernels ?? throw new InvalidOperationException("No kernel tree step has run.")).LastArgmax();
}
