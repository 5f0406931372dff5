using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// What the kernel steps (<see cref="KernelDecodeStep"/>, <see cref="KernelTreeStep"/>) share: the model they run, the
/// loaded kernel module, and device buffers that live as long as the model, whichever dispose scope the first step
/// ran in.
/// </summary>
internal abstract class KernelStep : IDisposable
{
    private readonly List<Tensor> _buffers = [];

    protected KernelStep(string what, ModelConfig config, CausalLMWeights weights, KvCache cache, Tensor cos, Tensor sin)
    {
        if (!cache.Data.is_contiguous() || !cos.is_contiguous() || !sin.is_contiguous() || cos.dtype != ScalarType.Float32)
        {
            throw new InvalidOperationException($"The {what} kernels need a contiguous KV cache and contiguous float32 rotary tables.");
        }
        Config = config;
        Weights = weights;
        Cache = cache;
        Cos = cos;
        Sin = sin;
        Module = DecodeKernels.Get();
    }

    protected ModelConfig Config { get; }

    protected CausalLMWeights Weights { get; }

    /// <summary>The paged KV cache (its <see cref="KvCache.Addressing"/> tells the kernels where rows are).</summary>
    protected KvCache Cache { get; }

    protected Tensor Cos { get; }

    protected Tensor Sin { get; }

    protected DecodeKernels.Module Module { get; }

    /// <summary>A zeroed buffer of <paramref name="elements"/> on the cache's device, kept until <see cref="Dispose"/>.</summary>
    protected Tensor Buffer(long elements, ScalarType type) => Keep(zeros(elements, type, Cache.Data.device));

    /// <summary>Keeps <paramref name="tensor"/> until <see cref="Dispose"/>, out of any dispose scope.</summary>
    protected Tensor Keep(Tensor tensor)
    {
        tensor.DetachFromDisposeScope();
        _buffers.Add(tensor);
        return tensor;
    }

    /// <summary>A tensor's data pointer (device memory), as a launch takes it.</summary>
    protected static IntPtr P(Tensor t) => DecodeKernels.DataPointer(t);

    /// <summary>A data pointer, or null for a missing tensor (an absent bias).</summary>
    protected static IntPtr Optional(Tensor? t) => t is null ? IntPtr.Zero : P(t);

    public void Dispose()
    {
        foreach (Tensor t in _buffers)
        {
            t.Dispose();
        }
        _buffers.Clear();
    }
}
