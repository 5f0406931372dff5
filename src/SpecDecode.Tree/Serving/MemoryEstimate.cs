using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// What a <see cref="TargetModel"/> of a given shape allocates on its device before serving anything: the weights, the
/// preallocated KV cache (one slot of <see cref="TargetModelOptions.MaxContext"/> + 1 positions per sequence) and, with
/// <see cref="TargetModelOptions.CudaGraphs"/> on a model the kernels cover, the kernel steps' buffers, so a host can tell
/// how many sequences of what length fit before it loads a model. Activations of a step come on top (a few hundred MB for
/// an 8B model at batch 8 and 128 tree tokens: the attention mask and logits; about 100 KB per row of a causal prefill
/// forward, 0.8 GB at the default <see cref="TargetModelOptions.CausalPrefillChunk"/>), and so does the memory pool of the
/// captured CUDA graphs.
/// </summary>
/// <param name="WeightBytes">Parameters × bytes per element of the dtype.</param>
/// <param name="KvCacheBytes">layers × 2 (keys, values) × slots × KV heads × (MaxContext + 1) × head dim × bytes.</param>
/// <param name="KvBytesPerToken">The cache's bytes per cached token of one sequence.</param>
public sealed record MemoryEstimate(long WeightBytes, long KvCacheBytes, long KvBytesPerToken)
{
    /// <summary>The decode-step and tree-step kernels' long-lived buffers (0 without CUDA graphs or where the kernels do not
    /// run the model): for Llama-3.1-8B with a 32k cache 51 MB on an H100 (<see cref="TargetModel.Memory"/>), at most
    /// 101 MB on any GPU (<see cref="For"/>, which cannot know how many ways the products split).</summary>
    public long KernelBufferBytes { get; init; }

    /// <summary>Weights, KV cache and kernel buffers.</summary>
    public long TotalBytes => WeightBytes + KvCacheBytes + KernelBufferBytes;

    /// <summary>How many sequences of <paramref name="context"/> tokens fit in <paramref name="availableBytes"/> beside the
    /// weights and the kernel buffers (0 when those alone do not fit).</summary>
    public int MaxSequences(long availableBytes, int context)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(availableBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        long left = availableBytes - WeightBytes - KernelBufferBytes;
        return left <= 0 ? 0 : (int)Math.Min(int.MaxValue, left / (KvBytesPerToken * (context + 1L)));
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
        bool kernels = options.CudaGraphs && options.DecodeKernels && DecodeKernels.Unsupported(config, dtype, options.MaxContext) is null;
        return new MemoryEstimate(parameters * bytes, perToken * options.MaxBatch * (options.MaxContext + 1L), perToken)
        {
            KernelBufferBytes = kernels ? KernelBuffers(config, options.MaxContext, KernelTreeStep.Unsupported(config) is null, int.MaxValue) : 0,
        };
    }

    /// <summary>The kernel steps' buffers of a model with a cache of <paramref name="capacity"/> positions whose plain steps
    /// take the decode-step kernels (and its trees the tree kernels where <paramref name="treeKernels"/>), on a GPU of
    /// <paramref name="multiprocessors"/> multiprocessors (<see cref="int.MaxValue"/>: the most any GPU needs).</summary>
    internal static long KernelBuffers(ModelConfig config, int capacity, bool treeKernels, int multiprocessors) =>
        KernelDecodeStep.BufferBytes(config, capacity) + (treeKernels ? KernelTreeStep.BufferBytes(config, multiprocessors) : 0);
}
