using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Tree verification of one sequence (a draft of 1 to 63 nodes, greedy or forced) through SpecDecode's tree kernels
/// (<see cref="KernelTreeStep"/>), replayed as CUDA graphs, one per (slot, padded row count, key bucket), where the graphed
/// plain step runs the decode-step kernels (<see cref="TargetModel.UsesTreeKernels"/>).
/// </summary>
internal sealed class TreeKernelBackend(ModelParts parts, GraphedDecodeBackend graphs) : IStepBackend
{
    private readonly Dictionary<(int Slot, int Rows, long Keys), CudaGraph?> _graphs = [];
    private KernelTreeStep? _step;

    /// <inheritdoc />
    public string Name => "graphed tree kernels";

    /// <summary>True sends trees elsewhere (benchmarks compare paths on one model).</summary>
    public bool Suspended { get; set; }

    /// <summary>Tree graphs captured so far.</summary>
    public int Count => _graphs.Count;

    /// <inheritdoc />
    public string? Refuses(VerifyStep step) =>
        Suspended || graphs.Suspended ? "tree kernels suspended"
        : step.Inputs.Count != 1 ? "a batch of sequences"
        : step.Inputs[0].Draft.Count == 0 ? "no draft tree"
        : step.Inputs[0].Draft.Count >= KernelTreeStep.MaxRows ? $"a tree of more than {KernelTreeStep.MaxRows - 1} draft nodes"
        : step.Rule == AcceptanceRule.Sampled ? "sampled acceptance"
        : null;

    /// <summary>One tree step through the slot's graph for its padded rows and key bucket (captured on first use): uploads
    /// the step's inputs, replays, reads the result (the step's one synchronisation) and advances the cached length.</summary>
    public VerifiedStep[] Verify(VerifyStep step)
    {
        TreeInput input = step.Inputs[0];
        int slot = input.Slot;
        long[]? forced = step.Rule == AcceptanceRule.Forced ? ReferenceBackend.ForcedChoices(input.Draft, step.Forced![0]) : null;
        (KernelTreeStep kernels, int rows, long keys) = Prepare(input, forced);
        CudaGraph.Run(_graphs, (slot, rows, keys), graphs.Capturing, () => kernels.Enqueue(slot, rows, keys));
        long[] result;
        using (var scope = NewDisposeScope())
        {
            result = kernels.Result.cpu().data<long>().ToArray();
        }
        VerifiedStep verified = KernelTreeStep.Read(slot, result, rows);
        GreedyAcceptance.Commit(parts.Cache, input.Root, verified);
        return [verified];
    }

    /// <summary>The tree step with <paramref name="input"/>'s inputs uploaded at the slot's length: its padded rows and the
    /// keys its attention covers (the key bucket of length + rows).</summary>
    private (KernelTreeStep Step, int Rows, long Keys) Prepare(TreeInput input, long[]? forced)
    {
        int length = parts.Cache.Length(input.Slot), rows = KernelTreeStep.PaddedRows(input.Draft.Count + 1);
        KernelTreeStep step = _step ??= new KernelTreeStep(parts.Config, parts.Weights, parts.Cache, parts.Cos, parts.Sin);
        long[] state = KernelTreeStep.PackState(length, input.Root, input.Draft, rows, forced);
        using (var scope = NewDisposeScope())
        {
            step.State.narrow(0, 0, state.Length).copy_(tensor(state));
        }
        return (step, rows, graphs.KeyBucket(length + rows - 1));
    }

    /// <summary>Every entry's logits [entries, vocab] (float32, on the CPU) from the tree kernels, run eagerly, without
    /// accepting anything: the cache keeps its length (the entries' keys and values are written past it, as a step does).</summary>
    public Tensor Logits(TreeInput input)
    {
        (KernelTreeStep step, int rows, long keys) = Prepare(input, null);
        step.Enqueue(input.Slot, rows, keys, accept: false, keepLogits: true);
        using var scope = NewDisposeScope();
        return step.Logits.view(KernelTreeStep.MaxRows, parts.Config.VocabSize).narrow(0, 0, input.Draft.Count + 1).to(float32).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>The last tree step's argmax per row (unpacked); for diagnostics.</summary>
    public int[] LastArgmax()
    {
        using var scope = NewDisposeScope();
        return (_step ?? throw new InvalidOperationException("No kernel tree step has run.")).Argmax.cpu().data<long>().ToArray()
            .Select(KernelDecodeStep.Unpack).ToArray();
    }

    public void Dispose()
    {
        foreach (CudaGraph? graph in _graphs.Values)
        {
            graph?.Dispose();
        }
        _graphs.Clear();
        _step?.Dispose();
    }
}
