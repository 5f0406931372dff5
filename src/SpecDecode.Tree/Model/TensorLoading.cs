using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>Copies checkpoint tensors into TorchSharp tensors of any device and dtype without holding a whole tensor in
/// managed memory: the bytes stream from the memory-mapped file through a bounded CPU staging tensor, chunk by chunk, so
/// tensors over 2 GB load too.</summary>
internal static class TensorLoading
{
    /// <summary>Staging chunk: 64 MiB.</summary>
    private const long ChunkBytes = 64L << 20;

    /// <summary>The TorchSharp element type of a safetensors dtype.</summary>
    public static ScalarType ScalarTypeOf(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Float32 => ScalarType.Float32,
        SafeTensorsDType.Float16 => ScalarType.Float16,
        SafeTensorsDType.BFloat16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>
    /// Fills <paramref name="destination"/> (contiguous, any device and floating dtype) with checkpoint tensor
    /// <paramref name="name"/>, converting the dtype.
    /// </summary>
    /// <exception cref="SafeTensorsException">The tensor is missing or its shape differs from the destination's.</exception>
    public static void CopyInto(this CheckpointWeights checkpoint, string name, Tensor destination)
    {
        SafeTensorInfo info = checkpoint.Get(name, destination.shape);
        ScalarType source = ScalarTypeOf(info.DType);
        int elementSize = source == ScalarType.Float32 ? 4 : 2;
        long elements = info.ElementCount;
        if (elements == 0)
        {
            return;
        }
        long chunk = Math.Min(elements, ChunkBytes / elementSize);
        using var scope = NewDisposeScope();
        Tensor staging = empty([chunk], source, CPU);
        Tensor flat = destination.view(-1);
        using Stream stream = checkpoint.OpenRead(name);
        for (long offset = 0; offset < elements; offset += chunk)
        {
            long n = Math.Min(chunk, elements - offset);
            stream.ReadExactly(staging.bytes[..checked((int)(n * elementSize))]);
            flat.narrow(0, offset, n).copy_(staging.narrow(0, 0, n));
        }
    }
}
