using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>Where a rank's weights come from: fills a parameter with the rank's shard of one tensor.</summary>
internal interface IShardSource : IDisposable
{
    /// <summary>Fills <paramref name="destination"/> (the shard's shape, the rank's device and dtype) with
    /// <paramref name="shard"/>.</summary>
    void Fill(WeightShard shard, Tensor destination);
}

/// <summary>A checkpoint folder's safetensors, read shard by shard (<see cref="ShardLoading"/>).</summary>
internal sealed class CheckpointShardSource(string folder) : IShardSource
{
    private readonly CheckpointWeights _checkpoint = CheckpointWeights.Open(folder);

    /// <summary>Bytes read from the checkpoint so far.</summary>
    public long BytesRead { get; private set; }

    /// <inheritdoc />
    public void Fill(WeightShard shard, Tensor destination) => BytesRead += _checkpoint.CopyShardInto(shard, destination);

    /// <inheritdoc />
    public void Dispose() => _checkpoint.Dispose();
}

/// <summary>
/// Random weights for benchmarks (normal, std 0.02; norms 1), the same whole tensors whatever the world size: each
/// tensor is generated whole from a seed derived from <paramref name="seed"/> and its name, on the rank's device, and the
/// rank keeps its slice. So a model at 2 or 4 ranks has exactly the weights of the one-device model of the same seed,
/// and their logits can be compared. On the CPU each draw has a generator of its own, so no other thread's random draw
/// can move it. On a GPU (TorchSharp's <c>Generator</c> is CPU-only) a process-wide lock holds the seeding of libtorch's
/// default CUDA generators and the launch of the draw together, so ranks loading on several threads stay deterministic;
/// it reseeds those generators, and a draw on another thread outside the lock could still move them.
/// </summary>
internal sealed class RandomShardSource(long seed) : IShardSource
{
    private static readonly Lock Gate = new();

    /// <inheritdoc />
    public void Fill(WeightShard shard, Tensor destination)
    {
        using var scope = NewDisposeScope();
        if (shard.Split == ShardSplit.Zeros)
        {
            destination.zero_();
            return;
        }
        if (shard.Name.EndsWith("norm.weight", StringComparison.Ordinal))
        {
            destination.fill_(TorchScalars.One); // a held Scalar (TorchScalars)
            return;
        }
        Tensor whole = empty(shard.FullShape, destination.dtype, destination.device);
        long tensorSeed = SeedOf(shard.Name);
        if (destination.device_type == DeviceType.CPU)
        {
            // A generator of its own: no other thread's draw (a test, another model) can move it.
            using var generator = new Generator((ulong)tensorSeed);
            whole.normal_(0, 0.02, generator);
        }
        else
        {
            lock (Gate)
            {
                cuda.manual_seed_all(tensorSeed);
                whole.normal_(0, 0.02);
            }
        }
        destination.copy_(shard.Split switch
        {
            ShardSplit.Rows => whole.narrow(0, shard.Start, shard.Length),
            ShardSplit.Columns => whole.narrow(1, shard.Start, shard.Length),
            _ => whole,
        });
    }

    /// <summary>A seed per tensor: FNV-1a of the name, mixed with the model's seed (stable across runs and .NET versions).</summary>
    private long SeedOf(string name)
    {
        ulong hash = 14695981039346656037UL ^ (ulong)seed;
        foreach (char c in name)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }
        return (long)(hash & 0x7FFF_FFFF_FFFF_FFFFUL);
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
