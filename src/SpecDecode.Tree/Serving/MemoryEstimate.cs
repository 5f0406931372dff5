using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// What a <see cref="TargetModel"/> of a given shape allocates on its device before serving anything: the weights and
/// the preallocated KV cache (one slot of <see cref="TargetModelOptions.MaxContext"/> + 1 positions per sequence), so a
/// host can tell how many sequences of what length fit before it loads a model. Activations of a step come on top
/// (a few hundred MB for an 8B model at batch 8 and 128 tree tokens: the attention mask and logits; about 100 KB per row
/// of a causal prefill forward, 0.8 GB at the default <see cref="TargetModelOptions.CausalPrefillChunk"/>).
/// </summary>
/// <param name="WeightBytes">Parameters × bytes per element of the dtype.</param>
/// <param name="KvCacheBytes">layers × 2 (keys, values) × slots × KV heads × (MaxContext + 1) × head dim × bytes.</param>
/// <param name="KvBytesPerToken">The cache's bytes per cached token of one sequence.</param>
public sealed record MemoryEstimate(long WeightBytes, long KvCacheBytes, long KvBytesPerToken)
{
    /// <summary>Weights plus KV cache.</summary>
    public long TotalBytes => WeightBytes + KvCacheBytes;

    /// <summary>How many sequences of <paramref name="context"/> tokens fit in <paramref name="availableBytes"/> beside the
    /// weights (0 when the weights alone do not fit).</summary>
    public int MaxSequences(long availableBytes, int context)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(availableBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 1);
        long left = availableBytes - WeightBytes;
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
        return new MemoryEstimate(parameters * bytes, perToken * options.MaxBatch * (options.MaxContext + 1L), perToken);
    }
}
