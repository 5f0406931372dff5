using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>How the ranks of a tensor-parallel model talk.</summary>
internal enum TensorParallelTransport
{
    /// <summary>Simulated ranks: threads of this process, collectives through <see cref="InProcessGroup"/> (CPU tests, or
    /// several ranks on one GPU).</summary>
    InProcess,

    /// <summary>One GPU per rank, collectives through NCCL (<see cref="NcclCommunicator"/>), one thread per rank.</summary>
    Nccl,
}

/// <summary>How a model is split over ranks (docs/tensor-parallel.md).</summary>
internal sealed class TensorParallelOptions
{
    /// <summary>Ranks; the model's query heads, key/value heads (or their replicas) and MLP columns must divide evenly
    /// (<see cref="TensorParallelPlan.ValidWorldSizes"/>). Default 1.</summary>
    public int WorldSize { get; init; } = 1;

    /// <summary>How the ranks talk. Default <see cref="TensorParallelTransport.InProcess"/>.</summary>
    public TensorParallelTransport Transport { get; init; } = TensorParallelTransport.InProcess;

    /// <summary>Each rank's device, by rank. Null: every rank on <see cref="TargetModelOptions.Device"/> for
    /// <see cref="TensorParallelTransport.InProcess"/>, rank r on <c>cuda:r</c> for <see cref="TensorParallelTransport.Nccl"/>.</summary>
    public IReadOnlyList<Device>? Devices { get; init; }

    /// <summary>With <see cref="TensorParallelTransport.InProcess"/>, how long a rank waits in a collective for the others
    /// before the group is stopped. Default two minutes.</summary>
    public TimeSpan CollectiveTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Each rank's device for a model whose options name <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException"><see cref="Devices"/> does not name one device per rank.</exception>
    internal IReadOnlyList<Device> DevicesFor(Device device)
    {
        if (Devices is { } devices)
        {
            return devices.Count == WorldSize
                ? devices
                : throw new ArgumentException($"TensorParallelOptions.Devices names {devices.Count} devices for {WorldSize} ranks: give one per rank.", nameof(Devices));
        }
        return Transport == TensorParallelTransport.Nccl
            ? Enumerable.Range(0, WorldSize).Select(r => new Device(DeviceType.CUDA, r)).ToArray()
            : Enumerable.Repeat(device, WorldSize).ToArray();
    }

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(WorldSize, 1, nameof(WorldSize));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(CollectiveTimeout, TimeSpan.Zero, nameof(CollectiveTimeout));
    }
}
