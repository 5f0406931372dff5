using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Plain decoding steps (one sequence, one new token) as replayed CUDA graphs (<see cref="TargetModelOptions.CudaGraphs"/>):
/// a fixed-shape step reads the token and the cached length from a static device tensor, attends over a fixed key bucket
/// (keys past the length masked), writes its keys and values at the length and leaves the argmax in a static tensor.
/// </summary>
public sealed partial class TargetModel
{
    private DecodeGraphs? _graphs;
    private readonly int _graphBucket;

    /// <summary>Whether plain decoding steps run as CUDA graphs (see <see cref="TargetModelOptions.CudaGraphs"/>).</summary>
    public bool UsesCudaGraphs => _graphs is not null;

    /// <summary>Whether graphed plain steps run SpecDecode's decode-step kernels (see <see cref="TargetModelOptions.DecodeKernels"/>);
    /// false without <see cref="TargetModelOptions.CudaGraphs"/>, and where the model or the GPU is not one they cover.</summary>
    public bool UsesDecodeKernels => _graphs is not null && GraphAttention == DecodeAttention.Kernels;

    /// <summary>Graphs captured so far (one per slot and key bucket reached); for benchmarks and tests.</summary>
    internal int CapturedGraphCount => _graphs?.Count ?? 0;

    /// <summary>Throws when <see cref="TargetModelOptions.CudaGraphs"/> is on where it cannot work; runs before any weight is
    /// allocated.</summary>
    private static void CheckGraphOptions(ModelConfig config, TargetModelOptions options, Device device)
    {
        if (!options.CudaGraphs)
        {
            return;
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

    /// <summary>True sends every step down the usual path even with graphs on: benchmarks compare both on one model.</summary>
    internal bool SuspendCudaGraphs { get; set; }

    /// <summary>Experiment knob (not public API): how the graphed single-token step computes attention; default
    /// <see cref="DecodeAttention.Default"/>, the usual path's kernel. Steps after a change capture (and then replay) their own
    /// graphs per (slot, bucket, attention), so one model can time every variant (TreeBench <c>decode-graphs --attention</c>).
    /// Only the graphed path reads it.</summary>
    internal DecodeAttention GraphAttention { get; set; }

    /// <summary>Whether a <see cref="VerifyGreedy"/> call takes the graphed path: one sequence, no draft.</summary>
    private bool IsGraphedStep(IReadOnlyList<TreeInput> inputs) =>
        _graphs is not null && !SuspendCudaGraphs && inputs.Count == 1 && inputs[0].Draft.Count == 0;

    /// <summary>One plain decoding step through the slot's graph for the current key bucket (captured on first use).</summary>
    private KernelDecodeStep? _kernelStep;

    /// <summary>The model's <see cref="KernelDecodeStep"/>, made on first use.</summary>
    private KernelDecodeStep KernelStep()
    {
        if (DecodeKernels.Unsupported(Config, DType, Capacity) is { } reason)
        {
            throw new NotSupportedException("The decode-step kernels cannot run this model: " + reason + ".");
        }
        return _kernelStep ??= new KernelDecodeStep(Config, _weights, _cache, _cos, _sin);
    }

    /// <summary>The kernel step's logits [vocab] (bf16) for <paramref name="token"/> at the slot's length, run eagerly; writes the
    /// token's key and value at the length like a step does and leaves the cached length alone. For tests and benchmarks
    /// that compare it with <see cref="FixedDecodeLogits(int, int, DecodeAttention)"/>.</summary>
    internal Tensor KernelDecodeLogits(int slot, int token)
    {
        int length = _cache.Length(CheckSlot(slot));
        long keys = KeyBucket(length);
        KernelDecodeStep step = KernelStep();
        using var state = tensor(new long[] { token, length }, device: Device);
        step.Enqueue(slot, keys, state);
        cuda.synchronize();
        return step.Logits.clone();
    }

    private VerifiedStep[] GraphedStep(TreeInput input)
    {
        int slot = input.Slot, length = _cache.Length(slot);
        StepPlan.CheckRoom(slot, length, 1, Capacity);
        long next = _graphs!.Step(slot, input.Root, length, GraphAttention);
        var step = new VerifiedStep(slot, [], [(int)next]);
        GreedyAcceptance.Commit(_cache, input.Root, step);
        return [step];
    }

    /// <summary>
    /// The fixed-shape step for <paramref name="slot"/> over <paramref name="keys"/> keys: token and length from
    /// <paramref name="input"/> [2] int64, argmax into <paramref name="output"/> [1] int64. Launches kernels only (no host
    /// synchronisation, no host-to-device copy), so it can be captured. Runs in its own dispose scope and no_grad.
    /// </summary>
    private void FixedDecodeStep(int slot, long keys, DecodeAttention attention, Tensor input, Tensor output)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        output.copy_(FixedDecodeLogits(slot, keys, attention, input).view(-1).argmax(0).view(1));
    }

    /// <summary>The fixed-shape step's logits [1, 1, vocab] (in the model's dtype); writes the token's key and value at the
    /// length like the step does, and leaves the cached length alone. For tests that compare attention variants.</summary>
    internal Tensor FixedDecodeLogits(int slot, int token, DecodeAttention attention)
    {
        if (_scripted is null)
        {
            throw new InvalidOperationException("The fixed-shape decoding step needs the scripted decoder layers.");
        }
        int length = _cache.Length(CheckSlot(slot));
        long keys = KeyBucket(length);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return FixedDecodeLogits(slot, keys, attention, tensor(new long[] { token, length }, device: Device)).MoveToOuterDisposeScope();
    }

    /// <summary>The keys a graphed step over a cached <paramref name="length"/> attends: length + 1 rounded up to the key
    /// bucket, at most the capacity. Graphs are keyed by it.</summary>
    private long KeyBucket(int length) => Math.Min(((long)length + 1 + _graphBucket - 1) / _graphBucket * _graphBucket, Capacity);

    private Tensor FixedDecodeLogits(int slot, long keys, DecodeAttention attention, Tensor input)
    {
        ModelConfig c = Config;
        int groups = c.HeadCount / c.KeyValueHeadCount;
        Tensor token = input.narrow(0, 0, 1);
        Tensor length = input.narrow(0, 1, 1);
        Tensor cos = _cos.index_select(0, length).view(1, 1, 1, c.HeadDim).to(DType);
        Tensor sin = _sin.index_select(0, length).view(1, 1, 1, c.HeadDim).to(DType);
        Tensor x = _weights.EmbedTokens.index_select(0, token).view(1, 1, c.HiddenSize);
        // The cached prefix (key < length) and the new token (key = length); the rest of the bucket is masked.
        Tensor beyond = arange(keys, int64, Device).gt(length).view(1, 1, 1, keys).expand(1, 1, groups, keys);
        Tensor mask = zeros([1, 1, groups, keys], DType, Device).masked_fill(beyond, double.NegativeInfinity);
        // The slot's rows through its device block table (device ops only, so the step can be captured).
        Tensor slots = full(1, slot, int64, Device);
        Tensor writeRows = _cache.Rows(slots, length.view(1, 1)).view(1);
        Tensor readRows = _cache.ReadRows(slots, keys);
        Tensor hidden = _scripted!.Forward(x, _cache.Data, writeRows, readRows, mask, cos, sin, attention);
        return nn.functional.linear(hidden, _weights.Head);
    }

    /// <summary>The captured steps, one per (slot, key bucket), with their shared static input and per-graph outputs.</summary>
    private sealed class DecodeGraphs(TargetModel model, bool capture) : IDisposable
    {
        private readonly Dictionary<(int Slot, long Keys, DecodeAttention Attention), CudaGraph?> _graphs = [];
        private readonly Dictionary<(int Slot, long Keys, DecodeAttention Attention), Tensor> _outputs = [];
        private readonly Tensor _input = zeros(2, int64, model.Device);

        public int Count => _graphs.Count;

        /// <summary>Whether steps are captured and replayed (false: run eagerly, for CPU tests of the bookkeeping).</summary>
        public bool Capturing => capture;

        /// <summary>Copies the token and length in, replays (capturing first if needed), and reads the argmax.</summary>
        public long Step(int slot, int token, int length, DecodeAttention attention)
        {
            long keys = model.KeyBucket(length);
            using (var scope = NewDisposeScope())
            {
                _input.copy_(tensor(new long[] { token, length }));
            }
            // made here, so that its buffers are allocated before, not during, a capture
            KernelDecodeStep? kernels = attention == DecodeAttention.Kernels ? model.KernelStep() : null;
            if (!_outputs.TryGetValue((slot, keys, attention), out Tensor? output))
            {
                output = zeros(1, int64, model.Device);
                _outputs.Add((slot, keys, attention), output);
            }
            CudaGraph.Run(_graphs, (slot, keys, attention), capture, () =>
            {
                if (kernels is not null)
                {
                    kernels.Enqueue(slot, keys, _input);
                }
                else
                {
                    model.FixedDecodeStep(slot, keys, attention, _input, output);
                }
            });
            using (var scope = NewDisposeScope())
            {
                // the step's one synchronisation
                return kernels is not null ? KernelDecodeStep.Unpack(kernels.Packed.cpu().data<long>()[0]) : output.cpu().data<long>()[0];
            }
        }

        public void Dispose()
        {
            foreach (CudaGraph? graph in _graphs.Values)
            {
                graph?.Dispose();
            }
            foreach (Tensor output in _outputs.Values)
            {
                output.Dispose();
            }
            _graphs.Clear();
            _outputs.Clear();
            _input.Dispose();
        }
    }
}
