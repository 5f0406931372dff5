using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Verification of up to 64 sequences with up to 64 entries each and 512 in all (roots and drafts, greedy or forced)
/// through SpecDecode's tree kernels (<see cref="KernelTreeStep"/>; past 64 rows with cuBLAS's products), replayed as
/// CUDA graphs, one per <see cref="TreeStepShape"/> (padded rows, widest sequence, sequence count, key bucket), whatever
/// the slots: one sequence with a draft tree, and batches of sequences with or without drafts. A lone sequence without a
/// draft takes the graphed decode-step kernels (<see cref="GraphedDecodeBackend"/>), which read the weights as one-row
/// products at the bandwidth floor, unless it samples. Sampled steps run the same forward (its graph without the acceptance, keeping every row's logits), then
/// multi-step speculative sampling and the commit on the device (<see cref="SampledAcceptance"/>, as the libtorch path).
/// </summary>
internal sealed class TreeKernelBackend(ModelParts parts, GraphedDecodeBackend graphs, int maxGraphs = CudaGraphSet<int>.DefaultCapacity) : IStepBackend
{
    // kernel steps: each shape's first use runs eagerly, its second is captured (CudaGraphSet)
    private readonly CudaGraphSet<TreeStepShape> _graphs = new(maxGraphs), _sampledGraphs = new(maxGraphs);
    private KernelTreeStep? _step;

    /// <inheritdoc />
    public string Name => "graphed tree kernels";

    /// <summary>True sends trees elsewhere (benchmarks compare paths on one model).</summary>
    public bool Suspended { get; set; }

    /// <summary>Tree graphs captured so far (greedy or forced, and sampled).</summary>
    public int Count => _graphs.Count + _sampledGraphs.Count;

    /// <summary>Tree graphs captured since load (evicted ones included), and graphs evicted to stay within the capacity.</summary>
    public (long Added, long Evicted) Churn => (_graphs.Added + _sampledGraphs.Added, _graphs.Evicted + _sampledGraphs.Evicted);

    /// <inheritdoc />
    public string? Refuses(VerifyStep step) => Refuses(step.Inputs, step.Rule, Suspended || graphs.Suspended);

    /// <summary>Why the tree kernels do not take a step of <paramref name="inputs"/> under <paramref name="rule"/>, or null.</summary>
    internal static string? Refuses(IReadOnlyList<TreeInput> inputs, AcceptanceRule rule, bool suspended)
    {
        if (suspended)
        {
            return "tree kernels suspended";
        }
        if (inputs.Count == 1 && inputs[0].Draft.Count == 0 && rule != AcceptanceRule.Sampled)
        {
            return "one sequence without a draft";
        }
        if (inputs.Count > KernelTreeStep.MaxSequences)
        {
            return $"more than {KernelTreeStep.MaxSequences} sequences";
        }
        int widest = inputs.Max(i => i.Draft.Count + 1);
        if (widest > KernelTreeStep.MaxRows)
        {
            return $"a sequence of {widest} entries (root and draft nodes), more than the {KernelTreeStep.MaxRows} a kernel step takes per sequence";
        }
        int entries = inputs.Sum(i => i.Draft.Count + 1);
        return entries > KernelTreeStep.StepRowLimit ? $"{entries} rows (roots and draft nodes), more than the {KernelTreeStep.StepRowLimit} a kernel step takes" : null;
    }

    /// <summary>One step through the graph of its shape (captured on first use): uploads the step's inputs, replays, reads
    /// the result (the step's one synchronisation) and advances each sequence's cached length.</summary>
    public VerifiedStep[] Verify(VerifyStep step)
    {
        if (step.Rule == AcceptanceRule.Sampled)
        {
            return Sampled(step);
        }
        (KernelTreeStep kernels, TreeStepShape shape) = Prepare(step.Inputs, step.Rule == AcceptanceRule.Forced ? step.Forced : null);
        _graphs.Run(shape, graphs.Capturing, () => kernels.Enqueue(shape), CaptureAtSecondUse(shape));
        long[] result;
        using (var scope = NewDisposeScope())
        {
            result = kernels.Result.narrow(0, 0, (long)step.Inputs.Count * KernelTreeStep.ResultStride).cpu().data<long>().ToArray();
        }
        var verified = new VerifiedStep[step.Inputs.Count];
        for (int i = 0; i < verified.Length; i++)
        {
            TreeInput input = step.Inputs[i];
            verified[i] = KernelTreeStep.Read(input.Slot, result, i);
            GreedyAcceptance.Commit(parts.Cache, input.Root, verified[i]);
        }
        return verified;
    }

    /// <summary>A sampled step: the forward through the graph of its shape without the acceptance, keeping every row's logits;
    /// then the inputs' rows as [inputs, widest, vocab] (padding rows repeat the root's) for <see cref="SampledAcceptance"/>.</summary>
    private VerifiedStep[] Sampled(VerifyStep step)
    {
        IReadOnlyList<TreeInput> inputs = step.Inputs;
        (KernelTreeStep kernels, TreeStepShape shape) = Prepare(inputs, null);
        kernels.EnsureLogits();
        _sampledGraphs.Run(shape, graphs.Capturing, () => kernels.Enqueue(shape, accept: false, keepLogits: true), CaptureAtSecondUse(shape));
        int widest = inputs.Max(i => i.Draft.Count + 1);
        int[] first = KernelTreeStep.FirstRows(inputs.Select(i => i.Draft.Count + 1));
        var index = new long[inputs.Count * widest];
        for (int i = 0; i < inputs.Count; i++)
        {
            int entries = inputs[i].Draft.Count + 1;
            for (int t = 0; t < widest; t++)
            {
                index[i * widest + t] = first[i] + (t < entries ? t : 0);
            }
        }
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor rows = kernels.Logits.view(-1, parts.Config.VocabSize)
            .index_select(0, tensor(index).to(parts.Device)).view(inputs.Count, widest, parts.Config.VocabSize);
        return parts.Sampling.Accept(parts.Cache, rows, inputs, step.Sampling!, step.Drafts, step.Forced);
    }

    /// <summary>Null when a draft model's forward of <paramref name="inputs"/> (<see cref="TargetModel.KernelDraftStep"/>) runs
    /// here, else why not: each of its steps (<see cref="DraftSteps"/>) within a sampled step's limits, whose forward it is.</summary>
    public string? RefusesDraft(IReadOnlyList<TreeInput> inputs)
    {
        foreach (int[] step in DraftSteps(inputs))
        {
            if (Refuses(step.Select(i => inputs[i]).ToArray(), AcceptanceRule.Sampled, Suspended || graphs.Suspended) is { } why)
            {
                return why;
            }
        }
        return null;
    }

    /// <summary>The steps a draft forward of <paramref name="inputs"/> takes: consecutive inputs (their indices) of at most
    /// <see cref="KernelTreeStep.StepRowLimit"/> entries and <see cref="KernelTreeStep.MaxSequences"/> sequences in all,
    /// one step where they fit. A forward of many wide regions (a deep level of a batch's trees) thus reads the weights
    /// once per step instead of leaving the kernels. An input wider than a step allows a sequence leaves its step refused
    /// (<see cref="RefusesDraft"/>), and with it the forward.</summary>
    internal static List<int[]> DraftSteps(IReadOnlyList<TreeInput> inputs)
    {
        var steps = new List<int[]>();
        var current = new List<int>();
        int rows = 0;
        for (int i = 0; i < inputs.Count; i++)
        {
            int entries = inputs[i].Draft.Count + 1;
            if (current.Count > 0 && (rows + entries > KernelTreeStep.StepRowLimit || current.Count == KernelTreeStep.MaxSequences))
            {
                steps.Add([.. current]);
                current.Clear();
                rows = 0;
            }
            current.Add(i);
            rows += entries;
        }
        if (current.Count > 0)
        {
            steps.Add([.. current]);
        }
        return steps;
    }

    /// <summary>A draft model's forward (<see cref="TargetModel.DraftLogits"/>): each of its steps (<see cref="DraftSteps"/>)
    /// through the sampled steps' graph of its shape (the forward without acceptance, every row's logits kept; the cache's
    /// lengths stay), then the logits of <paramref name="rows"/> (input, entry) as [rows, vocab] in the model's dtype, a
    /// copy in the caller's scope. Every step runs, wanted rows or not: it writes its entries' keys and values.</summary>
    public Tensor DraftLogits(IReadOnlyList<TreeInput> inputs, IReadOnlyList<(int Input, int Entry)> rows)
    {
        using var _ = no_grad();
        List<int[]> steps = DraftSteps(inputs);
        (long[][] stepRows, long[] order) = GatherPlan(inputs, steps, rows);
        var pieces = new List<Tensor>();
        for (int s = 0; s < steps.Count; s++)
        {
            (KernelTreeStep kernels, TreeStepShape shape) = Prepare(steps[s].Select(i => inputs[i]).ToArray(), null);
            kernels.EnsureLogits();
            _sampledGraphs.Run(shape, graphs.Capturing, () => kernels.Enqueue(shape, accept: false, keepLogits: true), CaptureAtSecondUse(shape));
            if (stepRows[s].Length > 0)
            {
                pieces.Add(kernels.Logits.view(-1, parts.Config.VocabSize).index_select(0, tensor(stepRows[s]).to(parts.Device)));
            }
        }
        Tensor all = pieces.Count == 1 ? pieces[0] : cat(pieces, 0);
        return order.Select((o, n) => o == n).All(same => same) ? all : all.index_select(0, tensor(order).to(parts.Device));
    }

    /// <summary>Where a draft forward's wanted <paramref name="rows"/> (input, entry) are: per step of
    /// <paramref name="steps"/>, the step rows to gather (in the order of <paramref name="rows"/>), and per wanted row its
    /// row among the gathered rows of all steps one after another.</summary>
    internal static (long[][] StepRows, long[] Order) GatherPlan(IReadOnlyList<TreeInput> inputs, List<int[]> steps, IReadOnlyList<(int Input, int Entry)> rows)
    {
        var stepRows = new long[steps.Count][];
        var order = new long[rows.Count];
        int gathered = 0;
        for (int s = 0; s < steps.Count; s++)
        {
            int[] step = steps[s];
            int[] first = KernelTreeStep.FirstRows(step.Select(i => inputs[i].Draft.Count + 1));
            var inStep = new Dictionary<int, int>(step.Length);
            for (int g = 0; g < step.Length; g++)
            {
                inStep[step[g]] = g;
            }
            var mine = new List<long>();
            for (int n = 0; n < rows.Count; n++)
            {
                if (inStep.TryGetValue(rows[n].Input, out int g))
                {
                    mine.Add(first[g] + rows[n].Entry);
                    order[n] = gathered++;
                }
            }
            stepRows[s] = [.. mine];
        }
        return (stepRows, order);
    }

    /// <summary>Kernel-only steps capture at a shape's second use (<see cref="CudaGraphSet{TKey}"/>); wide steps run cuBLAS
    /// through libtorch, whose workspaces settle over warm-up runs on the capture stream, so they capture at first use
    /// after them.</summary>
    private static bool CaptureAtSecondUse(TreeStepShape shape) => !KernelTreeStep.IsWide(shape.Rows);

    /// <summary>The tree step with the inputs uploaded at their slots' lengths, and its shape: the keys its attention covers
    /// are the key bucket of the longest sequence's length + entries.</summary>
    private (KernelTreeStep Step, TreeStepShape Shape) Prepare(IReadOnlyList<TreeInput> inputs, IReadOnlyList<int[]>? forced)
    {
        var sequences = new TreeStepSequence[inputs.Count];
        int reach = 0;
        for (int i = 0; i < inputs.Count; i++)
        {
            TreeInput input = inputs[i];
            int length = parts.Cache.Length(input.Slot);
            sequences[i] = new TreeStepSequence(input.Slot, length, input.Root, input.Draft,
                forced is null ? null : ReferenceBackend.ForcedChoices(input.Draft, forced[i]));
            reach = Math.Max(reach, length + input.Draft.Count + 1);
        }
        TreeStepShape shape = TreeStepShape.For(sequences, graphs.KeyBucket(reach - 1));
        KernelTreeStep step = _step ??= new KernelTreeStep(parts.Config, parts.Weights, parts.Cache, parts.Cos, parts.Sin);
        long[] state = KernelTreeStep.PackState(sequences, shape.Rows);
        using (var scope = NewDisposeScope())
        {
            step.State.narrow(0, 0, state.Length).copy_(tensor(state));
        }
        return (step, shape);
    }

    /// <summary>Every entry's logits per input ([entries, vocab], float32, on the CPU) from the tree kernels, run eagerly,
    /// without accepting anything: the cache keeps its lengths (the entries' keys and values are written past them, as a
    /// step does).</summary>
    public Tensor[] Logits(IReadOnlyList<TreeInput> inputs)
    {
        (KernelTreeStep step, TreeStepShape shape) = Prepare(inputs, null);
        step.Enqueue(shape, accept: false, keepLogits: true);
        using var scope = NewDisposeScope();
        Tensor all = step.Logits.view(-1, parts.Config.VocabSize).narrow(0, 0, shape.Rows).to(float32).cpu();
        int[] first = KernelTreeStep.FirstRows(inputs.Select(i => i.Draft.Count + 1));
        return inputs.Select((input, i) => all.narrow(0, first[i], input.Draft.Count + 1).clone().MoveToOuterDisposeScope()).ToArray();
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
        _graphs.Dispose();
        _sampledGraphs.Dispose();
        _step?.Dispose();
    }
}
