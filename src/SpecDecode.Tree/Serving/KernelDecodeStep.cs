using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// One plain decoding step (one sequence, one token) of a bf16 Llama-family model through <see cref="DecodeKernels"/>:
/// 2 + 5 × layers launches and no libtorch op, so the graphed step is what the GPU needs for the weights and the
/// cache and little else. Reads the token and the cached length from a device tensor [2] int64, writes the token's
/// keys and values at that length, and leaves the argmax packed in <see cref="Packed"/> (<see cref="Unpack"/>) and the
/// bf16 logits in <see cref="Logits"/>. All launches are kernels only, so the step can be captured.
/// </summary>
internal sealed class KernelDecodeStep : KernelStep
{
    private readonly Tensor _hidden, _normed, _q, _attention, _act, _partialO, _partialMl, _counters, _rowCounter;
    private readonly int _maxSplits;

    public KernelDecodeStep(ModelConfig config, CausalLMWeights weights, KvCache cache, Tensor cos, Tensor sin)
        : base("decode-step", config, weights, cache, cos, sin)
    {
        ModelConfig c = config;
        int capacity = cache.Capacity;
        _hidden = Buffer(c.HiddenSize, ScalarType.BFloat16);
        _normed = Buffer(c.HiddenSize, ScalarType.BFloat16);
        _q = Buffer(c.HeadCount * c.HeadDim, ScalarType.BFloat16);
        _attention = Buffer(c.HeadCount * c.HeadDim, ScalarType.BFloat16);
        _act = Buffer(c.IntermediateSize, ScalarType.BFloat16);
        _maxSplits = (capacity + DecodeKernels.AttentionChunk) / DecodeKernels.AttentionChunk;
        _partialO = Buffer((long)_maxSplits * c.HeadCount * c.HeadDim, ScalarType.Float32);
        _partialMl = Buffer((long)_maxSplits * c.HeadCount * 2, ScalarType.Float32);
        _counters = Buffer(c.KeyValueHeadCount, ScalarType.Int32);
        _rowCounter = Buffer(1, ScalarType.Int32);
        Logits = Buffer(c.VocabSize, ScalarType.BFloat16);
        Packed = Buffer(1, ScalarType.Int64);
    }

    /// <summary>Bytes a decode step of <paramref name="c"/> keeps on the device for a cache of <paramref name="capacity"/>
    /// positions: its activation vectors and logits, the attention partials and counters.</summary>
    public static long BufferBytes(ModelConfig c, int capacity)
    {
        long width = (long)c.HeadCount * c.HeadDim, splits = (capacity + DecodeKernels.AttentionChunk) / DecodeKernels.AttentionChunk;
        return (2L * c.HiddenSize + 2 * width + c.IntermediateSize + c.VocabSize) * 2 + splits * (width + c.HeadCount * 2L) * 4
            + (c.KeyValueHeadCount + 1) * 4L + 8;
    }

    /// <summary>The last step's logits [vocab] (bf16).</summary>
    public Tensor Logits { get; }

    /// <summary>The last step's argmax, packed as the head kernel leaves it (decode with <see cref="Unpack"/>).</summary>
    public Tensor Packed { get; }

    /// <summary>The token id in a packed argmax: its low 32 bits hold 0xFFFFFFFF − index.</summary>
    public static int Unpack(long packed) => (int)(0xFFFFFFFFu - (uint)(packed & 0xFFFFFFFF));

    /// <summary>Launches the step for <paramref name="slot"/> over <paramref name="keys"/> keys at most (the attention grid
    /// covers them; keys past the length are skipped on the device). <paramref name="state"/>: [token, length] int64 on the
    /// device. The slot's rows are found through its device block table, which must cover the length (the caller
    /// reserves and syncs the tables before the step, outside any capture).</summary>
    public void Enqueue(int slot, long keys, Tensor state) => Enqueue(Cache.Addressing.Table(slot), keys, state);

    /// <summary><see cref="Enqueue(int, long, Tensor)"/> with the block table at <paramref name="table"/> (int32 on the
    /// device, one entry per block of a sequence): a graph that serves every slot reads a fixed copy of the stepping
    /// slot's row.</summary>
    public void Enqueue(IntPtr table, long keys, Tensor state)
    {
        ModelConfig c = Config;
        KernelAddressing kv = Cache.Addressing;
        int splits = (int)Math.Min((keys + DecodeKernels.AttentionChunk - 1) / DecodeKernels.AttentionChunk, _maxSplits);
        IntPtr statePtr = P(state);
        float eps = (float)c.RmsNormEps;
        IntPtr hidden = P(_hidden), normed = P(_normed);

        LaunchEmbedNorm(statePtr, P(Weights.EmbedTokens), P(Weights.Layers[0].InputNorm.Weight), eps, c.HiddenSize, hidden, normed, P(Packed));
        // one item per warp; launch shapes as decode_step.cu's entry points say
        static int Blocks(int items, int threads) => (items + threads / 32 - 1) / (threads / 32);
        for (int i = 0; i < c.LayerCount; i++)
        {
            DecoderLayerWeights layer = Weights.Layers[i];
            AttentionWeights a = layer.Attention;
            IntPtr kCache = kv.Layer(i, 0), vCache = kv.Layer(i, 1);
            int qkvItems = (c.HeadCount + c.KeyValueHeadCount) * (c.HeadDim / 2) + c.KeyValueHeadCount * c.HeadDim;
            Module.Launch("gemv_qkv_rotary", Blocks(qkvItems, 128), 1, 128, new GemvParams
            {
                X = normed, K = c.HiddenSize, Items = qkvItems,
                W0 = P(a.QProj.Weight), W1 = P(a.KProj.Weight), W2 = P(a.VProj.Weight),
                B0 = Optional(a.QProj.Bias), B1 = Optional(a.KProj.Bias), B2 = Optional(a.VProj.Bias),
                Y = P(_q), State = statePtr, Cos = P(Cos), Sin = P(Sin), KCache = kCache, VCache = vCache,
                HeadStride = kv.HeadStride, RowStride = kv.RowStride, BlockTable = table, BlockShift = kv.BlockShift,
                Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, HeadDim = c.HeadDim,
            });
            Module.Launch("attention_decode_" + c.HeadDim, splits, c.KeyValueHeadCount, DecodeKernels.AttentionThreads, new AttentionParams
            {
                Q = P(_q), KCache = kCache, VCache = vCache, HeadStride = kv.HeadStride, RowStride = kv.RowStride, BlockTable = table,
                BlockShift = kv.BlockShift, State = statePtr,
                PartialO = P(_partialO), PartialMl = P(_partialMl), Counters = P(_counters), Out = P(_attention),
                Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, HeadDim = c.HeadDim, Scale = (float)(1.0 / Math.Sqrt(c.HeadDim)),
            });
            // plain rows: two warps per row (gemv_rows*: split in halves)
            Module.Launch("gemv_rows_wide", Blocks(c.HiddenSize * 2, 512), 1, 512, new GemvParams
            {
                X = P(_attention), K = c.HeadCount * c.HeadDim, Items = c.HiddenSize, W0 = P(a.OProj.Weight),
                Y = hidden, Residual = hidden, NormWeight = P(layer.PostAttentionNorm.Weight), Normed = normed, Eps = eps, Counter = P(_rowCounter),
            }, c.HeadCount * c.HeadDim * 2);
            Module.Launch("gemv_gate_up", Blocks(c.IntermediateSize, 128), 1, 128, new GemvParams
            {
                X = normed, K = c.HiddenSize, Items = c.IntermediateSize, W0 = P(layer.Mlp.GateProj.Weight), W1 = P(layer.Mlp.UpProj.Weight), Y = P(_act),
            });
            Tensor nextNorm = i + 1 < c.LayerCount ? Weights.Layers[i + 1].InputNorm.Weight : Weights.Norm.Weight;
            Module.Launch("gemv_rows", Blocks(c.HiddenSize * 2, 256), 1, 256, new GemvParams
            {
                X = P(_act), K = c.IntermediateSize, Items = c.HiddenSize, W0 = P(layer.Mlp.DownProj.Weight),
                Y = hidden, Residual = hidden, NormWeight = P(nextNorm), Normed = normed, Eps = eps, Counter = P(_rowCounter),
            }, c.IntermediateSize * 2);
        }
        Module.Launch("gemv_head_argmax", Blocks(c.VocabSize, 256), 1, 256, new GemvParams
        {
            X = normed, K = c.HiddenSize, Items = c.VocabSize, W0 = P(Weights.Head), Y = P(Logits), Argmax = P(Packed),
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
            Module.Launch("embed_norm", 1, 1, DecodeKernels.NormThreads, pointers);
        }
        finally
        {
            System.Runtime.InteropServices.Marshal.FreeHGlobal(pointers);
            System.Runtime.InteropServices.Marshal.FreeHGlobal(values);
        }
    }
}
