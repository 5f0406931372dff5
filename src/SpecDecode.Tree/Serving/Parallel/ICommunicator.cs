using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The collectives one rank of a tensor-parallel model needs, the seam between the sharded forward and how ranks talk:
/// <see cref="InProcessGroup"/> (ranks on threads of one process, for CPU tests) or <see cref="NcclCommunicator"/> (NCCL on
/// the ranks' GPUs, on libtorch's current stream). Every rank calls the same collectives in the same order; each call
/// returns when the rank's part is done (for NCCL: enqueued on the stream, ordered with the libtorch work around it).
/// </summary>
internal interface ICommunicator : IDisposable
{
    /// <summary>This rank (0 .. <see cref="WorldSize"/> − 1).</summary>
    int Rank { get; }

    /// <summary>Ranks in the group.</summary>
    int WorldSize { get; }

    /// <summary>What carries the collectives, for logs ("in-process", "NCCL 2.21.5").</summary>
    string Name { get; }

    /// <summary>Collectives this rank has taken part in: a rank that fails knows whether other ranks may be waiting for it.</summary>
    long Collectives { get; }

    /// <summary>Replaces <paramref name="tensor"/> (contiguous) with the sum of every rank's tensor of the same shape and
    /// dtype; every rank gets the same bits.</summary>
    void AllReduceSum(Tensor tensor);

    /// <summary>Every rank's <paramref name="tensor"/> (contiguous, the same shape on every rank), stacked in rank order:
    /// [world size, ..shape], on this rank's device.</summary>
    Tensor AllGather(Tensor tensor);

    /// <summary>Replaces <paramref name="tensor"/> on every rank with rank <paramref name="root"/>'s.</summary>
    void Broadcast(Tensor tensor, int root);

    /// <summary>Rank <paramref name="root"/>'s <paramref name="values"/> (ignored on the other ranks, which may pass null),
    /// as a new array on every rank: commands and decisions, a few hundred numbers.</summary>
    long[] Broadcast(long[]? values, int root);

    /// <summary>Stops the whole group after a failure on this rank: every rank waiting in a collective, now or later, gets
    /// a <see cref="TensorParallelException"/> naming <paramref name="cause"/> instead of waiting forever.</summary>
    void Abort(Exception cause);
}
