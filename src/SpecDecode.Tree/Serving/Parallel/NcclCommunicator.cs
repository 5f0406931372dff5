using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// A rank's collectives through NCCL on its GPU, enqueued on libtorch's current CUDA stream of that GPU, so they are
/// ordered with the libtorch work before and after them (and a CUDA graph capturing that stream records them). Two
/// ways to form a group: <see cref="CreateGroup"/> for one process driving several GPUs from one thread per rank
/// (<c>ncclCommInitAll</c>; the benches do this), and <see cref="CreateRank"/> for one process per GPU, each started with
/// <c>CUDA_VISIBLE_DEVICES</c> naming its GPU and sharing one <see cref="NewUniqueId"/> (docs/tensor-parallel.md).
/// </summary>
/// <remarks>Not run on the machine this was written on (no GPU, no NCCL): see docs/tensor-parallel.md for what was and was
/// not run.</remarks>
internal sealed class NcclCommunicator : ICommunicator
{
    private const string CurrentStreamSymbol = "_ZN3c104cuda20getCurrentCUDAStreamEa"; // c10::cuda::getCurrentCUDAStream(DeviceIndex)
    private const string StreamHandleSymbol = "_ZNK3c104cuda10CUDAStream6streamEv";   // c10::cuda::CUDAStream::stream() const
    private const int ValuesInFirstMessage = 1024;

    private static readonly Lazy<(CurrentStreamFn? Current, StreamHandleFn? Handle)> Streams = new(() => (
        LibTorchExports.TryGetFunction<CurrentStreamFn>("libc10_cuda.so", CurrentStreamSymbol),
        LibTorchExports.TryGetFunction<StreamHandleFn>("libc10_cuda.so", StreamHandleSymbol)));

    private static readonly Lazy<(DeviceGetFn Get, PrimaryCtxRetainFn Retain, CtxSetCurrentFn SetCurrent)?> Driver = new(() =>
        NativeLibrary.TryLoad("libcuda.so.1", out IntPtr cuda)
        && NativeLibrary.TryGetExport(cuda, "cuDeviceGet", out IntPtr get)
        && NativeLibrary.TryGetExport(cuda, "cuDevicePrimaryCtxRetain", out IntPtr retain)
        && NativeLibrary.TryGetExport(cuda, "cuCtxSetCurrent", out IntPtr setCurrent)
            ? (Marshal.GetDelegateForFunctionPointer<DeviceGetFn>(get), Marshal.GetDelegateForFunctionPointer<PrimaryCtxRetainFn>(retain),
                Marshal.GetDelegateForFunctionPointer<CtxSetCurrentFn>(setCurrent))
            : null);

    private readonly Nccl _api;
    private readonly IntPtr[] _groupComms; // every communicator this process holds of the group (all of them with CreateGroup)
    private readonly IntPtr _comm;
    private readonly Device _device;
    private long _collectives;
    private int _boundThread = -1;
    private bool _disposed;

    private NcclCommunicator(Nccl api, IntPtr[] groupComms, IntPtr comm, int rank, int worldSize, Device device)
    {
        _api = api;
        _groupComms = groupComms;
        _comm = comm;
        Rank = rank;
        WorldSize = worldSize;
        _device = device;
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int WorldSize { get; }

    /// <inheritdoc />
    public string Name => $"NCCL {_api.Version}";

    /// <inheritdoc />
    public long Collectives => _collectives;

    /// <summary>A group of one communicator per GPU of <paramref name="devices"/> (rank r on devices[r]), all in this
    /// process: each rank must then be driven by its own thread.</summary>
    /// <exception cref="NcclUnavailableException">NCCL is not found, or a device is not a CUDA device of this process.</exception>
    /// <exception cref="NcclException">NCCL failed to form the group.</exception>
    public static IReadOnlyList<ICommunicator> CreateGroup(IReadOnlyList<Device> devices)
    {
        ArgumentNullException.ThrowIfNull(devices);
        ArgumentOutOfRangeException.ThrowIfZero(devices.Count);
        Nccl api = Nccl.Load();
        CheckCuda(devices);
        int[] indices = devices.Select(d => (int)d.index).ToArray();
        if (indices.Distinct().Count() != indices.Length)
        {
            throw new ArgumentException($"Each rank needs its own GPU; devices {string.Join(", ", devices)} repeat one.", nameof(devices));
        }
        var comms = new IntPtr[devices.Count];
        api.Check(api.CommInitAll(comms, devices.Count, indices), "ncclCommInitAll");
        return Enumerable.Range(0, devices.Count).Select(r => (ICommunicator)new NcclCommunicator(api, comms, comms[r], r, devices.Count, devices[r])).ToArray();
    }

    /// <summary>A new group id, made by one process and handed to every rank's process (its 128 bytes, e.g. in a file).</summary>
    /// <exception cref="NcclUnavailableException">NCCL is not found.</exception>
    public static NcclUniqueId NewUniqueId()
    {
        Nccl api = Nccl.Load();
        api.Check(api.GetUniqueId(out NcclUniqueId id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>This process's rank of a group of one process per GPU; blocks until every rank has joined. The process must
    /// see its GPU as CUDA device 0 (start it with <c>CUDA_VISIBLE_DEVICES</c> naming that GPU).</summary>
    /// <exception cref="NcclUnavailableException">NCCL is not found, or there is no CUDA device.</exception>
    /// <exception cref="NcclException">NCCL failed to join the group.</exception>
    public static ICommunicator CreateRank(int rank, int worldSize, NcclUniqueId id)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)rank, (uint)worldSize, nameof(rank));
        Nccl api = Nccl.Load();
        Device device = torch.CUDA;
        CheckCuda([device]);
        api.Check(api.CommInitRank(out IntPtr comm, worldSize, id, rank), "ncclCommInitRank");
        return new NcclCommunicator(api, [comm], comm, rank, worldSize, device);
    }

    /// <inheritdoc />
    public void AllReduceSum(Tensor tensor)
    {
        CheckTensor(tensor);
        _collectives++;
        _api.Check(_api.AllReduce(DecodeKernels.DataPointer(tensor), DecodeKernels.DataPointer(tensor), (nuint)tensor.NumberOfElements,
            Nccl.DataTypeOf(tensor.dtype), NcclRedOp.Sum, _comm, Stream()), "ncclAllReduce");
    }

    /// <inheritdoc />
    public Tensor AllGather(Tensor tensor)
    {
        CheckTensor(tensor);
        _collectives++;
        Tensor result = empty([WorldSize, .. tensor.shape], tensor.dtype, _device);
        _api.Check(_api.AllGather(DecodeKernels.DataPointer(tensor), DecodeKernels.DataPointer(result), (nuint)tensor.NumberOfElements,
            Nccl.DataTypeOf(tensor.dtype), _comm, Stream()), "ncclAllGather");
        return result;
    }

    /// <inheritdoc />
    public void Broadcast(Tensor tensor, int root)
    {
        CheckTensor(tensor);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)root, (uint)WorldSize, nameof(root));
        _collectives++;
        _api.Check(_api.Broadcast(DecodeKernels.DataPointer(tensor), DecodeKernels.DataPointer(tensor), (nuint)tensor.NumberOfElements,
            Nccl.DataTypeOf(tensor.dtype), root, _comm, Stream()), "ncclBroadcast");
    }

    /// <summary>
    /// The root's values in one device broadcast of <see cref="ValuesInFirstMessage"/> numbers (the count, then the values)
    /// and one copy back, plus a second broadcast for longer arrays.
    /// </summary>
    public long[] Broadcast(long[]? values, int root)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)root, (uint)WorldSize, nameof(root));
        if (Rank == root)
        {
            ArgumentNullException.ThrowIfNull(values);
        }
        using var scope = NewDisposeScope();
        var first = new long[ValuesInFirstMessage];
        if (Rank == root)
        {
            first[0] = values!.Length;
            values.AsSpan(0, Math.Min(values.Length, ValuesInFirstMessage - 1)).CopyTo(first.AsSpan(1));
        }
        Tensor message = tensor(first).to(_device);
        Broadcast(message, root);
        long[] head = message.cpu().data<long>().ToArray();
        int count = checked((int)head[0]);
        var result = new long[count];
        head.AsSpan(1, Math.Min(count, ValuesInFirstMessage - 1)).CopyTo(result);
        if (count > ValuesInFirstMessage - 1)
        {
            int rest = count - (ValuesInFirstMessage - 1);
            Tensor tail = Rank == root ? tensor(values!.AsSpan(ValuesInFirstMessage - 1).ToArray()).to(_device) : empty([rest], ScalarType.Int64, _device);
            Broadcast(tail, root);
            tail.cpu().data<long>().ToArray().CopyTo(result, ValuesInFirstMessage - 1);
        }
        return result;
    }

    /// <summary>Aborts every communicator of the group this process holds (<c>ncclCommAbort</c>): NCCL kernels waiting for
    /// a rank that failed end, so no rank of this process hangs. Ranks in other processes need their own watchdog.</summary>
    public void Abort(Exception cause)
    {
        lock (_groupComms)
        {
            for (int i = 0; i < _groupComms.Length; i++)
            {
                if (_groupComms[i] != IntPtr.Zero)
                {
                    _api.CommAbort(_groupComms[i]);
                    _groupComms[i] = IntPtr.Zero;
                }
            }
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
        lock (_groupComms)
        {
            int i = Array.IndexOf(_groupComms, _comm);
            if (i >= 0)
            {
                _api.CommDestroy(_comm);
                _groupComms[i] = IntPtr.Zero;
            }
        }
    }

    /// <summary>NCCL needs CUDA devices of this process.</summary>
    private static void CheckCuda(IReadOnlyList<Device> devices)
    {
        if (!torch.cuda.is_available())
        {
            throw new NcclUnavailableException(
                $"NCCL runs on CUDA devices, and libtorch reports none: the CPU build is loaded or no GPU is visible. Set {TorchRuntime.LibTorchVariable} " +
                "to a CUDA PyTorch's torch/lib folder on a GPU machine, or simulate the ranks in one process (InProcessGroup).");
        }
        long count = torch.cuda.device_count();
        foreach (Device d in devices)
        {
            if (d.type != DeviceType.CUDA || d.index < 0 || d.index >= count)
            {
                throw new NcclUnavailableException($"{d} is not one of this process's {count} CUDA devices (cuda:0 .. cuda:{count - 1}).");
            }
        }
    }

    private void CheckTensor(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tensor.device_type != DeviceType.CUDA || tensor.device_index != _device.index)
        {
            throw new ArgumentException($"Rank {Rank} communicates on {_device}; the tensor is on {tensor.device}.", nameof(tensor));
        }
        if (!tensor.is_contiguous())
        {
            throw new ArgumentException("NCCL needs a contiguous tensor.", nameof(tensor));
        }
        if (_boundThread != Environment.CurrentManagedThreadId)
        {
            BindThread();
        }
    }

    /// <summary>Makes this rank's GPU the calling thread's current device (its primary context, what cudaSetDevice makes
    /// current), once per thread: NCCL and libtorch's device guards then find it current instead of switching.</summary>
    private void BindThread()
    {
        if (Driver.Value is not { } driver)
        {
            throw new NcclUnavailableException("libcuda.so.1 (the NVIDIA driver's CUDA library) with cuDeviceGet, cuDevicePrimaryCtxRetain and cuCtxSetCurrent could not be loaded.");
        }
        IntPtr context = IntPtr.Zero;
        int result = driver.Get(out int cuDevice, (int)_device.index);
        if (result == 0)
        {
            result = driver.Retain(out context, cuDevice);
        }
        if (result == 0)
        {
            result = driver.SetCurrent(context);
        }
        if (result != 0)
        {
            throw new NcclException($"making {_device} current on rank {Rank}'s thread failed (CUresult {result}).");
        }
        _boundThread = Environment.CurrentManagedThreadId;
    }

    /// <summary>libtorch's current stream on this rank's GPU (for this thread), as a <c>cudaStream_t</c>.</summary>
    private IntPtr Stream()
    {
        (CurrentStreamFn? current, StreamHandleFn? handle) = Streams.Value;
        if (current is null || handle is null)
        {
            throw new NcclUnavailableException($"libc10_cuda.so does not export {CurrentStreamSymbol} or {StreamHandleSymbol}: NCCL cannot find libtorch's stream.");
        }
        CudaGraph.CudaStream stream = current((sbyte)_device.index);
        return handle(ref stream);
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int DeviceGetFn(out int device, int ordinal);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int PrimaryCtxRetainFn(out IntPtr context, int device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int CtxSetCurrentFn(IntPtr context);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate CudaGraph.CudaStream CurrentStreamFn(sbyte device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr StreamHandleFn(ref CudaGraph.CudaStream stream);
}
