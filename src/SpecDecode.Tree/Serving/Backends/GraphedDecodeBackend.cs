using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Plain decoding steps (one sequence, one new token, greedy or forced) as replayed CUDA graphs
/// (<see cref="TargetModelOptions.CudaGraphs"/>): a fixed-shape step reads the token, the cached length and the slot from
/// a static device tensor and the sequence's rows through its device block table, attends over a fixed key bucket (keys
/// past the length masked), writes its keys and values at the length and leaves the argmax in a static tensor. The step
/// is SpecDecode's decode-step kernels (<see cref="KernelDecodeStep"/>) where they run the model on this GPU
/// (<see cref="Attention"/> = <see cref="DecodeAttention.Kernels"/>), else the scripted layers captured.
/// </summary>
/// <remarks>One graph serves every slot (2026-12-08; before, graphs were kept per slot): the scripted step reads the slot
/// from the static input, and the kernel step reads the block table from a static copy of the slot's row, refreshed by a
/// device-to-device copy before each replay (the table's pointer is a launch argument, fixed in the graph). So a key
/// bucket is captured once for all sequences, and the graphs kept are bounded by the buckets (capacity ÷
/// <see cref="TargetModelOptions.CudaGraphKeyBucket"/> per attention variant), not by slots × buckets.</remarks>
internal sealed class GraphedDecodeBackend : IStepBackend
{
    private readonly ModelParts _parts;
    private readonly int _bucket;
    // kernel steps: each key's first use runs eagerly, its second is captured; the scripted step captures at first use
    private readonly CudaGraphSet<(long Keys, DecodeAttention Attention)> _graphs;
    private readonly Dictionary<(long Keys, DecodeAttention Attention), Tensor> _outputs = [];
    // [token, length, slot] int64 on the device: what a replay reads
    private readonly Tensor _input;
    // the stepping slot's block table row (int32), copied from the cache's tables before each kernel step
    private readonly Tensor _table;
    private KernelDecodeStep? _kernelStep;

    public GraphedDecodeBackend(ModelParts parts, bool capture, int bucket, DecodeAttention attention, int maxGraphs = CudaGraphSet<int>.DefaultCapacity)
    {
        _parts = parts;
        _graphs = new(maxGraphs);
        Capturing = capture;
        _bucket = bucket;
        Attention = attention;
        _input = zeros(3, ScalarType.Int64, parts.Device);
        _table = zeros(parts.Cache.Tables.shape[1], ScalarType.Int32, parts.Device);
    }

    /// <inheritdoc />
    public string Name => Attention == DecodeAttention.Kernels ? "graphed decode-step kernels" : "graphed libtorch decode step";

    /// <summary>Whether steps are captured and replayed (false: run eagerly, for CPU tests of the bookkeeping).</summary>
    public bool Capturing { get; }

    /// <summary>How the step computes attention (<see cref="DecodeAttention.Kernels"/>: the whole step through the kernels);
    /// an experiment knob of TreeBench, each value with graphs of its own.</summary>
    public DecodeAttention Attention { get; set; }

    /// <summary>True sends every step elsewhere (benchmarks compare paths on one model).</summary>
    public bool Suspended { get; set; }

    /// <summary>Graphs captured so far (one per key bucket and attention variant, shared by the slots).</summary>
    public int Count => _graphs.Count;

    /// <summary>Graphs captured since load (evicted ones included), and graphs evicted to stay within the capacity.</summary>
    public (long Added, long Evicted) Churn => (_graphs.Added, _graphs.Evicted);

    /// <inheritdoc />
    public string? Refuses(VerifyStep step) =>
        Suspended ? "graphs suspended"
        : step.Inputs.Count != 1 ? "a batch of sequences"
        : step.Inputs[0].Draft.Count != 0 ? "a draft tree"
        : step.Rule == AcceptanceRule.Sampled ? "sampled acceptance"
        : null;

    /// <inheritdoc />
    public VerifiedStep[] Verify(VerifyStep step)
    {
        TreeInput input = step.Inputs[0];
        int slot = input.Slot, length = _parts.Cache.Length(slot);
        long next = Step(slot, input.Root, length);
        var verified = new VerifiedStep(slot, [], [(int)next]);
        GreedyAcceptance.Commit(_parts.Cache, input.Root, verified);
        // Forced: a plain step through the graph costs what it costs; only the token that counts as the target's changes.
        return step.Rule == AcceptanceRule.Forced && step.Forced![0].Length > 0 ? [verified with { Tokens = [step.Forced[0][0]] }] : [verified];
    }

    /// <summary>The keys a graphed step over a cached <paramref name="length"/> attends: length + 1 rounded up to the key
    /// bucket, at most the capacity. Graphs are keyed by it.</summary>
    public long KeyBucket(int length) => Math.Min(((long)length + 1 + _bucket - 1) / _bucket * _bucket, _parts.Capacity);

    /// <summary>The model's <see cref="KernelDecodeStep"/>, made on first use.</summary>
    public KernelDecodeStep KernelStep()
    {
        if (DecodeKernels.Unsupported(_parts.Config, _parts.DType, _parts.Capacity) is { } reason)
        {
            throw new NotSupportedException("The decode-step kernels cannot run this model: " + reason + ".");
        }
        return _kernelStep ??= new KernelDecodeStep(_parts.Config, _parts.Weights, _parts.Cache, _parts.Cos, _parts.Sin);
    }

    /// <summary>The kernel step's logits [vocab] (bf16) for <paramref name="token"/> at the slot's length, run eagerly; writes
    /// the token's key and value at the length like a step does and leaves the cached length alone.</summary>
    public Tensor KernelDecodeLogits(int slot, int token)
    {
        int length = _parts.Cache.Length(slot);
        long keys = KeyBucket(length);
        KernelDecodeStep step = KernelStep();
        using var state = tensor(new long[] { token, length }, device: _parts.Device);
        step.Enqueue(slot, keys, state);
        cuda.synchronize();
        return step.Logits.clone();
    }

    /// <summary>The fixed-shape step's logits [1, 1, vocab] (in the model's dtype); writes the token's key and value at the
    /// length like the step does, and leaves the cached length alone.</summary>
    public Tensor FixedDecodeLogits(int slot, int token, DecodeAttention attention)
    {
        if (_parts.Scripted is null)
        {
            throw new InvalidOperationException("The fixed-shape decoding step needs the scripted decoder layers.");
        }
        long keys = KeyBucket(_parts.Cache.Length(slot));
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return FixedDecodeLogits(keys, attention, tensor(new long[] { token, _parts.Cache.Length(slot), slot }, device: _parts.Device)).MoveToOuterDisposeScope();
    }

    /// <summary>Copies the token and length in, replays (capturing first if needed), and reads the argmax.</summary>
    private long Step(int slot, int token, int length)
    {
        DecodeAttention attention = Attention;
        long keys = KeyBucket(length);
        // made here, so that its buffers are allocated before, not during, a capture
        KernelDecodeStep? kernels = attention == DecodeAttention.Kernels ? KernelStep() : null;
        using (var scope = NewDisposeScope())
        {
            _input.copy_(tensor(new long[] { token, length, slot }));
            if (kernels is not null)
            {
                _table.copy_(_parts.Cache.Tables[slot]); // on the device, before the replay in stream order
            }
        }
        if (!_outputs.TryGetValue((keys, attention), out Tensor? output))
        {
            output = zeros(1, ScalarType.Int64, _parts.Device);
            _outputs.Add((keys, attention), output);
        }
        _graphs.Run((keys, attention), Capturing, () =>
        {
            if (kernels is not null)
            {
                kernels.Enqueue(DecodeKernels.DataPointer(_table), keys, _input);
            }
            else
            {
                FixedDecodeStep(keys, attention, _input, output);
            }
        }, captureAtSecondUse: kernels is not null);
        using (var scope = NewDisposeScope())
        {
            // the step's one synchronisation
            return kernels is not null ? KernelDecodeStep.Unpack(kernels.Packed.cpu().data<long>()[0]) : output.cpu().data<long>()[0];
        }
    }

    /// <summary>
    /// The fixed-shape step over <paramref name="keys"/> keys: token, length and slot from <paramref name="input"/> [3]
    /// int64, argmax into <paramref name="output"/> [1] int64. Launches kernels only (no host synchronisation, no
    /// host-to-device copy), so it can be captured. Runs in its own dispose scope and no_grad.
    /// </summary>
    private void FixedDecodeStep(long keys, DecodeAttention attention, Tensor input, Tensor output)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        output.copy_(FixedDecodeLogits(keys, attention, input).view(-1).argmax(0).view(1));
    }

    private Tensor FixedDecodeLogits(long keys, DecodeAttention attention, Tensor input)
    {
        ModelConfig c = _parts.Config;
        Device device = _parts.Device;
        int groups = c.HeadCount / c.KeyValueHeadCount;
        Tensor token = input.narrow(0, 0, 1);
        Tensor length = input.narrow(0, 1, 1);
        Tensor cos = _parts.Cos.index_select(0, length).view(1, 1, 1, c.HeadDim).to(_parts.DType);
        Tensor sin = _parts.Sin.index_select(0, length).view(1, 1, 1, c.HeadDim).to(_parts.DType);
        Tensor x = _parts.Weights.EmbedTokens.index_select(0, token).view(1, 1, c.HiddenSize);
        // The cached prefix (key < length) and the new token (key = length); the rest of the bucket is masked.
        using Scalar count = keys; // held for the call (TorchScalars)
        Tensor beyond = arange(count, ScalarType.Int64, device).gt(length).view(1, 1, 1, keys).expand(1, 1, groups, keys);
        Tensor mask = zeros([1, 1, groups, keys], _parts.DType, device).masked_fill(beyond, TorchScalars.NegativeInfinity);
        // The slot's rows through its device block table (device ops only, so the step can be captured).
        Tensor slots = input.narrow(0, 2, 1);
        Tensor writeRows = _parts.Cache.Rows(slots, length.view(1, 1)).view(1);
        Tensor readRows = _parts.Cache.ReadRows(slots, keys);
        Tensor hidden = _parts.Scripted!.Forward(x, _parts.Cache.Data, writeRows, readRows, mask, cos, sin, attention);
        return nn.functional.linear(hidden, _parts.Weights.Head);
    }

    public void Dispose()
    {
        _graphs.Dispose();
        foreach (Tensor output in _outputs.Values)
        {
            output.Dispose();
        }
        _outputs.Clear();
        _input.Dispose();
        _table.Dispose();
        _kernelStep?.Dispose();
    }
}
