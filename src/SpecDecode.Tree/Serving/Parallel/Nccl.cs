using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

// The NCCL C API this library calls, bound by hand to the values and layouts nccl.h documents (NCCL 2.x; a CPU test holds
// them to the documented constants). By hand because no maintained .NET binding of NCCL exists, and TorchSharp exposes
// none of libtorch's process groups.

/// <summary><c>ncclResult_t</c>.</summary>
internal enum NcclResult
{
    /// <summary><c>ncclSuccess</c>.</summary>
    Success = 0,

    /// <summary><c>ncclUnhandledCudaError</c>.</summary>
    UnhandledCudaError = 1,

    /// <summary><c>ncclSystemError</c>.</summary>
    SystemError = 2,

    /// <summary><c>ncclInternalError</c>.</summary>
    InternalError = 3,

    /// <summary><c>ncclInvalidArgument</c>.</summary>
    InvalidArgument = 4,

    /// <summary><c>ncclInvalidUsage</c>.</summary>
    InvalidUsage = 5,

    /// <summary><c>ncclRemoteError</c>.</summary>
    RemoteError = 6,

    /// <summary><c>ncclInProgress</c> (non-blocking communicators, not used here).</summary>
    InProgress = 7,
}

/// <summary><c>ncclDataType_t</c>.</summary>
internal enum NcclDataType
{
    /// <summary><c>ncclInt8</c> (= <c>ncclChar</c>).</summary>
    Int8 = 0,

    /// <summary><c>ncclUint8</c>.</summary>
    Uint8 = 1,

    /// <summary><c>ncclInt32</c> (= <c>ncclInt</c>).</summary>
    Int32 = 2,

    /// <summary><c>ncclUint32</c>.</summary>
    Uint32 = 3,

    /// <summary><c>ncclInt64</c>.</summary>
    Int64 = 4,

    /// <summary><c>ncclUint64</c>.</summary>
    Uint64 = 5,

    /// <summary><c>ncclFloat16</c> (= <c>ncclHalf</c>).</summary>
    Float16 = 6,

    /// <summary><c>ncclFloat32</c> (= <c>ncclFloat</c>).</summary>
    Float32 = 7,

    /// <summary><c>ncclFloat64</c> (= <c>ncclDouble</c>).</summary>
    Float64 = 8,

    /// <summary><c>ncclBfloat16</c> (NCCL 2.10 and later).</summary>
    BFloat16 = 9,
}

/// <summary><c>ncclRedOp_t</c>'s built-in operations.</summary>
internal enum NcclRedOp
{
    /// <summary><c>ncclSum</c>.</summary>
    Sum = 0,

    /// <summary><c>ncclProd</c>.</summary>
    Prod = 1,

    /// <summary><c>ncclMax</c>.</summary>
    Max = 2,

    /// <summary><c>ncclMin</c>.</summary>
    Min = 3,

    /// <summary><c>ncclAvg</c>.</summary>
    Avg = 4,
}

/// <summary><c>ncclUniqueId</c>: <c>struct { char internal[NCCL_UNIQUE_ID_BYTES]; }</c>, 128 bytes, passed by value to
/// <c>ncclCommInitRank</c>.</summary>
[StructLayout(LayoutKind.Sequential, Size = Nccl.UniqueIdBytes)]
internal struct NcclUniqueId
{
    private readonly byte _first;

    /// <summary>The id's bytes (to hand to other processes).</summary>
    public readonly byte[] ToArray()
    {
        NcclUniqueId copy = this;
        return MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref copy, 1)).ToArray();
    }
}

/// <summary>NCCL's library and functions, loaded once (<see cref="Load()"/>).</summary>
internal sealed class Nccl
{
    /// <summary><c>NCCL_UNIQUE_ID_BYTES</c>.</summary>
    public const int UniqueIdBytes = 128;

    /// <summary>The library's soname.</summary>
    public const string SoName = "libnccl.so.2";

    private static readonly Lazy<(Nccl? Api, string Reason)> Default = new(() => TryLoad(DefaultCandidates()));

    private readonly GetErrorStringFn _errorString;

    private Nccl(string path, IntPtr library)
    {
        Path = path;
        GetVersion = Get<GetVersionFn>(library, "ncclGetVersion");
        GetUniqueId = Get<GetUniqueIdFn>(library, "ncclGetUniqueId");
        CommInitRank = Get<CommInitRankFn>(library, "ncclCommInitRank");
        CommInitAll = Get<CommInitAllFn>(library, "ncclCommInitAll");
        CommDestroy = Get<CommFn>(library, "ncclCommDestroy");
        CommAbort = Get<CommFn>(library, "ncclCommAbort");
        AllReduce = Get<AllReduceFn>(library, "ncclAllReduce");
        AllGather = Get<AllGatherFn>(library, "ncclAllGather");
        Broadcast = Get<BroadcastFn>(library, "ncclBroadcast");
        _errorString = Get<GetErrorStringFn>(library, "ncclGetErrorString");
        Check(GetVersion(out int code), "ncclGetVersion");
        // NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch since 2.9 (major * 1000 + minor * 100 + patch before).
        Version = code >= 10000 ? $"{code / 10000}.{code / 100 % 100}.{code % 100}" : $"{code / 1000}.{code / 100 % 10}.{code % 100}";
    }

    /// <summary>The file the library was loaded from (or its soname, when the loader found it).</summary>
    public string Path { get; }

    /// <summary>The library's version, e.g. "2.21.5".</summary>
    public string Version { get; }

    /// <summary><c>ncclResult_t ncclGetVersion(int* version)</c>.</summary>
    public GetVersionFn GetVersion { get; }

    /// <summary><c>ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId)</c>.</summary>
    public GetUniqueIdFn GetUniqueId { get; }

    /// <summary><c>ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank)</c>.</summary>
    public CommInitRankFn CommInitRank { get; }

    /// <summary><c>ncclResult_t ncclCommInitAll(ncclComm_t* comms, int ndev, const int* devlist)</c>.</summary>
    public CommInitAllFn CommInitAll { get; }

    /// <summary><c>ncclResult_t ncclCommDestroy(ncclComm_t comm)</c>.</summary>
    public CommFn CommDestroy { get; }

    /// <summary><c>ncclResult_t ncclCommAbort(ncclComm_t comm)</c>.</summary>
    public CommFn CommAbort { get; }

    /// <summary><c>ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
    /// ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream)</c>.</summary>
    public AllReduceFn AllReduce { get; }

    /// <summary><c>ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
    /// ncclComm_t comm, cudaStream_t stream)</c>.</summary>
    public AllGatherFn AllGather { get; }

    /// <summary><c>ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
    /// int root, ncclComm_t comm, cudaStream_t stream)</c>.</summary>
    public BroadcastFn Broadcast { get; }

    /// <summary>Where NCCL is looked for: first by soname, which finds the copy a CUDA libtorch has already loaded (pip's
    /// libtorch_cuda needs it; one NCCL per process) or one on the loader's path; then beside the libtorch
    /// <c>SPECDECODE_LIBTORCH</c> names, and in pip's layouts two folders up from <c>torch/lib</c>
    /// (<c>site-packages/nvidia/nccl/lib</c>, and <c>nvidia/cu13/lib</c> of the CUDA 13 wheels).</summary>
    public static IReadOnlyList<string> DefaultCandidates() => Candidates(Environment.GetEnvironmentVariable(TorchRuntime.LibTorchVariable));

    /// <summary>The candidates for a libtorch folder (null: the soname only).</summary>
    public static IReadOnlyList<string> Candidates(string? libtorchFolder)
    {
        if (string.IsNullOrEmpty(libtorchFolder))
        {
            return [SoName];
        }
        string sitePackages = System.IO.Path.GetFullPath(System.IO.Path.Combine(libtorchFolder, "..", ".."));
        return
        [
            SoName,
            System.IO.Path.Combine(libtorchFolder, SoName),
            System.IO.Path.Combine(sitePackages, "nvidia", "nccl", "lib", SoName),
            System.IO.Path.Combine(sitePackages, "nvidia", "cu13", "lib", SoName),
        ];
    }

    /// <summary>The library found among <see cref="DefaultCandidates"/>, loaded once.</summary>
    /// <exception cref="NcclUnavailableException">No candidate loads, or the library lacks a function.</exception>
    public static Nccl Load() => Default.Value.Api ?? throw new NcclUnavailableException(Default.Value.Reason);

    /// <summary>Tries <paramref name="candidates"/> in order (paths, or a soname for the loader's search).</summary>
    internal static (Nccl? Api, string Reason) TryLoad(IReadOnlyList<string> candidates)
    {
        var tried = new List<string>();
        foreach (string candidate in candidates)
        {
            bool isPath = candidate.Contains('/', StringComparison.Ordinal);
            if (isPath && !File.Exists(candidate))
            {
                tried.Add($"{candidate} (no such file)");
                continue;
            }
            if (!NativeLibrary.TryLoad(candidate, out IntPtr library))
            {
                tried.Add(isPath ? $"{candidate} (does not load)" : $"{candidate} (not on the loader's path)");
                continue;
            }
            try
            {
                return (new Nccl(candidate, library), "");
            }
            catch (NcclException e)
            {
                return (null, $"{candidate} loaded but is not a usable NCCL 2: {e.Message}");
            }
        }
        return (null, $"NCCL not found: tried {string.Join(", ", tried)}. Tensor parallelism over GPUs needs NCCL 2 (libnccl.so.2): set " +
            $"{TorchRuntime.LibTorchVariable} to the torch/lib folder of a CUDA PyTorch that brings it (pip's nvidia-nccl package), or install it " +
            "on the loader's path (Debian/Ubuntu: libnccl2). Simulated ranks (InProcessGroup) need no NCCL.");
    }

    /// <summary>The NCCL type of a tensor dtype.</summary>
    /// <exception cref="ArgumentException">NCCL has no such type.</exception>
    public static NcclDataType DataTypeOf(ScalarType dtype) => dtype switch
    {
        ScalarType.Int8 => NcclDataType.Int8,
        ScalarType.Byte => NcclDataType.Uint8,
        ScalarType.Int32 => NcclDataType.Int32,
        ScalarType.Int64 => NcclDataType.Int64,
        ScalarType.Float16 => NcclDataType.Float16,
        ScalarType.Float32 => NcclDataType.Float32,
        ScalarType.Float64 => NcclDataType.Float64,
        ScalarType.BFloat16 => NcclDataType.BFloat16,
        _ => throw new ArgumentException($"NCCL has no type for {dtype}.", nameof(dtype)),
    };

    /// <summary>Throws <see cref="NcclException"/> unless <paramref name="result"/> is success.</summary>
    public void Check(NcclResult result, string call)
    {
        if (result != NcclResult.Success)
        {
            IntPtr text = _errorString(result);
            throw new NcclException($"{call} failed: {result} ({(text == IntPtr.Zero ? "no description" : Marshal.PtrToStringAnsi(text))}).");
        }
    }

    private static T Get<T>(IntPtr library, string name) where T : Delegate =>
        NativeLibrary.TryGetExport(library, name, out IntPtr f)
            ? Marshal.GetDelegateForFunctionPointer<T>(f)
            : throw new NcclException($"the library does not export {name}");

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult GetVersionFn(out int version);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult GetUniqueIdFn(out NcclUniqueId id);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult CommInitRankFn(out IntPtr comm, int ranks, NcclUniqueId id, int rank);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult CommInitAllFn([Out] IntPtr[] comms, int devices, int[] deviceList);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult CommFn(IntPtr comm);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult AllReduceFn(IntPtr send, IntPtr receive, nuint count, NcclDataType type, NcclRedOp op, IntPtr comm, IntPtr stream);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult AllGatherFn(IntPtr send, IntPtr receive, nuint sendCount, NcclDataType type, IntPtr comm, IntPtr stream);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate NcclResult BroadcastFn(IntPtr send, IntPtr receive, nuint count, NcclDataType type, int root, IntPtr comm, IntPtr stream);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr GetErrorStringFn(NcclResult result);
}

/// <summary>NCCL cannot be used in this process: the library is missing or unusable, or there is no CUDA. The message says
/// where it was looked for and what to install or set.</summary>
internal sealed class NcclUnavailableException(string message) : TensorParallelException(message);

/// <summary>An NCCL call failed; the message names the call and NCCL's description.</summary>
internal sealed class NcclException(string message) : TensorParallelException(message);
