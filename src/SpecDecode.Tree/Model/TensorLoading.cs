using System.Numerics;
using System.Runtime.InteropServices;
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
    /// <exception cref="SafeTensorsException">The tensor is missing, its shape differs from the destination's, or it
    /// holds a NaN or an infinity (a corrupt checkpoint: the model would emit garbage without any error).</exception>
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
            Span<byte> bytes = staging.bytes[..checked((int)(n * elementSize))];
            stream.ReadExactly(bytes);
            if (FirstNonFinite(bytes, info.DType) is long bad and >= 0)
            {
                throw new SafeTensorsException(
                    $"{checkpoint.FileOf(name)}: tensor '{name}' holds a NaN or infinite value (element {offset + bad} of {elements}): the weights are corrupt. Download or convert the checkpoint again.");
            }
            flat.narrow(0, offset, n).copy_(staging.narrow(0, 0, n));
        }
    }

    /// <summary>
    /// The index of the first NaN or infinite element of <paramref name="bytes"/> (little-endian elements of
    /// <paramref name="dtype"/>), or -1 when every element is finite: the elements whose exponent bits are all ones.
    /// </summary>
    /// <remarks>A bit test over the bytes already in the staging buffer, vectorised with <see cref="Vector{T}"/>, rather
    /// than libtorch's <c>isfinite</c>, which would make a second pass and allocate two tensors of the chunk's size.</remarks>
    internal static long FirstNonFinite(ReadOnlySpan<byte> bytes, SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Float32 => FirstAllOnes(MemoryMarshal.Cast<byte, uint>(bytes), 0x7F80_0000u),
        SafeTensorsDType.BFloat16 => FirstAllOnes(MemoryMarshal.Cast<byte, ushort>(bytes), (ushort)0x7F80),
        SafeTensorsDType.Float16 => FirstAllOnes(MemoryMarshal.Cast<byte, ushort>(bytes), (ushort)0x7C00),
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown safetensors dtype"),
    };

    /// <summary>The first element whose <paramref name="mask"/> bits are all set, or -1.</summary>
    private static long FirstAllOnes<T>(ReadOnlySpan<T> values, T mask) where T : unmanaged, IBinaryInteger<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && values.Length >= Vector<T>.Count)
        {
            var masks = new Vector<T>(mask);
            for (; i <= values.Length - Vector<T>.Count; i += Vector<T>.Count)
            {
                if (Vector.EqualsAny(new Vector<T>(values[i..]) & masks, masks))
                {
                    break; // the scalar loop below finds which element
                }
            }
        }
        for (; i < values.Length; i++)
        {
            if ((values[i] & mask) == mask)
            {
                return i;
            }
        }
        return -1;
    }
}
