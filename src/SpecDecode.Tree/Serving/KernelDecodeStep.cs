using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// One plain decoding step (one sequence, one token) of a bf16 Llama-family model through <see cref="DecodeKernels"/>:
/// 2 + 5 × layers launches and no libtorch op, so the graphed step is what the GPU needs for the weights and the
/// cache and little else. Reads the token and the cached length from a device tensor [2] int64, writes the token's
/// keys and values at that length, and leaves the argmax packed in <see cref="Packed"/> (<see cref="Unpack"/>) and the
/// bf16 logits in <see cref="Logits"/>. All launches are kernels only, so the step can be captured.
/// </summary>
internal sealed class KernelDecodeStep : IDisposable
{
    private readonly ModelConfig _config;
    private readonly CausalLMWeights _weights;
    private readonly Tensor _cache, _cos, _sin;
    private readonly DecodeKernels.Module _module;
    private readonly Tensor _hidden, _normed, _q, _attention, _act, _partialO, _partialMl, _counters, _rowCounter;
    private readonly int _maxSplits;

    public KernelDecodeStep(ModelConfig config, CausalLMWeights weights, Tensor cache, Tensor cos, Tensor sin, int capacity)
    {
        _config = config;
        _weights = weights;
        _cache = cache;
        _cos = cos;
        _sin = sin;
        _module = DecodeKernels.Get();
        Device device = cache.device;
        ModelConfig c = config;
        _hidden = zeros(c.HiddenSize, ScalarType.BFloat16, device);
        _normed = zeros(c.HiddenSize, ScalarType.BFloat16, device);
        _q = zeros(c.HeadCount * c.HeadDim, ScalarType.BFloat16, device);
        _attention = zeros(c.HeadCount * c.HeadDim, ScalarType.BFloat16, device);
        _act = zeros(c.IntermediateSize, ScalarType.BFloat16, device);
        _maxSplits = (capacity + DecodeKernels.AttentionChunk) / DecodeKernels.AttentionChunk;
        _partialO = zeros((long)_maxSplits * c.HeadCount * c.HeadDim, ScalarType.Float32, device);
        _partialMl = zeros((long)_maxSplits * c.HeadCount * 2, ScalarType.Float32, device);
        _counters = zeros(c.KeyValueHeadCount, ScalarType.Int32, device);
        _rowCounter = zeros(1, ScalarType.Int32, device);
        Logits = zeros(c.VocabSize, ScalarType.BFloat16, device);
        Packed = zeros(1, ScalarType.Int64, device);
        // The buffers live as long as the model, whichever dispose scope the first step ran in.
        foreach (Tensor t in Buffers())
        {
            t.DetachFromDisposeScope();
        }
        if (!cache.is_contiguous() || !cos.is_contiguous() || !sin.is_contiguous() || cos.dtype != ScalarType.Float32)
        {
            throw new InvalidOperationException("The decode-step kernels need a contiguous KV cache and contiguous float32 rotary tables.");
        }
    }

    /// <summary>The last step's logits [vocab] (bf16).</summary>
    public Tensor Logits { get; }

    /// <summary>The last step's argmax, packed as the head kernel leaves it (decode with <see cref="Unpack"/>).</summary>
    public Tensor Packed { get; }

    /// <summary>The token id in a packed argmax: its low 32 bits hold 0xFFFFFFFF − index.</summary>
    public static int Unpack(long packed) => (int)(0xFFFFFFFFu - (uint)(packed & 0xFFFFFFFF));

    /// <summary>Launches the step for <paramref name="slot"/> over <paramref name="keys"/> keys at most (the attention grid
    /// covers them; keys past the length are skipped on the device). <paramref name="state"/>: [token, length] int64 on the
    /// device.</summary>
    public void Enqueue(int slot, long keys, Tensor state)
    {
        ModelConfig c = _config;
        long[] stride = _cache.stride(); // [layer, k/v, slot, kv head, position, dim]
        int splits = (int)Math.Min((keys + DecodeKernels.AttentionChunk - 1) / DecodeKernels.AttentionChunk, _maxSplits);
        IntPtr cacheBase = DecodeKernels.DataPointer(_cache);
        IntPtr statePtr = DecodeKernels.DataPointer(state);
        float eps = (float)c.RmsNormEps;
        IntPtr P(Tensor t) => DecodeKernels.DataPointer(t);
        IntPtr Optional(Tensor? t) => t is null ? IntPtr.Zero : P(t);
        IntPtr hidden = P(_hidden), normed = P(_normed);

        LaunchEmbedNorm(statePtr, P(_weights.EmbedTokens), P(_weights.Layers[0].InputNorm.Weight), eps, c.HiddenSize, hidden, normed, P(Packed));
        // one item per warp; launch shapes as decode_step.cu's entry points say
        static int Blocks(int items, int threads) => (items + threads / 32 - 1) / (threads / 32);
        for (int i = 0; i < c.LayerCount; i++)
        {
            DecoderLayerWeights layer = _weights.Layers[i];
            AttentionWeights a = layer.Attention;
            IntPtr kCache = cacheBase + (nint)((i * stride[0] + 0 * stride[1] + slot * stride[2]) * 2);
            IntPtr vCache = cacheBase + (nint)((i * stride[0] + 1 * stride[1] + slot * stride[2]) * 2);
            int qkvItems = (c.HeadCount + c.KeyValueHeadCount) * (c.HeadDim / 2) + c.KeyValueHeadCount * c.HeadDim;
            _module.Launch("gemv_qkv_rotary", Blocks(qkvItems, 128), 1, 128, new GemvParams
            {
                X = normed, K = c.HiddenSize, Items = qkvItems,
                W0 = P(a.QProj.Weight), W1 = P(a.KProj.Weight), W2 = P(a.VProj.Weight),
                B0 = Optional(a.QProj.Bias), B1 = Optional(a.KProj.Bias), B2 = Optional(a.VProj.Bias),
                Y = P(_q), State = statePtr, Cos = P(_cos), Sin = P(_sin), KCache = kCache, VCache = vCache,
                HeadStride = stride[3], Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, HeadDim = c.HeadDim,
            });
            _module.Launch("attention_decode_" + c.HeadDim, splits, c.KeyValueHeadCount, DecodeKernels.AttentionThreads, new AttentionParams
            {
                Q = P(_q), KCache = kCache, VCache = vCache, HeadStride = stride[3], State = statePtr,
                PartialO = P(_partialO), PartialMl = P(_partialMl), Counters = P(_counters), Out = P(_attention),
                Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, HeadDim = c.HeadDim, Scale = (float)(1.0 / Math.Sqrt(c.HeadDim)),
            });
            // plain rows: two warps per row (gemv_rows*: split in halves)
            _module.Launch("gemv_rows_wide", Blocks(c.HiddenSize * 2, 512), 1, 512, new GemvParams
            {
                X = P(_attention), K = c.HeadCount * c.HeadDim, Items = c.HiddenSize, W0 = P(a.OProj.Weight),
                Y = hidden, Residual = hidden, NormWeight = P(layer.PostAttentionNorm.Weight), Normed = normed, Eps = eps, Counter = P(_rowCounter),
            }, c.HeadCount * c.HeadDim * 2);
            _module.Launch("gemv_gate_up", Blocks(c.IntermediateSize, 128), 1, 128, new GemvParams
            {
                X = normed, K = c.HiddenSize, Items = c.IntermediateSize, W0 = P(layer.Mlp.GateProj.Weight), W1 = P(layer.Mlp.UpProj.Weight), Y = P(_act),
            });
            Tensor nextNorm = i + 1 < c.LayerCount ? _weights.Layers[i + 1].InputNorm.Weight : _weights.Norm.Weight;
            _module.Launch("gemv_rows", Blocks(c.HiddenSize * 2, 256), 1, 256, new GemvParams
            {
                X = P(_act), K = c.IntermediateSize, Items = c.HiddenSize, W0 = P(layer.Mlp.DownProj.Weight),
                Y = hidden, Residual = hidden, NormWeight = P(nextNorm), Normed = normed, Eps = eps, Counter = P(_rowCounter),
            }, c.IntermediateSize * 2);
        }
        _module.Launch("gemv_head_argmax", Blocks(c.VocabSize, 256), 1, 256, new GemvParams
        {
            X = normed, K = c.HiddenSize, Items = c.VocabSize, W0 = P(_weights.Head), Y = P(Logits), Argmax = P(Packed),
        }, c.HiddenSize * 2);
    }

    private void LaunchEmbedNorm(IntPtr state, IntPtr embed, IntPtr norm, float eps, int k, IntPtr hidden, IntPtr normed, IntPtr argmax)
    {
        // eight arguments, each in an 8-byte slot, and the array of pointers to them that cuLaunchKernel takes
        const int count = 8;
        IntPtr values = System.Runtime.InteropServices.Marshal.AllocHGlobal(count * 8);
        IntPtr pointers = System.Runtime.InteropServices.Marshal.AllocHGlobal(count * IntPtr.Size);
        try
        {
            IntPtr[] slots = [state, embed, norm, IntPtr.Zero, IntPtr.Zero, hidden, normed, argmax];
            for (int i = 0; i < count; i++)
            {
                System.Runtime.InteropServices.Marshal.WriteIntPtr(values, i * 8, slots[i]);
                System.Runtime.InteropServices.Marshal.WriteIntPtr(pointers, i * IntPtr.Size, values + i * 8);
            }
            System.Runtime.InteropServices.Marshal.WriteInt32(values, 3 * 8, BitConverter.SingleToInt32Bits(eps));
            System.Runtime.InteropServices.Marshal.WriteInt32(values, 4 * 8, k);
            _module.Launch("embed_norm", 1, 1, DecodeKernels.NormThreads, pointers);
        }
        finally
        {
            System.Runtime.InteropServices.Marshal.FreeHGlobal(pointers);
            System.Runtime.InteropServices.Marshal.FreeHGlobal(values);
        }
    }

    public void Dispose()
    {
        foreach (Tensor t in Buffers())
        {
            t.Dispose();
        }
    }

    private Tensor[] Buffers() => [_hidden, _normed, _q, _attention, _act, _partialO, _partialMl, _counters, _rowCounter, Logits, Packed];
}
