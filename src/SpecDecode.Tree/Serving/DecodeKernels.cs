using System.Reflection;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The decode-step kernels of <c>Kernels/decode_step.cu</c> (a fatbin built by <c>Kernels/build.sh</c> and embedded in this
/// assembly), loaded into libtorch's CUDA context through the driver API (<c>libcuda.so.1</c>) and launched on libtorch's
/// current stream, so that a CUDA graph captured by <see cref="CudaGraph"/> records them like libtorch's own kernels.
/// <see cref="SpecDecodeKernelsVariable"/> names another fatbin to load instead (for kernel development).
/// </summary>
/// <remarks>Why by hand: TorchSharp cannot load or launch a custom kernel, and libtorch's C++ extension machinery needs a
/// compiler where the application runs. The driver API is the one always beside a CUDA libtorch (it ships with the
/// driver); the stream comes from libtorch's exported <c>c10::cuda::CUDAStream::stream()</c>.</remarks>
internal static class DecodeKernels
{
    /// <summary>A fatbin path that replaces the embedded one.</summary>
    public const string SpecDecodeKernelsVariable = "SPECDECODE_DECODE_KERNELS";

    public const string ResourceName = "SpecDecode.Tree.Kernels.decode_step.fatbin";

    /// <summary>Set to 0 to launch the kernels without programmatic dependent launch (to measure what it gains).</summary>
    public const string DependentLaunchVariable = "SPECDECODE_KERNELS_PDL";

    public const int NormThreads = 512;
    public const int AttentionThreads = 512;

    /// <summary>Keys per attention block (ATTN_CHUNK).</summary>
    public const int AttentionChunk = 128;

    public const int MaxGroups = 8;

    /// <summary>Attention blocks per key/value head at most (MAX_SPLITS): caches up to this many × <see cref="AttentionChunk"/> keys.</summary>
    public const int MaxSplits = 1024;

    /// <summary>The most dynamic shared memory a matrix-vector block stages its input vector in (inputs up to half this
    /// many elements).</summary>
    public const int MaxStagedBytes = 96 << 10;

    /// <summary>The kernels the module must hold (decode_step.cu's extern "C" entry points).</summary>
    internal static readonly string[] KernelNames =
    [
        "embed_norm", "gemv_rows", "gemv_rows_wide", "gemv_qkv_rotary", "gemv_gate_up", "gemv_head_argmax", "attention_decode_64", "attention_decode_128",
        "tree_norm", "tree_finish_rows", "tree_finish_qkv", "tree_finish_gate_up", "tree_attention_64", "tree_attention_128", "tree_attention_merge_64", "tree_attention_merge_128", "tree_accept",
        .. TreeProducts.SelectMany(p => new[] { 8, 16, 32, 64 }.Select(rows => p + "_" + rows)),
    ];

    /// <summary>The tree step's products (tree_step.cuh), one entry point per padded row count.</summary>
    private static string[] TreeProducts => ["tree_rows", "tree_qkv", "tree_gate_up", "tree_head_argmax"];

    private const string Driver = "libcuda.so.1";
    private const string StreamSymbol = "_ZNK3c104cuda10CUDAStream6streamEv";

    private static readonly Lazy<(Module? Module, string Reason)> Loaded = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    public static bool IsAvailable => Loaded.Value.Module is not null;

    /// <summary>Why <see cref="IsAvailable"/> is false ("" when it is true).</summary>
    public static string UnavailableReason => Loaded.Value.Reason;

    internal static Module Get() => Loaded.Value.Module ?? throw new NotSupportedException("Decode-step kernels: " + Loaded.Value.Reason);

    /// <summary>Why a model cannot run through the kernels, or null when it can.</summary>
    public static string? Unsupported(ModelConfig c, ScalarType dtype, int capacity)
    {
        if ((capacity + AttentionChunk) / AttentionChunk > MaxSplits)
        {
            return $"their attention covers at most {MaxSplits * AttentionChunk - 1} cached tokens and the cache holds {capacity}";
        }
        if (dtype != ScalarType.BFloat16)
        {
            return $"they compute in bfloat16 and the model is {dtype}";
        }
        if (c.QkNorm || c.OutputBias || c.MlpBias)
        {
            return "the model has q/k norms or output or MLP biases, which they do not implement";
        }
        if (c.HeadDim is not (64 or 128))
        {
            return $"they are built for head sizes 64 and 128, and the model's is {c.HeadDim}";
        }
        if (c.HiddenSize % 16 != 0 || c.IntermediateSize % 16 != 0)
        {
            return "they need the hidden size and the MLP size to be multiples of 16";
        }
        if (2L * Math.Max(c.IntermediateSize, Math.Max(c.HiddenSize, c.HeadCount * c.HeadDim)) > MaxStagedBytes)
        {
            return $"they stage each input vector in {MaxStagedBytes >> 10} KB of shared memory, and the MLP is larger";
        }
        if (c.HeadCount % c.KeyValueHeadCount != 0 || c.HeadCount / c.KeyValueHeadCount > MaxGroups)
        {
            return $"they take at most {MaxGroups} query heads per key/value head";
        }
        return null;
    }

    /// <summary>
    /// Why the embedded fatbin must not run with this build's host code, or null: build.sh records the SHA-256 of the
    /// kernel sources it compiled (decode_step.cu.sha256), and this build embeds the sources its launch code was written
    /// for. A source changed without a rebuilt fatbin (which needs nvcc on a CUDA machine) would launch kernels whose
    /// arguments and cache addressing differ from the host's: they stay off instead, and the plain steps take the
    /// captured libtorch step.
    /// </summary>
    internal static string? StaleReason()
    {
        var assembly = typeof(DecodeKernels).Assembly;
        string Read(string name)
        {
            using Stream? stream = assembly.GetManifestResourceStream("SpecDecode.Tree.Kernels." + name);
            if (stream is null)
            {
                return "";
            }
            using var reader = new StreamReader(stream);
            return reader.ReadToEnd();
        }
        Dictionary<string, string> recorded = Read("decode_step.cu.sha256").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ', 2, StringSplitOptions.TrimEntries))
            .Where(f => f.Length == 2)
            .ToDictionary(f => f[1], f => f[0]);
        foreach (string file in SourceFiles)
        {
            using Stream? stream = assembly.GetManifestResourceStream("SpecDecode.Tree.Kernels." + file);
            string actual = stream is null ? "" : Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
            if (recorded.GetValueOrDefault(file) != actual)
            {
                return $"the embedded fatbin was built from another {file} than this build's (run src/SpecDecode.Tree/Kernels/build.sh on a " +
                    "machine with nvcc and commit decode_step.fatbin with decode_step.cu.sha256)";
            }
        }
        return null;
    }

    /// <summary>The kernel sources build.sh compiles into the fatbin.</summary>
    internal static readonly string[] SourceFiles = ["decode_step.cu", "tree_step.cuh"];

    /// <summary>The fatbin's bytes: the file <see cref="SpecDecodeKernelsVariable"/> names, else the embedded resource; null
    /// when neither is there.</summary>
    internal static byte[]? Image(out string source)
    {
        string? path = Environment.GetEnvironmentVariable(SpecDecodeKernelsVariable);
        if (!string.IsNullOrEmpty(path))
        {
            source = path;
            return File.ReadAllBytes(path);
        }
        source = "embedded " + ResourceName;
        using Stream? stream = typeof(DecodeKernels).Assembly.GetManifestResourceStream(ResourceName);
        if (stream is null)
        {
            return null;
        }
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private static (Module?, string) Load()
    {
        try
        {
            TorchRuntime.EnsureLoaded();
        }
        catch (InvalidOperationException e)
        {
            return (null, "libtorch could not be loaded: " + e.Message);
        }
        if (!torch.cuda.is_available())
        {
            return (null, "they need CUDA, and libtorch reports none (the CPU build is loaded or no GPU is visible)");
        }
        if (!CudaGraph.IsAvailable)
        {
            return (null, CudaGraph.UnavailableReason);
        }
        byte[]? image;
        string source;
        try
        {
            image = Image(out source);
        }
        catch (IOException e)
        {
            return (null, $"{SpecDecodeKernelsVariable} names a file that cannot be read: {e.Message}");
        }
        if (image is null)
        {
            return (null, $"this build of SpecDecode.Tree has no {ResourceName} (run src/SpecDecode.Tree/Kernels/build.sh on a machine with nvcc)");
        }
        // (a fatbin named by SPECDECODE_DECODE_KERNELS is the developer's own build, taken as it is)
        if (source.StartsWith("embedded ", StringComparison.Ordinal) && StaleReason() is { } stale)
        {
            return (null, stale);
        }
        if (!NativeLibrary.TryLoad(Driver, out IntPtr driver))
        {
            return (null, $"{Driver} (the NVIDIA driver's CUDA library) could not be loaded");
        }
        if (!LibTorchExports.TryResolve("libc10_cuda.so", StreamSymbol, out IntPtr streamFn))
        {
            return (null, $"libc10_cuda.so does not export {StreamSymbol} (c10::cuda::CUDAStream::stream)");
        }
        try
        {
            var api = new DriverApi(driver);
            // libtorch has made its primary context current on this thread by now (cuda.is_available ran a runtime call);
            // make sure, then load the module into it.
            using (var scope = NewDisposeScope())
            {
                _ = zeros(1, device: torch.CUDA);
            }
            Check(api, api.CtxGetCurrent(out IntPtr context), "cuCtxGetCurrent");
            if (context == IntPtr.Zero)
            {
                return (null, "no CUDA context is current on this thread after libtorch used the GPU");
            }
            GCHandle pinned = GCHandle.Alloc(image, GCHandleType.Pinned);
            IntPtr module;
            try
            {
                int loadResult = api.ModuleLoadData(out module, pinned.AddrOfPinnedObject());
                if (loadResult != 0)
                {
                    return (null, $"the driver refused the kernel image from {source} ({api.ErrorName(loadResult)}): built for another GPU " +
                        "architecture or CUDA version? Kernels/build.sh targets sm_80 and sm_90 with PTX for later ones");
                }
            }
            finally
            {
                pinned.Free();
            }
            Check(api, api.CtxGetDevice(out int device), "cuCtxGetDevice");
            Check(api, api.DeviceGetAttribute(out int sms, 16 /* CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT */, device), "cuDeviceGetAttribute");
            Check(api, api.DeviceGetAttribute(out int major, 75 /* CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR */, device), "cuDeviceGetAttribute");
            // Programmatic dependent launch: sm_90 and later, a driver with cuLaunchKernelEx, and not switched off.
            bool dependentLaunch = major >= 9 && api.LaunchKernelEx is not null && Environment.GetEnvironmentVariable(DependentLaunchVariable) != "0";
            return (new Module(api, module, Marshal.GetDelegateForFunctionPointer<StreamFn>(streamFn), sms, source, dependentLaunch), "");
        }
        catch (DecodeKernelException e)
        {
            return (null, e.Message);
        }
    }

    private static void Check(DriverApi api, int result, string call)
    {
        if (result != 0)
        {
            throw new DecodeKernelException($"{call} failed: {api.ErrorName(result)}");
        }
    }

    /// <summary>The data pointer of a tensor (device memory for a CUDA tensor), through LibTorchSharp's export.</summary>
    internal static IntPtr DataPointer(Tensor t) => THSTensor_data(t.Handle);

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr tensor);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr StreamFn(ref CudaGraph.CudaStream stream);

    /// <summary>The loaded module and its functions.</summary>
    internal sealed class Module
    {
        private readonly DriverApi _api;
        private readonly StreamFn _stream;
        private readonly Dictionary<string, IntPtr> _functions = new(StringComparer.Ordinal);

        internal Module(DriverApi api, IntPtr module, Delegate stream, int multiprocessors, string source, bool dependentLaunch)
        {
            _api = api;
            DependentLaunch = dependentLaunch;
            _stream = (StreamFn)stream;
            Multiprocessors = multiprocessors;
            Source = source;
            foreach (string name in KernelNames)
            {
                Check(api, api.ModuleGetFunction(out IntPtr f, module, name), "cuModuleGetFunction(" + name + ")");
                // these stage x (and the tree products their weights) in dynamic shared memory: allow more than 48 KB
                int shared = name.StartsWith("gemv_rows", StringComparison.Ordinal) || name == "gemv_head_argmax" ? MaxStagedBytes
                    : TreeProducts.Any(p => name.StartsWith(p + "_", StringComparison.Ordinal)) ? KernelTreeStep.SharedBytes(KernelTreeStep.MaxRows)
                    : name is "tree_attention_64" or "tree_attention_128" ? KernelTreeStep.AttentionSharedBytes(128)
                    : 0;
                if (shared > 0)
                {
                    Check(api, api.FuncSetAttribute(f, 8 /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */, shared), "cuFuncSetAttribute(" + name + ")");
                }
                _functions[name] = f;
            }
        }

        public int Multiprocessors { get; }

        /// <summary>Free bytes of the current device as the driver counts them (<c>cuMemGetInfo</c>: libtorch's cached blocks
        /// and captured graphs both count as used), after the device finished its work; null where the driver lacks the
        /// call. For benchmarks' memory lines.</summary>
        public long? FreeDeviceMemory()
        {
            torch.cuda.synchronize();
            return _api.MemGetInfo is { } info && info(out nuint free, out _) == 0 ? (long)free : null;
        }

        /// <summary>Whether launches let each kernel start while the previous one finishes (programmatic dependent launch,
        /// sm_90 and later): the next kernel streams its first weights during the previous one's tail.</summary>
        public bool DependentLaunch { get; }

        /// <summary>Where the kernel image came from.</summary>
        public string Source { get; }

        /// <summary>Launches <paramref name="name"/> on libtorch's current stream with its arguments at <paramref name="arguments"/>
        /// (an array of pointers to each argument's value, as cuLaunchKernel takes them).</summary>
        public void Launch(string name, int gridX, int gridY, int block, IntPtr arguments, int sharedBytes = 0, int gridZ = 1)
        {
            CudaGraph.CudaStream current = CudaGraph.CurrentStream();
            IntPtr stream = _stream(ref current);
            int result = DependentLaunch
                ? LaunchDependent(_functions[name], gridX, gridY, gridZ, block, sharedBytes, stream, arguments)
                : _api.LaunchKernel(_functions[name], (uint)gridX, (uint)gridY, (uint)gridZ, (uint)block, 1, 1, (uint)sharedBytes, stream, arguments, IntPtr.Zero);
            if (result != 0)
            {
                throw new DecodeKernelException($"cuLaunchKernel({name}, grid {gridX}×{gridY}×{gridZ}, block {block}) failed: {_api.ErrorName(result)}");
            }
        }

        /// <summary>cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: a CUlaunchConfig (56 bytes:
        /// grid, block, shared bytes, stream at 32, attributes at 40, their count at 48) and one CUlaunchAttribute (72
        /// bytes: id, padding, a 64-byte value whose first int allows the overlap).</summary>
        private int LaunchDependent(IntPtr function, int gridX, int gridY, int gridZ, int block, int sharedBytes, IntPtr stream, IntPtr arguments)
        {
            IntPtr config = Marshal.AllocHGlobal(56 + 72);
            try
            {
                for (int offset = 0; offset < 56 + 72; offset += 8)
                {
                    Marshal.WriteInt64(config, offset, 0);
                }
                IntPtr attribute = config + 56;
                Marshal.WriteInt32(config, 0, gridX);
                Marshal.WriteInt32(config, 4, gridY);
                Marshal.WriteInt32(config, 8, gridZ);
                Marshal.WriteInt32(config, 12, block);
                Marshal.WriteInt32(config, 16, 1);
                Marshal.WriteInt32(config, 20, 1);
                Marshal.WriteInt32(config, 24, sharedBytes);
                Marshal.WriteIntPtr(config, 32, stream);
                Marshal.WriteIntPtr(config, 40, attribute);
                Marshal.WriteInt32(config, 48, 1);
                Marshal.WriteInt32(attribute, 0, 6); // CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
                Marshal.WriteInt32(attribute, 8, 1);
                return _api.LaunchKernelEx!(config, function, arguments, IntPtr.Zero);
            }
            finally
            {
                Marshal.FreeHGlobal(config);
            }
        }

        /// <summary>Launches a kernel whose one argument is the struct <paramref name="parameters"/>.</summary>
        public void Launch<T>(string name, int gridX, int gridY, int block, T parameters, int sharedBytes = 0, int gridZ = 1) where T : struct
        {
            int size = Marshal.SizeOf<T>();
            IntPtr value = Marshal.AllocHGlobal(size);
            IntPtr pointers = Marshal.AllocHGlobal(IntPtr.Size);
            try
            {
                Marshal.StructureToPtr(parameters, value, false);
                Marshal.WriteIntPtr(pointers, value);
                Launch(name, gridX, gridY, block, pointers, sharedBytes, gridZ);
            }
            finally
            {
                Marshal.FreeHGlobal(pointers);
                Marshal.FreeHGlobal(value);
            }
        }
    }

    /// <summary>The few driver API functions used, resolved from libcuda.so.1.</summary>
    internal sealed class DriverApi(IntPtr library)
    {
        private readonly GetErrorNameFn _errorName = Get<GetErrorNameFn>(library, "cuGetErrorName");
        public readonly CtxGetCurrentFn CtxGetCurrent = Get<CtxGetCurrentFn>(library, "cuCtxGetCurrent");
        public readonly ModuleLoadDataFn ModuleLoadData = Get<ModuleLoadDataFn>(library, "cuModuleLoadData");
        public readonly ModuleGetFunctionFn ModuleGetFunction = Get<ModuleGetFunctionFn>(library, "cuModuleGetFunction");
        public readonly DeviceGetAttributeFn DeviceGetAttribute = Get<DeviceGetAttributeFn>(library, "cuDeviceGetAttribute");
        public readonly LaunchKernelFn LaunchKernel = Get<LaunchKernelFn>(library, "cuLaunchKernel");
        public readonly CtxGetDeviceFn CtxGetDevice = Get<CtxGetDeviceFn>(library, "cuCtxGetDevice");
        public readonly FuncSetAttributeFn FuncSetAttribute = Get<FuncSetAttributeFn>(library, "cuFuncSetAttribute");

        /// <summary>Null where the driver does not export it.</summary>
        public readonly MemGetInfoFn? MemGetInfo =
            NativeLibrary.TryGetExport(library, "cuMemGetInfo_v2", out IntPtr memInfo) ? Marshal.GetDelegateForFunctionPointer<MemGetInfoFn>(memInfo) : null;

        /// <summary>Null on drivers before CUDA 12.</summary>
        public readonly LaunchKernelExFn? LaunchKernelEx =
            NativeLibrary.TryGetExport(library, "cuLaunchKernelEx", out IntPtr ex) ? Marshal.GetDelegateForFunctionPointer<LaunchKernelExFn>(ex) : null;

        public string ErrorName(int result) =>
            _errorName(result, out IntPtr name) == 0 && name != IntPtr.Zero ? $"{Marshal.PtrToStringAnsi(name)} ({result})" : $"CUresult {result}";

        private static T Get<T>(IntPtr library, string name) where T : Delegate =>
            NativeLibrary.TryGetExport(library, name, out IntPtr f)
                ? Marshal.GetDelegateForFunctionPointer<T>(f)
                : throw new DecodeKernelException($"{Driver} does not export {name}");

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int GetErrorNameFn(int result, out IntPtr name);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int MemGetInfoFn(out nuint free, out nuint total);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int CtxGetCurrentFn(out IntPtr context);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int ModuleLoadDataFn(out IntPtr module, IntPtr image);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int ModuleGetFunctionFn(out IntPtr function, IntPtr module, [MarshalAs(UnmanagedType.LPStr)] string name);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int DeviceGetAttributeFn(out int value, int attribute, int device);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int CtxGetDeviceFn(out int device);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int FuncSetAttributeFn(IntPtr function, int attribute, int value);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int LaunchKernelExFn(IntPtr config, IntPtr function, IntPtr parameters, IntPtr extra);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int LaunchKernelFn(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
            uint sharedBytes, IntPtr stream, IntPtr parameters, IntPtr extra);
    }
}

/// <summary>The arguments of the matrix-vector kernels: <c>struct GemvParams</c> of decode_step.cu, field for field
/// (the layout is checked by a test).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GemvParams
{
    public IntPtr X;
    public int K;
    public int Items;
    public IntPtr W0, W1, W2;
    public IntPtr B0, B1, B2;
    public IntPtr Y;
    public IntPtr Residual;
    public IntPtr NormWeight;
    public IntPtr Normed;
    public float Eps;
    public IntPtr Counter;
    public IntPtr State;
    public IntPtr Cos;
    public IntPtr Sin;
    public IntPtr KCache;
    public IntPtr VCache;
    public long HeadStride;
    public long RowStride;
    public IntPtr BlockTable;
    public int BlockShift;
    public int Heads;
    public int KvHeads;
    public int HeadDim;
    public IntPtr Argmax;
}

/// <summary><c>struct AttentionParams</c> of decode_step.cu, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AttentionParams
{
    public IntPtr Q;
    public IntPtr KCache;
    public IntPtr VCache;
    public long HeadStride;
    public long RowStride;
    public IntPtr BlockTable;
    public int BlockShift;
    public IntPtr State;
    public IntPtr PartialO;
    public IntPtr PartialMl;
    public IntPtr Counters;
    public IntPtr Out;
    public int Heads;
    public int KvHeads;
    public int HeadDim;
    public float Scale;
}

/// <summary><c>struct TreeGemmParams</c> of tree_step.cuh, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TreeGemmParams
{
    public IntPtr X;
    public int K;
    public int N;
    public int Rows;
    public int KSplit;
    public IntPtr W0, W1, W2;
    public IntPtr Work;
    public IntPtr Y;
    public int Heads;
    public int KvHeads;
    public int HeadDim;
    public IntPtr Argmax;
    public int Stages;
}

/// <summary><c>struct TreeFinishParams</c> of tree_step.cuh, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TreeFinishParams
{
    public IntPtr Work;
    public int Splits;
    public int N;
    public int Rows;
    public IntPtr Y;
    public IntPtr Norm;
    public IntPtr Normed;
    public float Eps;
    public IntPtr B0, B1, B2;
    public IntPtr State;
    public IntPtr Cos;
    public IntPtr Sin;
    public IntPtr KCache;
    public IntPtr VCache;
    public long HeadStride;
    public long RowStride;
    public IntPtr Tables;
    public int BlockShift;
    public int TableStride;
    public int Heads;
    public int KvHeads;
    public int HeadDim;
}

/// <summary><c>struct TreeNormParams</c> of tree_step.cuh, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TreeNormParams
{
    public IntPtr State;
    public int Rows;
    public IntPtr Embed;
    public IntPtr Norm;
    public float Eps;
    public int K;
    public IntPtr Hidden;
    public IntPtr Normed;
    public IntPtr Argmax;
}

/// <summary><c>struct TreeAttentionParams</c> of tree_step.cuh, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TreeAttentionParams
{
    public IntPtr Q;
    public IntPtr KCache;
    public IntPtr VCache;
    public long HeadStride;
    public long RowStride;
    public IntPtr Tables;
    public int BlockShift;
    public int TableStride;
    public IntPtr State;
    public IntPtr PartialO;
    public IntPtr PartialMl;
    public IntPtr Out;
    public int Rows;
    public int Heads;
    public int KvHeads;
    public int Chunk;
    public int Chunks;
    public int SeqGroups;
    public float Scale;
}

/// <summary><c>struct TreeAcceptParams</c> of tree_step.cuh, field for field.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct TreeAcceptParams
{
    public IntPtr State;
    public int Rows;
    public IntPtr Argmax;
    public IntPtr Cache;
    public long LayerStride;
    public long KvStride;
    public long RowStride;
    public long HeadStride;
    public IntPtr Tables;
    public int BlockShift;
    public int TableStride;
    public int HeadDim;
    public int Layers;
    public IntPtr Result;
}

/// <summary>A decode-step kernel could not be loaded or launched.</summary>
internal sealed class DecodeKernelException(string message) : InvalidOperationException(message);
