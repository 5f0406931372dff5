using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// What a <see cref="TargetModel"/> of a given shape allocates on its device before serving anything: the weights, the
/// paged KV cache (<see cref="TargetModelOptions.KvCacheTokens"/> in blocks of <see cref="TargetModelOptions.KvBlockSize"/>,
/// plus one scratch block) and, with <see cref="TargetModelOptions.CudaGraphs"/> on a model the kernels cover, the kernel
/// steps' buffers, so a host can tell how many tokens of KV, and so how many sequences of what length, fit before it loads
/// a model. Activations of a step come on top (a few hundred MB for an 8B model at batch 8 and 128 tree tokens: the
/// attention mask and logits; about 100 KB per row of a causal prefill forward, 0.8 GB at the default
/// <see cref="TargetModelOptions.CausalPrefillChunk"/>), and so does the memory pool of the captured CUDA graphs.
/// </summary>
/// <param name="WeightBytes">Parameters × bytes per element of the dtype.</param>
/// <param name="KvCacheBytes">The pool: (blocks + 1) × block size × <paramref name="KvBytesPerToken"/>.</param>
/// <param name="KvBytesPerToken">The cache's bytes per cached token: layers × 2 (keys, values) × KV heads × head dim ×
/// bytes.</param>
public sealed record MemoryEstimate(long WeightBytes, long KvCacheBytes, long KvBytesPerToken)
{
    /// <summary>The decode-step and tree-step kernels' long-lived buffers (0 without CUDA graphs or where the kernels do not
    /// run the model): for Llama-3.1-8B with a 32k cache 51 MB on an H100 (<see cref="TargetModel.Memory"/>), at most
    /// 101 MB on any GPU (<see cref="For"/>, which cannot know how many ways the products split).</summary>
    public long KernelBufferBytes { get; init; }

    /// <summary>Token rows per KV block.</summary>
    public int KvBlockSize { get; init; } = 1;

    /// <summary>Tokens the KV pool holds for all sequences together (the scratch block not counted).</summary>
    public long KvTokens => KvBytesPerToken == 0 ? 0 : KvCacheBytes / KvBytesPerToken - KvBlockSize;

    /// <summary>Weights, KV cache and kernel buffers.</summary>
    public long TotalBytes => WeightBytes + KvCacheBytes + KernelBufferBytes;

    /// <summary>How many sequences of <paramref name="context"/> tokens each fit in <paramref name="availableBytes"/> beside
    /// the weights and the kernel buffers (0 when those alone do not fit), counting whole blocks per sequence.</summary>
    public int MaxSequences(long availableBytes, int context)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(availableBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        long blocksPerSequence = (context + KvBlockSize - 1L) / KvBlockSize;
        return (int)Math.Min(int.MaxValue, KvTokensFor(availableBytes) / KvBlockSize / blocksPerSequence);
    }

    /// <summary>Tokens of KV cache that fit in <paramref name="availableBytes"/> beside the weights and the kernel buffers,
    /// in whole blocks and with the scratch block set aside (0 when those alone do not fit): a value for
    /// <see cref="TargetModelOptions.KvCacheTokens"/>.</summary>
    public long KvTokensFor(long availableBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(availableBytes);
        long left = availableBytes - WeightBytes - KernelBufferBytes;
        long blockBytes = KvBytesPerToken * KvBlockSize;
        return left <= blockBytes ? 0 : (left / blockBytes - 1) * KvBlockSize;
    }

    /// <summary>How many of the sequences whose lengths <paramref name="lengths"/> gives fit in the pool at once, taken in
    /// order (whole blocks each, no sharing counted): "the pool holds N tokens; at these real lengths that is M
    /// sequences".</summary>
    public int SequencesFitting(IEnumerable<int> lengths)
    {
        ArgumentNullException.ThrowIfNull(lengths);
        long blocks = KvTokens / KvBlockSize;
        int count = 0;
        foreach (int length in lengths)
        {
            long need = (length + KvBlockSize - 1L) / KvBlockSize;
            if (need > blocks)
            {
                break;
            }
            blocks -= need;
            count++;
        }
        return count;
    }

    /// <summary>The estimate for a model of <paramref name="config"/> loaded with <paramref name="options"/> (dtype: the
    /// options', else the checkpoint's half-precision dtype as on CUDA).</summary>
    public static MemoryEstimate For(ModelConfig config, TargetModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ScalarType dtype = options.DType ?? (config.DType == "float16" ? ScalarType.Float16 : ScalarType.BFloat16);
        long bytes = dtype == ScalarType.Float32 ? 4 : 2;
        long parameters = TargetModel.ParameterShapes(config).Sum(p => p.Shape.Aggregate(1L, (a, d) => a * d));
        long perToken = (long)config.LayerCount * 2 * config.KeyValueHeadCount * config.HeadDim * bytes;
        bool kernels = (options.CudaGraphs ?? true) && options.DecodeKernels && DecodeKernels.Unsupported(config, dtype, options.MaxContext) is null;
        return new MemoryEstimate(parameters * bytes, perToken * (options.KvBlocks + 1L) * options.KvBlockSize, perToken)
        {
            KvBlockSize = options.KvBlockSize,
            KernelBufferBytes = kernels ? KernelBuffers(config, options.MaxContext, KernelTreeStep.Unsupported(config) is null, int.MaxValue) : 0,
        };
    }

    /// <summary>The kernel steps' buffers of a model with a cache of <paramref name="capacity"/> positions whose plain steps
    /// take the decode-step kernels (and its trees the tree kernels where <paramref name="treeKernels"/>), on a GPU of
    /// <paramref name="multiprocessors"/> multiprocessors (<see cref="int.MaxValue"/>: the most any GPU needs).</summary>
    internal static long KernelBuffers(ModelConfig config, int capacity, bool treeKernels, int multiprocessors) =>
        KernelDecodeStep.BufferBytes(config, capacity) + (treeKernels ? KernelTreeStep.BufferBytes(config, multiprocessors) : 0);
}
