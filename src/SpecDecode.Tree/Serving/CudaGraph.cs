using System.Runtime;
using System.Runtime.InteropServices;
using TorchSharp;

namespace SpecDecode.Tree;

/// <summary>
/// A captured CUDA graph: the kernels that some TorchSharp work launches, recorded once and replayed with one launch.
/// TorchSharp has no CUDA graph API; libtorch has one (<c>at::cuda::CUDAGraph</c>, what Python's
/// <c>torch.cuda.CUDAGraph</c> wraps), reached here through its exported C++ functions (see <see cref="LibTorchExports"/>).
/// </summary>
/// <remarks>
/// <para>Replay re-runs the recorded kernels on the current stream with the same device addresses: the work must read
/// its inputs from tensors that outlive the graph (the caller <c>copy_</c>s new values into them before
/// <see cref="Replay"/>) and leave its outputs in tensors the caller keeps (or <c>copy_</c> them into static ones), and it
/// must not synchronise with the host, copy from pageable host memory, or change shapes. Tensors the work allocates come
/// from the graph's private memory pool, held until the graph is disposed.</para>
/// <para>ABI assumptions (x86-64 System V, checked against PyTorch 2.11's exports; docs/target-model.md lists them):
/// the CUDAGraph object fits in <see cref="ObjectBytes"/>; <c>capture_begin(std::pair&lt;u64, u64&gt; pool,
/// cudaStreamCaptureMode)</c> takes the pair in two integer registers; <c>c10::cuda::CUDAStream</c> is 16 trivially
/// copyable bytes {int8 device type, int8 device index, int64 stream id}, returned in RAX:RDX. A C++ exception thrown by
/// these functions cannot cross into .NET and aborts the process, so the preconditions libtorch checks (a non-default
/// capture stream, a graph captured before replay) are checked here first.</para>
/// </remarks>
internal sealed class CudaGraph : IDisposable
{
    /// <summary>Eager runs before capturing libtorch work: its allocator, cuBLAS handles and lazy initialisations settle
    /// over the first runs (PyTorch's advice for torch.cuda.graphs).</summary>
    public const int LibTorchWarmup = 3;

    /// <summary><c>SPECDECODE_GRAPH_CAPTURE=legacy</c>: every capture as before the fifth session of 2026-12-07 (at a key's
    /// first use, three warm-up runs, a full garbage collection first), for A/B runs on the device.</summary>
    internal static readonly bool Legacy = string.Equals(Environment.GetEnvironmentVariable("SPECDECODE_GRAPH_CAPTURE"), "legacy", StringComparison.OrdinalIgnoreCase);

    /// <summary>Native bytes allocated for the C++ object (its real size is a few hundred bytes).</summary>
    public const int ObjectBytes = 4096;

    private const string GraphLibrary = "libtorch_cuda.so";
    private const string StreamLibrary = "libc10_cuda.so";
    private const sbyte CudaDeviceType = 1; // c10::DeviceType::CUDA
    private const sbyte CurrentDevice = -1;
    private const int CaptureModeThreadLocal = 1; // cudaStreamCaptureModeThreadLocal

    /// <summary>The mangled names this class calls, in the order <see cref="Api"/> resolves them.</summary>
    internal static readonly string[] Symbols =
    [
        "_ZN2at4cuda9CUDAGraphC1Eb",
        "_ZN2at4cuda9CUDAGraphD1Ev",
        "_ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode",
        "_ZN2at4cuda9CUDAGraph11capture_endEv",
        "_ZN2at4cuda9CUDAGraph6replayEv",
        "_ZN3c104cuda17getStreamFromPoolEba",
        "_ZN3c104cuda20getCurrentCUDAStreamEa",
        "_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE",
    ];

    private static readonly Lazy<(Api? Api, string Reason)> Resolved = new(Resolve);

    private readonly Api _api;
    private IntPtr _object;

    private CudaGraph(Api api, IntPtr nativeObject)
    {
        _api = api;
        _object = nativeObject;
    }

    /// <summary>True when a CUDA libtorch with the CUDA graph exports is loaded and a GPU is visible.</summary>
    public static bool IsAvailable => Resolved.Value.Api is not null;

    /// <summary>Why <see cref="IsAvailable"/> is false (empty when it is true).</summary>
    public static string UnavailableReason => Resolved.Value.Reason;

    /// <summary>
    /// Captures the kernels <paramref name="work"/> launches: on a stream from libtorch's pool, runs it
    /// <paramref name="warmup"/> times (its allocations and lazy initialisations happen then), synchronises, runs it once
    /// more under capture (nothing executes), and restores the caller's current stream. The outputs of that last run are
    /// the tensors a replay writes.
    /// </summary>
    /// <remarks>No finalizer may free a tensor (an allocator call from another thread) while the stream captures. The
    /// capture runs in a no-GC region (no collection can queue finalizers) after the finalizers already queued have run;
    /// only where the region cannot start does a full collection come first (as every capture did before: with the
    /// region's own collection that was two full collections a capture).</remarks>
    public static CudaGraph Capture(Action work, int warmup = LibTorchWarmup)
    {
        ArgumentNullException.ThrowIfNull(work);
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        Api api = Resolved.Value.Api ?? throw new CudaGraphUnavailableException(Resolved.Value.Reason);

        torch.cuda.synchronize();
        CudaStream previous = api.GetCurrentStream(CurrentDevice);
        CudaStream side = api.GetStreamFromPool(0, CurrentDevice);
        if (side.DeviceType != CudaDeviceType || side.Id == 0 || side.Id == previous.Id)
        {
            // capture_begin would throw a C++ exception (process abort) on the default stream.
            throw new CudaGraphCaptureException($"libtorch's stream pool returned {side}, not a non-default CUDA stream distinct from the current {previous}.", null);
        }

        IntPtr native = Marshal.AllocHGlobal(ObjectBytes);
        for (int offset = 0; offset < ObjectBytes; offset += sizeof(long))
        {
            Marshal.WriteInt64(native, offset, 0);
        }
        api.Construct(native, 0); // keep_graph = false: capture_end instantiates and drops the cudaGraph_t
        var graph = new CudaGraph(api, native);
        bool capturing = false;
        bool noGc = false;
        api.SetCurrentStream(side);
        try
        {
            for (int i = 0; i < warmup; i++)
            {
                work();
            }
            torch.cuda.synchronize();
            if (Legacy)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            noGc = TryStartNoGcRegion();
            if (!noGc && !Legacy)
            {
                GC.Collect();
            }
            GC.WaitForPendingFinalizers(); // also those queued by the region's own collection
            api.CaptureBegin(native, 0, 0, CaptureModeThreadLocal); // pool {0, 0}: a private pool
            capturing = true;
            work();
            capturing = false;
            api.CaptureEnd(native);
        }
        catch (Exception e) when (capturing)
        {
            // The stream is still capturing and the graph half built: calling capture_end or the destructor could throw
            // in C++ (an abort), so the native object is left as it is (4 KB leaked) and the caller is told.
            graph._object = IntPtr.Zero;
            throw new CudaGraphCaptureException("the work failed during CUDA graph capture (a host synchronisation, a pageable copy or a " +
                "shape-dependent host decision inside it?); the CUDA context may be unusable, restart the process.", e);
        }
        catch
        {
            graph.Dispose();
            throw;
        }
        finally
        {
            if (noGc && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion)
            {
                GC.EndNoGCRegion();
            }
            api.SetCurrentStream(previous);
        }
        torch.cuda.synchronize();
        return graph;
    }

    /// <summary>libtorch's current CUDA stream on the current device (the capturing stream inside <see cref="Capture"/>);
    /// for kernels launched outside libtorch (<see cref="DecodeKernels"/>). Throws when CUDA graphs are unavailable.</summary>
    internal static CudaStream CurrentStream()
    {
        Api api = Resolved.Value.Api ?? throw new CudaGraphUnavailableException(Resolved.Value.Reason);
        return api.GetCurrentStream(CurrentDevice);
    }

    /// <summary>Re-runs the captured kernels on the current stream (asynchronously: no host synchronisation).</summary>
    /// <exception cref="ObjectDisposedException">The graph was disposed.</exception>
    public void Replay()
    {
        ObjectDisposedException.ThrowIf(_object == IntPtr.Zero, this);
        _api.Replay(_object);
    }

    /// <summary>Waits for the device, destroys the graph (its private memory pool goes back to the allocator) and frees
    /// the native object.</summary>
    public void Dispose()
    {
        if (_object == IntPtr.Zero)
        {
            return;
        }
        torch.cuda.synchronize();
        _api.Destruct(_object);
        Marshal.FreeHGlobal(_object);
        _object = IntPtr.Zero;
    }

    private static bool TryStartNoGcRegion()
    {
        try
        {
            return GC.TryStartNoGCRegion(16L << 20);
        }
        catch (InvalidOperationException)
        {
            return false; // already in one
        }
    }

    private static (Api? Api, string Reason) Resolve()
    {
        string version;
        try
        {
            version = TorchRuntime.EnsureLoaded();
        }
        catch (InvalidOperationException e)
        {
            return (null, "libtorch could not be loaded: " + e.Message);
        }
        if (!torch.cuda.is_available())
        {
            return (null, $"CUDA graphs need CUDA, and libtorch {version} reports none: the CPU build (TorchSharp-cpu) is loaded or no GPU is " +
                $"visible. Set {TorchRuntime.LibTorchVariable} to a CUDA PyTorch's torch/lib folder on a GPU machine.");
        }
        var addresses = new IntPtr[Symbols.Length];
        for (int i = 0; i < Symbols.Length; i++)
        {
            string library = Symbols[i].StartsWith("_ZN3c10", StringComparison.Ordinal) ? StreamLibrary : GraphLibrary;
            if (!LibTorchExports.TryResolve(library, Symbols[i], out addresses[i]))
            {
                return (null, $"{library} of libtorch {version} does not export {Symbols[i]}: its CUDA graph or stream API differs from " +
                    "the PyTorch 2.11 signatures this class calls (docs/target-model.md, CUDA graphs).");
            }
        }
        return (new Api(addresses), "");
    }

    /// <summary><c>c10::cuda::CUDAStream</c> by value: {int8 device type, int8 device index, padding, int64 stream id}.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 16)]
    internal readonly struct CudaStream
    {
        [FieldOffset(0)] public readonly sbyte DeviceType;
        [FieldOffset(1)] public readonly sbyte DeviceIndex;
        [FieldOffset(8)] public readonly long Id;

        public override string ToString() => $"stream {Id} (device type {DeviceType}, index {DeviceIndex})";
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void ConstructFn(IntPtr self, byte keepGraph);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void MethodFn(IntPtr self);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void CaptureBeginFn(IntPtr self, ulong poolFirst, ulong poolSecond, int mode);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate CudaStream StreamFromPoolFn(byte highPriority, sbyte device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate CudaStream CurrentStreamFn(sbyte device);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void SetStreamFn(CudaStream stream);

    /// <summary>The resolved functions (indices as in <see cref="Symbols"/>).</summary>
    private sealed class Api(IntPtr[] a)
    {
        public readonly ConstructFn Construct = Marshal.GetDelegateForFunctionPointer<ConstructFn>(a[0]);
        public readonly MethodFn Destruct = Marshal.GetDelegateForFunctionPointer<MethodFn>(a[1]);
        public readonly CaptureBeginFn CaptureBegin = Marshal.GetDelegateForFunctionPointer<CaptureBeginFn>(a[2]);
        public readonly MethodFn CaptureEnd = Marshal.GetDelegateForFunctionPointer<MethodFn>(a[3]);
        public readonly MethodFn Replay = Marshal.GetDelegateForFunctionPointer<MethodFn>(a[4]);
        public readonly StreamFromPoolFn GetStreamFromPool = Marshal.GetDelegateForFunctionPointer<StreamFromPoolFn>(a[5]);
        public readonly CurrentStreamFn GetCurrentStream = Marshal.GetDelegateForFunctionPointer<CurrentStreamFn>(a[6]);
        public readonly SetStreamFn SetCurrentStream = Marshal.GetDelegateForFunctionPointer<SetStreamFn>(a[7]);
    }
}

/// <summary>CUDA graphs cannot be used in this process: no CUDA libtorch, no GPU, or a libtorch without the expected
/// exports. The message says which.</summary>
internal sealed class CudaGraphUnavailableException(string message) : NotSupportedException(message);

/// <summary>Capturing a CUDA graph failed; the inner exception is the work's own failure, if any.</summary>
internal sealed class CudaGraphCaptureException(string message, Exception? inner) : InvalidOperationException(message, inner);

/// <summary>
/// The graphs of one kind of step, by key (shape, bucket, slot), captured when first needed and disposed together: the
/// one place that decides when a key is captured and that frees every graph it holds.
/// </summary>
/// <remarks>With <c>captureAtSecondUse</c> (the kernel steps, which allocate nothing and whose only lazy work is loading
/// their functions) a key's first use runs eagerly; its second use captures, without warm-up runs (the eager run was
/// one). A shape met once is then never captured, and the step that meets a new key bucket (often a continued call's
/// first token) pays one eager step instead of a capture. The total for a key used again is what a capture at first use
/// with one warm-up costs: one eager run, the capture, the replays. Otherwise (libtorch work, or
/// <see cref="CudaGraph.Legacy"/>) the first use captures after <see cref="CudaGraph.LibTorchWarmup"/> warm-up runs. Before
/// the fifth session of 2026-12-07 every capture was that: on the H100 a continued call's first token took 146-237 ms
/// against 89-93 ms for the next such call, and an EngineBench run at batch 1 made 50-60 captures.</remarks>
internal sealed class CudaGraphSet<TKey> : IDisposable where TKey : notnull
{
    /// <summary>Graphs one set keeps by default (<see cref="TargetModelOptions.MaxCudaGraphs"/>).</summary>
    public const int DefaultCapacity = 512;

    // most recently used first; a key's node holds its graph (null: the key runs eagerly, capture off)
    private readonly LinkedList<(TKey Key, IDisposable? Graph)> _order = new();
    private readonly Dictionary<TKey, LinkedListNode<(TKey Key, IDisposable? Graph)>> _graphs = [];
    private readonly HashSet<TKey> _ranEagerly = [];
    private readonly int _capacity;
    private readonly Func<Action, int, IDisposable> _capture;
    private readonly Action<IDisposable> _replay;

    /// <summary>A set that keeps at most <paramref name="capacity"/> graphs, captured by <see cref="CudaGraph.Capture"/>.</summary>
    public CudaGraphSet(int capacity = DefaultCapacity)
        : this(capacity, (work, warmup) => CudaGraph.Capture(work, warmup), graph => ((CudaGraph)graph).Replay())
    {
    }

    /// <summary>For tests: <paramref name="capture"/> and <paramref name="replay"/> stand in for CUDA's.</summary>
    internal CudaGraphSet(int capacity, Func<Action, int, IDisposable> capture, Action<IDisposable> replay)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _capacity = capacity;
        _capture = capture;
        _replay = replay;
    }

    /// <summary>Keys kept now: captured graphs, and without capture the keys run eagerly (not those run once before
    /// their capture). At most the capacity.</summary>
    public int Count => _graphs.Count;

    /// <summary>Keys added since the set was made (captures, or without capture the keys first run eagerly), evicted ones
    /// included: what a benchmark counts as captures in a run.</summary>
    public long Added { get; private set; }

    /// <summary>Graphs disposed to keep the set within its capacity, least recently used first.</summary>
    public long Evicted { get; private set; }

    /// <summary>Runs <paramref name="work"/> through the graph kept under <paramref name="key"/>: captured when
    /// <paramref name="capture"/> is on (at the key's first use, or its second with <paramref name="captureAtSecondUse"/>),
    /// replayed after; without capture the work runs eagerly every time (and null is kept). A new graph beyond the
    /// capacity first disposes the least recently used one.</summary>
    public void Run(TKey key, bool capture, Action work, bool captureAtSecondUse)
    {
        if (_graphs.TryGetValue(key, out LinkedListNode<(TKey Key, IDisposable? Graph)>? node))
        {
            _order.Remove(node);
            _order.AddFirst(node);
        }
        else
        {
            bool deferred = capture && captureAtSecondUse && !CudaGraph.Legacy;
            if (deferred && _ranEagerly.Add(key))
            {
                if (_ranEagerly.Count > 4 * _capacity)
                {
                    // shapes met once are only remembered to capture at their second use: forgetting them costs one more
                    // eager run for a shape that comes back, and keeps the set bounded
                    _ranEagerly.Clear();
                    _ranEagerly.Add(key);
                }
                work();
                return;
            }
            IDisposable? graph = capture ? _capture(work, deferred ? 0 : CudaGraph.LibTorchWarmup) : null;
            _ranEagerly.Remove(key);
            if (_graphs.Count >= _capacity && _order.Last is { } oldest)
            {
                _order.RemoveLast();
                _graphs.Remove(oldest.Value.Key);
                oldest.Value.Graph?.Dispose();
                Evicted++;
            }
            node = _order.AddFirst((key, graph));
            _graphs.Add(key, node);
            Added++;
        }
        if (node.Value.Graph is { } kept)
        {
            _replay(kept);
        }
        else
        {
            work();
        }
    }

    /// <summary>Disposes every graph (their memory pools go back to the allocator) and forgets every key.</summary>
    public void Dispose()
    {
        foreach ((TKey _, IDisposable? graph) in _order)
        {
            graph?.Dispose();
        }
        _order.Clear();
        _graphs.Clear();
        _ranEagerly.Clear();
    }
}
