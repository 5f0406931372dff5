using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Copies one rank's shard of a checkpoint tensor (<see cref="WeightShard"/>) straight from the memory-mapped safetensors
/// file into a TorchSharp tensor of any device and dtype, reading only the shard's bytes: a row slice is one contiguous
/// range of the file, a column slice one range per row. The bytes go through a bounded CPU staging tensor (64 MiB), so no
/// rank ever holds a whole tensor, let alone the whole model, in host memory.
/// </summary>
/// <remarks>By hand rather than through libtorch's own loader because libtorch has none for safetensors, and TorchSharp's
/// loads whole tensors; the file layout is huggingface/safetensors' (row-major, little-endian).</remarks>
internal static class ShardLoading
{
    /// <summary>Staging chunk: 64 MiB.</summary>
    private const long ChunkBytes = 64L << 20;

    /// <summary>
    /// Fills <paramref name="destination"/> (contiguous, of <paramref name="shard"/>'s shape, any device and floating
    /// dtype) with the rank's part of the checkpoint tensor, converting the dtype. Returns the bytes read from the
    /// checkpoint (none for <see cref="ShardSplit.Zeros"/>).
    /// </summary>
    /// <exception cref="SafeTensorsException">The checkpoint lacks the tensor or holds it in another shape than the plan's
    /// (config.json and the weights disagree).</exception>
    /// <exception cref="ArgumentException">The destination's shape is not the shard's, or it is not contiguous.</exception>
    public static long CopyShardInto(this CheckpointWeights checkpoint, WeightShard shard, Tensor destination) =>
        CopyShardInto(checkpoint, shard, destination, ChunkBytes);

    /// <summary><see cref="CopyShardInto(CheckpointWeights, WeightShard, Tensor)"/> through a staging tensor of
    /// <paramref name="chunkBytes"/> (tests make it small to cross chunk boundaries on tiny tensors).</summary>
    internal static long CopyShardInto(this CheckpointWeights checkpoint, WeightShard shard, Tensor destination, long chunkBytes)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(shard);
        ArgumentNullException.ThrowIfNull(destination);
        if (!destination.shape.SequenceEqual(shard.Shape))
        {
            throw new ArgumentException($"The destination of {shard} is [{string.Join(", ", destination.shape)}]; the shard is [{string.Join(", ", shard.Shape)}].", nameof(destination));
        }
        if (!destination.is_contiguous())
        {
            throw new ArgumentException($"The destination of {shard} must be contiguous.", nameof(destination));
        }
        SafeTensorInfo info = checkpoint.Get(shard.Name, shard.FullShape);
        if (shard.Split == ShardSplit.Zeros)
        {
            destination.zero_();
            return 0;
        }
        long rowElements = shard.FullShape.Skip(1).Aggregate(1L, (a, b) => a * b);
        // The shard as `count` runs of `length` elements, run i starting at element `first + i * stride` of the tensor.
        (long count, long first, long stride, long length) = shard.Split switch
        {
            ShardSplit.Whole => (1L, 0L, 0L, info.ElementCount),
            ShardSplit.Rows => (1L, shard.Start * rowElements, 0L, shard.Length * rowElements),
            ShardSplit.Columns when shard.FullShape.Length == 2 => (shard.FullShape[0], shard.Start, shard.FullShape[1], shard.Length),
            _ => throw new ArgumentException($"{shard}: only a two-dimensional tensor can be split by columns.", nameof(shard)),
        };
        return CopyRuns(checkpoint, info, destination, count, first, stride, length, chunkBytes);
    }

    /// <summary>Copies the runs in order into the flat destination through the staging tensor; returns the bytes read.</summary>
    private static long CopyRuns(CheckpointWeights checkpoint, SafeTensorInfo info, Tensor destination, long count, long first, long stride, long length, long chunkBytes)
    {
        ScalarType source = TensorLoading.ScalarTypeOf(info.DType);
        int elementSize = source == ScalarType.Float32 ? 4 : 2;
        long total = count * length;
        if (total == 0)
        {
            return 0;
        }
        long chunk = Math.Clamp(chunkBytes / elementSize, 1, total);
        using var scope = NewDisposeScope();
        Tensor staging = empty([chunk], source, CPU);
        Tensor flat = destination.view(-1);
        using Stream stream = checkpoint.OpenRead(info.Name);
        long staged = 0, written = 0, read = 0;
        for (long run = 0; run < count; run++)
        {
            long offset = first + run * stride, remaining = length;
            while (remaining > 0)
            {
                if (staged == chunk)
                {
                    flat.narrow(0, written, staged).copy_(staging.narrow(0, 0, staged));
                    written += staged;
                    staged = 0;
                }
                long n = Math.Min(remaining, chunk - staged);
                stream.Position = offset * elementSize;
                stream.ReadExactly(staging.bytes.Slice(checked((int)(staged * elementSize)), checked((int)(n * elementSize))));
                staged += n;
                offset += n;
                remaining -= n;
                read += n * elementSize;
            }
        }
        flat.narrow(0, written, staged).copy_(staging.narrow(0, 0, staged));
        return read;
    }
}
