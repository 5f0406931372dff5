using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Simulated ranks: a group of <see cref="ICommunicator"/>s for ranks that run on threads of one process (one thread per
/// rank), so that the sharded arithmetic, the command stream and the failure handling run on a CPU exactly as they
/// would over NCCL. A collective is a rendezvous on a <see cref="Barrier"/>: every rank leaves its input, the last to
/// arrive combines them once (sums in rank order, so every rank gets the same bits), and each rank copies the result.
/// </summary>
/// <remarks>
/// <para>The rendezvous also checks what NCCL cannot: that every rank called the same collective with the same shape,
/// dtype and root. Ranks that disagree (a bug that would hang or corrupt NCCL) get a <see cref="TensorParallelException"/>
/// saying who called what. A rank that does not arrive within <see cref="Timeout"/> stops the group the same way.</para>
/// <para>Works for tensors on any device (the combination is made on rank 0's device), so ranks can also be simulated
/// on one GPU.</para>
/// </remarks>
internal sealed class InProcessGroup : IDisposable
{
    private readonly Barrier _barrier;
    private readonly Call[] _calls;
    private readonly Member[] _members;
    private readonly CancellationTokenSource _abort = new();
    private readonly Lock _gate = new();
    private Exception? _failure;
    private Tensor? _shared;      // the last tensor result, detached from every dispose scope; replaced by the next collective
    private long[]? _sharedValues; // the last broadcast host array
    private bool _disposed;

    /// <summary>Creates a group of <paramref name="worldSize"/> ranks; a collective that some rank does not reach within
    /// <paramref name="timeout"/> (default two minutes) stops the group.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="worldSize"/> is below 1.</exception>
    public InProcessGroup(int worldSize, TimeSpan? timeout = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        WorldSize = worldSize;
        Timeout = timeout ?? TimeSpan.FromMinutes(2);
        _calls = new Call[worldSize];
        _barrier = new Barrier(worldSize, _ => Combine());
        _members = Enumerable.Range(0, worldSize).Select(r => new Member(this, r)).ToArray();
    }

    /// <summary>Ranks.</summary>
    public int WorldSize { get; }

    /// <summary>How long a rank waits in a collective for the others.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Each rank's communicator, by rank; each must be used by one thread at a time.</summary>
    public IReadOnlyList<ICommunicator> Communicators => _members;

    /// <summary>Whether the group was stopped by a failure.</summary>
    public bool Failed => Volatile.Read(ref _failure) is not null;

    /// <summary>The group <paramref name="communicator"/> belongs to, or null when it is not an in-process rank.</summary>
    internal static InProcessGroup? Of(ICommunicator communicator) => (communicator as Member)?.Group;

    /// <summary>Test hook: called by a rank before each collective with (rank, index of the collective on that rank); true
    /// makes that rank fail there as a device error would (<see cref="ExternalException"/>).</summary>
    internal Func<int, long, bool>? FailWhen { get; set; }

    private enum Kind
    {
        AllReduceSum,
        AllGather,
        Broadcast,
        BroadcastValues,
    }

    /// <summary>One rank's side of a collective.</summary>
    private readonly record struct Call(Kind Kind, Tensor? Tensor, long[]? Values, int Root)
    {
        public string Describe() => Kind == Kind.BroadcastValues
            ? $"{Kind} from {Root}"
            : $"{Kind}{(Kind == Kind.Broadcast ? $" from {Root}" : "")} of {Tensor!.dtype} [{string.Join(", ", Tensor.shape)}]";
    }

    private void Stop(Exception cause)
    {
        lock (_gate)
        {
            _failure ??= cause;
        }
        _abort.Cancel();
    }

    private TensorParallelException Stopped() => new(
        $"The tensor-parallel group stopped: {_failure!.Message} Every rank stops with it; dispose the model and load it again.", _failure);

    /// <summary>The last rank to arrive combines everyone's inputs once; an exception here reaches every rank.</summary>
    private void Combine()
    {
        Call first = _calls[0];
        for (int r = 1; r < WorldSize; r++)
        {
            Call other = _calls[r];
            bool same = other.Kind == first.Kind && other.Root == first.Root && (first.Kind == Kind.BroadcastValues
                || (other.Tensor!.dtype == first.Tensor!.dtype && other.Tensor.shape.SequenceEqual(first.Tensor.shape)));
            if (!same)
            {
                throw new TensorParallelException($"ranks disagree on the collective: rank 0 called {first.Describe()}, rank {r} called {other.Describe()}.");
            }
        }
        _shared?.Dispose();
        _shared = null;
        if (first.Kind == Kind.BroadcastValues)
        {
            _sharedValues = _calls[first.Root].Values!.ToArray();
            return;
        }
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Device device = first.Tensor!.device;
        Tensor result = first.Kind switch
        {
            Kind.AllReduceSum => Sum(device),
            Kind.AllGather => stack(_calls.Select(c => c.Tensor!.to(device)).ToArray()),
            _ => _calls[first.Root].Tensor!.clone(),
        };
        _shared = result.DetachFromDisposeScope();
    }

    private Tensor Sum(Device device)
    {
        Tensor sum = _calls[0].Tensor!.clone();
        for (int r = 1; r < WorldSize; r++)
        {
            sum.add_(_calls[r].Tensor!.to(device), TorchScalars.One); // a held alpha: TorchSharp's add_(tensor) passes a temporary one (TorchScalars)
        }
        return sum;
    }

    /// <summary>Rank <paramref name="rank"/>'s side of a collective: leave the input, wait for every rank, then read.</summary>
    private void Rendezvous(int rank, Call call, long index)
    {
        if (_failure is not null)
        {
            throw Stopped();
        }
        if (FailWhen?.Invoke(rank, index) == true)
        {
            throw new ExternalException($"injected failure on rank {rank} at collective {index} ({call.Describe()})");
        }
        if (WorldSize == 1)
        {
            _calls[0] = call;
            Combine();
            return;
        }
        _calls[rank] = call;
        try
        {
            if (!_barrier.SignalAndWait(Timeout, _abort.Token))
            {
                Stop(new TensorParallelException($"rank {rank} waited {Timeout.TotalSeconds:F0} s at collective {index} ({call.Describe()}) for a rank that never came."));
                throw Stopped();
            }
        }
        catch (OperationCanceledException)
        {
            throw Stopped();
        }
        catch (BarrierPostPhaseException e)
        {
            Stop(e.InnerException ?? e);
            throw Stopped();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _shared?.Dispose();
        _barrier.Dispose();
        _abort.Dispose();
    }

    /// <summary>One rank's communicator.</summary>
    private sealed class Member(InProcessGroup group, int rank) : ICommunicator
    {
        private long _collectives;

        public InProcessGroup Group => group;

        public int Rank => rank;

        public int WorldSize => group.WorldSize;

        public string Name => "in-process";

        public long Collectives => _collectives;

        public void AllReduceSum(Tensor tensor)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            group.Rendezvous(rank, new Call(Kind.AllReduceSum, tensor, null, 0), _collectives++);
            tensor.copy_(group._shared!);
        }

        public Tensor AllGather(Tensor tensor)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            group.Rendezvous(rank, new Call(Kind.AllGather, tensor, null, 0), _collectives++);
            return group._shared!.to(tensor.device).clone();
        }

        public void Broadcast(Tensor tensor, int root)
        {
            ArgumentNullException.ThrowIfNull(tensor);
            CheckRoot(root);
            group.Rendezvous(rank, new Call(Kind.Broadcast, tensor, null, root), _collectives++);
            tensor.copy_(group._shared!);
        }

        public long[] Broadcast(long[]? values, int root)
        {
            CheckRoot(root);
            if (rank == root)
            {
                ArgumentNullException.ThrowIfNull(values);
            }
            group.Rendezvous(rank, new Call(Kind.BroadcastValues, null, rank == root ? values : null, root), _collectives++);
            return group._sharedValues!.ToArray();
        }

        public void Abort(Exception cause) => group.Stop(cause);

        private void CheckRoot(int root) => ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)root, (uint)group.WorldSize, nameof(root));

        public void Dispose()
        {
        }
    }
}
