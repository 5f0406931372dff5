using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// A Llama-family target model for speculative decoding: weights on one device in one dtype, a preallocated KV cache of
/// <see cref="TargetModelOptions.MaxBatch"/> slots, chunked prefill, and batched token-tree verification: one forward
/// for every sequence's root and draft tree (ragged prefixes, ragged trees), greedy acceptance on the device, the
/// accepted path's keys and values moved next to the prefix on the device, and one host synchronisation per step.
/// </summary>
/// <remarks>
/// A slot's cache holds a sequence's tokens except the last accepted one (the root): <see cref="Prefill"/> caches a
/// prompt without its last token, and each step caches the root plus the accepted draft tokens and returns the bonus
/// token, which is the next step's root. Not thread-safe: one step at a time.
/// </remarks>
public sealed partial class TargetModel : IDisposable
{
    private readonly CausalLMWeights _weights;
    private readonly KvCache _cache;
    private readonly Tensor _cos;
    private readonly Tensor _sin;
    private readonly int _prefillChunk;
    private readonly int _causalPrefillChunk;
    private PrefillAttention _prefill;                    // Masked, Packed or Flash: how Prefill's forwards attend
    private readonly PrefillAttention _prefillChosen;     // what the load chose (PrefillPath may switch back to Masked)
    private readonly string _prefillWhy;
    private readonly ScriptedDecoder? _scripted;
    private SpeculativeEngine? _engine;   // the engine that owns the slots and runs the model; null while none does
    private readonly ReferenceBackend _reference;
    // the fixed-shape step exists for every model (tests compare its attention variants); it serves steps with graphs on
    private readonly GraphedDecodeBackend _graphed;
    private readonly bool _graphsOn;
    private readonly string _graphsOffReason = "", _kernelsOffReason = "";
    private readonly TreeKernelBackend? _treeKernels;
    // in order of preference: a step runs on the first that takes it
    private readonly IStepBackend[] _backends;
    private volatile bool _disposed;

    private TargetModel(ModelConfig config, CausalLMWeights weights, TargetModelOptions options, Device device, ScalarType dtype,
        TensorParallelRank? parallel = null)
    {
        // tensor parallelism (docs/tensor-parallel.md): a rank's model computes the rank's shape (config) on its shards, and
        // shows the whole model's shape; it runs the reference path only, with the collectives in ModelParts.Parallel
        _parallel = parallel;
        Config = parallel?.Plan.Config ?? config;
        _weights = weights;
        Device = device;
        DType = dtype;
        _prefillChunk = options.PrefillChunk;
        _causalPrefillChunk = options.CausalPrefillChunk;
        if (device.type == DeviceType.CUDA)
        {
            AttentionBackends.Set("CuDNN", options.CuDnnAttention);
        }
        (_cos, _sin) = ReferenceBackend.RotaryTables(config, options.MaxContext + 1, device);
        _scripted = options.ScriptedLayers && parallel is null ? ScriptedDecoder.TryCreate(config, weights, options.MatmulAttentionMinKeys) : null;
        if (_scripted is not null)
        {
            ScriptedDecoder.Compile();
        }
        (_prefill, _prefillWhy) = ChoosePrefill(options.PrefillAttention, _scripted, device, dtype);
        _prefillChosen = _prefill;
        // the cache after the prefill choice, which may refuse the model: a refusal then leaves no cache behind
        _cache = new KvCache(config, options.MaxBatch, options.MaxContext, options.KvBlockSize, options.KvBlocks, options.PrefixCaching, dtype, device);
        var parts = new ModelParts(config, weights, _cache, _cos, _sin, device, dtype, _scripted, parallel);
        _reference = new ReferenceBackend(parts);
        // The graphed step: SpecDecode's kernels where they can run this model on this GPU, else the captured libtorch step.
        // The kernels' module lives in the context of the GPU that was current when it loaded: the first GPU only.
        string? graphsOff = parallel is not null ? "tensor-parallel ranks run the libtorch path (their kernels are not built)"
            : options.CudaGraphs == false ? "TargetModelOptions.CudaGraphs is false" : GraphsUnavailable(config, options, device);
        _graphsOn = parallel is null && (options.CudaGraphs == true || graphsOff is null);
        _graphsOffReason = graphsOff ?? "";
        string? kernelsOff = !options.DecodeKernels ? "TargetModelOptions.DecodeKernels is false"
            : device.index > 0 ? "the kernels load on the first GPU only"
            : SpecDecode.Tree.DecodeKernels.Unsupported(config, dtype, options.MaxContext) ?? (SpecDecode.Tree.DecodeKernels.IsAvailable ? null : SpecDecode.Tree.DecodeKernels.UnavailableReason);
        _kernelsOffReason = kernelsOff ?? "";
        bool kernels = _graphsOn && kernelsOff is null;
        _graphed = new GraphedDecodeBackend(parts, options.CudaGraphCapture, options.CudaGraphKeyBucket, kernels ? DecodeAttention.Kernels : DecodeAttention.Default,
            options.MaxCudaGraphs);
        _treeKernels = kernels && KernelTreeStep.Unsupported(config) is null ? new TreeKernelBackend(parts, _graphed, options.MaxCudaGraphs) : null;
        _backends = parallel is not null
            ? [new TensorParallelBackend(parts, _reference)]
            : [.. new IStepBackend?[] { _treeKernels, _graphsOn ? _graphed : null, _reference }.OfType<IStepBackend>()];
        if (options.Logger is { } logger)
        {
            ModelLog.StepPaths(logger, config.Architecture.ToString(), device.ToString(), dtype.ToString(), StepPaths);
        }
    }

    /// <summary>Runs a checked step on the first backend that takes it, after reserving its rows.</summary>
    private VerifiedStep[] Run(VerifyStep step)
    {
        _parallel?.Announce(RankCommand.Verify(step.Inputs)); // tensor parallelism: every rank runs the step
        ReserveRows(step.Inputs);
        foreach (IStepBackend backend in _backends)
        {
            if (backend.Refuses(step) is null)
            {
                return backend.Verify(step);
            }
        }
        throw new InvalidOperationException("No step backend took the step."); // the reference path takes every step
    }

    /// <summary>Which backend would run <paramref name="step"/>, and why each before it would not: for logs and tests.</summary>
    internal string Explain(VerifyStep step)
    {
        var refusals = new List<string>();
        foreach (IStepBackend backend in _backends)
        {
            if (backend.Refuses(step) is { } why)
            {
                refusals.Add($"not {backend.Name}: {why}");
                continue;
            }
            return refusals.Count == 0 ? backend.Name : $"{backend.Name} ({string.Join("; ", refusals)})";
        }
        return "none";
    }

    /// <summary>What the weights, the KV cache and the kernel steps' buffers take on the device (see
    /// <see cref="MemoryEstimate.MaxSequences"/> for how many sequences of a length would fit elsewhere).
    /// <see cref="MemoryEstimate.For"/> gives the same before loading, with the kernel buffers as large as any GPU needs
    /// them. For a rank of a tensor-parallel model, what that rank takes on its device.</summary>
    public MemoryEstimate Memory => RankMemory(MemoryEstimate.For(_parallel?.Shard.Config ?? Config, new TargetModelOptions
    {
        MaxBatch = MaxBatch, MaxContext = Capacity, DType = DType, KvBlockSize = _cache.BlockSize, KvCacheTokens = (long)_cache.BlockCount * _cache.BlockSize,
    }) with
    {
        KernelBufferBytes = UsesDecodeKernels ? MemoryEstimate.KernelBuffers(Config, Capacity, UsesTreeKernels, DecodeKernels.Get().Multiprocessors) : 0,
    });

    /// <summary>Whether the decoder layers run as one compiled TorchScript function (see <see cref="TargetModelOptions.ScriptedLayers"/>).</summary>
    public bool UsesScriptedLayers => _scripted is not null;

    /// <summary>The model's configuration.</summary>
    public ModelConfig Config { get; }

    /// <summary>The tokens that end generation: generation_config.json's <c>eos_token_id</c> when the checkpoint has one,
    /// else config.json's (empty when neither names one).</summary>
    public IReadOnlyList<int> EndOfSequenceTokenIds { get; private init; } = [];

    /// <summary>The device the weights and cache live on.</summary>
    public Device Device { get; }

    /// <summary>The weights' and activations' dtype.</summary>
    public ScalarType DType { get; }

    /// <summary>Sequences the cache holds (slots 0 .. MaxBatch-1).</summary>
    public int MaxBatch => _cache.Slots;

    /// <summary>Tokens each slot holds.</summary>
    public int Capacity => _cache.Capacity;

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json + model.safetensors or sharded safetensors with an index) onto
    /// the device and dtype of <paramref name="options"/>.
    /// </summary>
    /// <exception cref="ModelConfigException">config.json is missing, malformed, unsupported or holds a value no decoder
    /// has (see docs/guide.md), or an end-of-sequence id of generation_config.json is outside the vocabulary.</exception>
    /// <exception cref="SafeTensorsException">A weights file or tensor is missing or corrupt, has another shape than
    /// config.json implies (checked before anything is allocated), or holds a NaN or an infinity.</exception>
    /// <exception cref="NotSupportedException"><see cref="TargetModelOptions.CudaGraphs"/> is on without a CUDA device, a
    /// CUDA libtorch with the graph exports, or the scripted layers.</exception>
    public static TargetModel Load(string folder, TargetModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new TargetModelOptions();
        options.Validate();
        TorchRuntime.EnsureLoaded();
        ModelConfig config = ModelConfig.Load(folder);
        IReadOnlyList<int> endOfSequence = GenerationConfig.EosTokenIds(folder, config.VocabSize);
        using CheckpointWeights checkpoint = CheckpointWeights.Open(folder);
        checkpoint.CheckShapes(ParameterShapes(config)); // before config.json's shapes size any allocation
        (Device device, ScalarType dtype) = Placement(config, options);
        CheckGraphOptions(config, options, device);
        var weights = new CausalLMWeights(config, dtype, device);
        try
        {
            using (no_grad())
            {
                foreach ((string name, TorchSharp.Modules.Parameter parameter) in weights.named_parameters())
                {
                    checkpoint.CopyInto(name, parameter);
                }
            }
            return new TargetModel(config, weights, options, device, dtype) { EndOfSequenceTokenIds = endOfSequence };
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>A model of the given shape with random weights (normal, std 0.02; norms 1): for benchmarks, whose cost
    /// does not depend on the weights' values.</summary>
    internal static TargetModel CreateRandom(ModelConfig config, TargetModelOptions options, long seed) => CreateFilled(config, options, (weights, device) =>
    {
        // TorchSharp's Generator(seed, device) makes a CPU generator: the CPU draws use one of their own (no other
        // thread's draw can move it); on a GPU seed the default CUDA generators instead.
        using var generator = device.type == DeviceType.CPU ? new Generator((ulong)seed) : null;
        if (device.type == DeviceType.CUDA)
        {
            cuda.manual_seed_all(seed); // manual_seed alone left the CUDA generators unseeded: two models differed
        }
        foreach ((string name, TorchSharp.Modules.Parameter parameter) in weights.named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                parameter.fill_(TorchScalars.One); // a held Scalar (TorchScalars)
            }
            else
            {
                parameter.normal_(0, 0.02, generator);
            }
        }
    });

    /// <summary>A model of <paramref name="config"/> on the options' device whose weights <paramref name="fill"/> sets
    /// (under no_grad); the weights are disposed if that fails.</summary>
    private static TargetModel CreateFilled(ModelConfig config, TargetModelOptions options, Action<CausalLMWeights, Device> fill)
    {
        options.Validate();
        TorchRuntime.EnsureLoaded();
        (Device device, ScalarType dtype) = Placement(config, options);
        CheckGraphOptions(config, options, device);
        var weights = new CausalLMWeights(config, dtype, device);
        try
        {
            using (no_grad())
            {
                fill(weights, device);
            }
            return new TargetModel(config, weights, options, device, dtype) { EndOfSequenceTokenIds = config.EosTokenIds };
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Fills every slot's cache with random keys and values and sets its length to <paramref name="length"/>:
    /// benchmarks of long contexts, whose cost does not depend on the cached values.</summary>
    internal void FillCacheForBenchmark(int length)
    {
        if (length < 0 || length > Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"0 .. {Capacity}");
        }
        _parallel?.Announce(RankCommand.FillCache(length)); // tensor parallelism: every rank fills its cache
        _cache.FillRandomForBenchmark(length);
    }

    /// <summary>A copy of <paramref name="slot"/>'s cached keys and values [layers, 2, kv heads, cached length, head size]
    /// in float32 on the CPU: for tests that compare two ways of filling the cache.</summary>
    internal Tensor CachedKeysAndValues(int slot)
    {
        CheckSlot(slot);
        using var scope = NewDisposeScope();
        return _cache.SequenceRows(slot, 0, _cache.Length(slot)).to(float32).MoveToOuterDisposeScope();
    }

    /// <summary>The parameter names and shapes of a model of <paramref name="config"/>, built on the meta device (no
    /// memory): the Hugging Face tensor names this model loads.</summary>
    internal static IReadOnlyList<(string Name, long[] Shape)> ParameterShapes(ModelConfig config)
    {
        using var weights = new CausalLMWeights(config, ScalarType.BFloat16, META);
        return weights.named_parameters().Select(p => (p.name, p.parameter.shape)).ToArray();
    }

    /// <summary>The options' device and dtype, or the defaults: CUDA when loaded, float32 on the CPU, else the
    /// checkpoint's float16 or bfloat16.</summary>
    private static (Device Device, ScalarType DType) Placement(ModelConfig config, TargetModelOptions options)
    {
        Device device = options.Device ?? TorchRuntime.DefaultDevice;
        ScalarType dtype = options.DType
            ?? (device.type == DeviceType.CPU ? ScalarType.Float32
                : config.DType == "float16" ? ScalarType.Float16
                : ScalarType.BFloat16);
        return (device, dtype);
    }

    /// <summary>Tokens cached for <paramref name="slot"/>.</summary>
    public int CachedLength(int slot) => _cache.Length(CheckSlot(slot));

    /// <summary>Rolls <paramref name="slot"/> back to its first <paramref name="length"/> cached tokens; blocks past them
    /// return to the pool. 0 ends the sequence: with <see cref="TargetModelOptions.PrefixCaching"/> its tokens stay cached
    /// for <see cref="ReusePrefix"/> until the pool needs their blocks.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The slot is out of range or <paramref name="length"/> exceeds what is cached.</exception>
    public void Truncate(int slot, int length)
    {
        CheckSlot(slot);
        if (length < 0 || length > _cache.Length(slot))
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"Slot {slot} caches {_cache.Length(slot)} tokens; truncate to 0 .. that.");
        }
        _parallel?.Announce(RankCommand.Truncate(slot, length)); // tensor parallelism: every rank truncates
        _cache.Truncate(slot, length);
    }

    /// <summary>
    /// Starts the empty <paramref name="slot"/> from the longest prefix of <paramref name="tokens"/> whose keys and values
    /// are cached (an earlier sequence that began the same way: the same conversation's previous call, or a shared system
    /// prompt), matched by content: whole cached blocks are shared, a block matched in part is copied. Returns how many
    /// tokens are now cached (0 on a miss or with <see cref="TargetModelOptions.PrefixCaching"/> off); pass the rest to
    /// <see cref="Prefill"/>. At most <c>tokens.Length</c> are reused: give the prompt without its last token, as to
    /// Prefill.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The slot is out of range.</exception>
    /// <exception cref="InvalidOperationException">The slot is not empty.</exception>
    public int ReusePrefix(int slot, ReadOnlySpan<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckSlot(slot);
        _parallel?.Announce(RankCommand.ReusePrefix(slot, tokens)); // tensor parallelism: every rank shares the same blocks
        return _cache.ReusePrefix(slot, tokens, tokens.Length);
    }

    /// <summary>The KV pool's state: blocks, the block size, and how many blocks sequences hold, cached prefixes keep
    /// (evictable) and are free.</summary>
    public KvCacheUsage KvCache => new(_cache.BlockSize, _cache.BlockCount, _cache.Blocks.FreeBlocks, _cache.Blocks.IdleCachedBlocks,
        _cache.Blocks.RegisteredBlocks);

    /// <summary>Forgets every cached prefix no sequence uses: benchmarks that compare runs from a cold cache.</summary>
    internal void DropCachedPrefixes()
    {
        _parallel?.Announce(RankCommand.DropCachedPrefixes()); // tensor parallelism: every rank drops them
        _cache.DropCachedPrefixes();
    }

    /// <summary>The KV blocks <paramref name="slot"/> holds, in table order (tests of sharing).</summary>
    internal IReadOnlyList<int> KvBlocksOf(int slot) => _cache.BlocksOf(CheckSlot(slot));

    /// <summary>Whether <paramref name="slot"/> can grow to <paramref name="tokens"/> cached tokens now, taking blocks from the
    /// free ones or evicting cached prefixes no sequence uses; for schedulers deciding whom to admit or preempt.</summary>
    public bool CanReserve(int slot, long tokens) => _cache.CanReserve(CheckSlot(slot), tokens);

    /// <summary>Gives <paramref name="slot"/> the blocks for <paramref name="tokens"/> cached tokens now (false, with nothing
    /// taken, when the pool cannot): a scheduler reserves a step's rows before the step.</summary>
    public bool TryReserve(int slot, long tokens)
    {
        CheckSlot(slot);
        _parallel?.Announce(RankCommand.TryReserve(slot, tokens)); // tensor parallelism: every rank reserves the same blocks
        return _cache.TryReserve(slot, tokens);
    }

    /// <summary>
    /// Appends tokens to sequences' caches. A sequence whose slot is empty first caches up to
    /// <see cref="TargetModelOptions.CausalPrefillChunk"/> tokens with plain causal attention (no mask; sequences of
    /// similar lengths share a forward); the rest, and every sequence that continues cached tokens, go in chunks of
    /// <see cref="TargetModelOptions.PrefillChunk"/> with a mask over the cached keys, every such sequence in the same
    /// forwards. Pass a prompt without its last token, which is the first step's root.
    /// </summary>
    /// <exception cref="ArgumentException">A slot is out of range or repeated, or a token is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">A sequence would exceed the cache's capacity.</exception>
    public void Prefill(IReadOnlyList<(int Slot, int[] Tokens)> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        PrefillCore(sequences, null)?.Dispose();
    }

    /// <summary><see cref="Prefill"/>, and the logits [k, vocab] (on the device, not disposed) after the last token of each
    /// sequence <paramref name="logitsAfter"/> marks (null or none marked: no logits), in the sequences' order; null when it
    /// marks none. Every forward stops
    /// its last layer at the keys and values; the marked last rows alone then run that layer's attention and MLP, the norm
    /// and the head (<see cref="ReferenceBackend"/>'s LastRowLogits).</summary>
    private Tensor? PrefillCore(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<bool>? logitsAfter)
    {
        CheckInputs(sequences.Select(s => s.Slot), sequences.SelectMany(s => s.Tokens));
        foreach ((int slot, int[] tokens) in sequences)
        {
            if (_cache.Length(slot) + tokens.Length > Capacity)
            {
                throw new InvalidOperationException($"Slot {slot}: {_cache.Length(slot)} cached + {tokens.Length} tokens exceed the capacity of {Capacity}; raise TargetModelOptions.MaxContext.");
            }
        }
        _parallel?.Announce(RankCommand.Prefill(sequences, logitsAfter)); // tensor parallelism: every rank prefills its heads
        foreach ((int slot, int[] tokens) in sequences)
        {
            _cache.Reserve(slot, _cache.Length(slot) + tokens.Length);
        }
        _cache.SyncTables();
        var rows = new List<(int Sequence, Tensor Logits)>(); // per marked sequence, its logits row, as the forwards give them
        try
        {
            if (_prefill != PrefillAttention.Masked)
            {
                PrefillPacked(sequences, logitsAfter, rows);
            }
            else
            {
                PrefillMasked(sequences, logitsAfter, rows);
            }
            foreach ((int slot, int[] _) in sequences)
            {
                _cache.Register(slot); // its prompt rows never change again: other sequences may share them now
            }
            return rows.Count == 0 ? null : cat(rows.OrderBy(r => r.Sequence).Select(r => r.Logits).ToArray(), 0);
        }
        finally
        {
            foreach ((int _, Tensor row) in rows)
            {
                row.Dispose();
            }
        }
    }

    /// <summary>Runs one prefill forward's chunks (<paramref name="of"/>[j]: the sequence chunk j belongs to,
    /// <paramref name="final"/>[j]: whether it ends that sequence's tokens) and keeps the logits rows of the marked
    /// sequences whose last chunk it holds.</summary>
    private void PrefillForward(List<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, IReadOnlyList<int> of, IReadOnlyList<bool> final,
        IReadOnlyList<bool>? logitsAfter, List<(int Sequence, Tensor Logits)> rows, Func<List<(int Slot, ReadOnlyMemory<int> Tokens)>, IReadOnlyList<bool>?, Tensor?> forward)
    {
        bool[]? marks = logitsAfter is null ? null : [.. Enumerable.Range(0, chunks.Count).Select(j => final[j] && logitsAfter[of[j]])];
        using Tensor? logits = forward(chunks, marks); // null when no chunk here is marked
        if (logits is null)
        {
            return;
        }
        int row = 0;
        for (int j = 0; j < chunks.Count; j++)
        {
            if (marks![j])
            {
                rows.Add((of[j], logits.narrow(0, row++, 1).clone().DetachFromDisposeScope()));
            }
        }
    }

    /// <summary>Prefill in padded forwards: an empty slot's first <see cref="TargetModelOptions.CausalPrefillChunk"/>
    /// tokens causally, then masked chunks of <see cref="TargetModelOptions.PrefillChunk"/> for the rest.</summary>
    private void PrefillMasked(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<bool>? logitsAfter, List<(int Sequence, Tensor Logits)> rows)
    {
        var done = new int[sequences.Count]; // tokens of each sequence cached so far
        if (_causalPrefillChunk > 0)
        {
            // Empty slots: the first chunk sees only itself, so causal forwards with no mask serve them.
            var first = Enumerable.Range(0, sequences.Count)
                .Where(i => sequences[i].Tokens.Length > 0 && _cache.Length(sequences[i].Slot) == 0)
                .ToList();
            foreach (int i in first)
            {
                done[i] = Math.Min(_causalPrefillChunk, sequences[i].Tokens.Length);
            }
            foreach (List<int> group in CausalGroups(first.Select(i => done[i]).ToList(), _causalPrefillChunk))
            {
                int[] of = [.. group.Select(g => first[g])];
                PrefillForward([.. of.Select(i => (sequences[i].Slot, (ReadOnlyMemory<int>)sequences[i].Tokens.AsMemory(0, done[i])))],
                    of, [.. of.Select(i => done[i] == sequences[i].Tokens.Length)], logitsAfter, rows, (c, m) => PrefillChunks(c, causal: true, m));
            }
        }
        while (true)
        {
            var next = Enumerable.Range(0, sequences.Count).Where(i => done[i] < sequences[i].Tokens.Length).ToList();
            if (next.Count == 0)
            {
                return;
            }
            var chunks = new List<(int Slot, ReadOnlyMemory<int> Tokens)>(next.Count);
            foreach (int i in next)
            {
                int count = Math.Min(_prefillChunk, sequences[i].Tokens.Length - done[i]);
                chunks.Add((sequences[i].Slot, sequences[i].Tokens.AsMemory(done[i], count)));
                done[i] += count;
            }
            PrefillForward(chunks, next, [.. next.Select(i => done[i] == sequences[i].Tokens.Length)], logitsAfter, rows,
                (c, m) => PrefillChunks(c, causal: false, m));
        }
    }

    /// <summary>How <see cref="Prefill"/> attends now: <see cref="PrefillAttention.Masked"/>, <see cref="PrefillAttention.Packed"/>
    /// or <see cref="PrefillAttention.Flash"/>. Benchmarks switch a model between what its load chose and the masked
    /// chunks to compare them on the same weights and cache.</summary>
    /// <exception cref="ArgumentException">Neither <see cref="PrefillAttention.Masked"/> nor what the load chose.</exception>
    internal PrefillAttention PrefillPath
    {
        get => _prefill;
        set => _prefill = value == PrefillAttention.Masked || value == _prefillChosen ? value
            : throw new ArgumentException($"This model's prefill can run {_prefillChosen} or Masked, not {value}.", nameof(value));
    }

    /// <summary>Prefill in packed forwards of up to <see cref="TargetModelOptions.CausalPrefillChunk"/> tokens in all
    /// (<see cref="PackedPrefillPlan.Schedule"/>).</summary>
    private void PrefillPacked(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<bool>? logitsAfter, List<(int Sequence, Tensor Logits)> rows)
    {
        int budget = _causalPrefillChunk > 0 ? _causalPrefillChunk : _prefillChunk;
        bool flash = _prefill == PrefillAttention.Flash;
        foreach (List<(int Sequence, int Start, int Count)> forward in PackedPrefillPlan.Schedule(sequences.Select(s => s.Tokens.Length).ToList(), budget))
        {
            PrefillForward([.. forward.Select(p => (sequences[p.Sequence].Slot, (ReadOnlyMemory<int>)sequences[p.Sequence].Tokens.AsMemory(p.Start, p.Count)))],
                [.. forward.Select(p => p.Sequence)], [.. forward.Select(p => p.Start + p.Count == sequences[p.Sequence].Tokens.Length)],
                logitsAfter, rows, (c, m) => _reference.PrefillPacked(c, flash, m));
        }
    }

    /// <summary>How <see cref="Prefill"/> attends, and why: what was asked where it can run, else the masked chunks. A
    /// model that must run flash attention and cannot is refused.</summary>
    /// <exception cref="NotSupportedException"><see cref="PrefillAttention.Flash"/> was asked and cannot run.</exception>
    private static (PrefillAttention Path, string Why) ChoosePrefill(PrefillAttention asked, ScriptedDecoder? scripted, Device device, ScalarType dtype)
    {
        // SPECDECODE_PREFILL_ATTENTION=masked (or packed, flash) overrides the default, as SPECDECODE_DECODE_KERNELS does the
        // kernels: a way around a libtorch whose flash attention misbehaves past what the probe sees, without a rebuild.
        if (asked == PrefillAttention.Auto)
        {
            asked = PrefillOverride(Environment.GetEnvironmentVariable("SPECDECODE_PREFILL_ATTENTION"));
            if (asked == PrefillAttention.Masked)
            {
                return (PrefillAttention.Masked, "SPECDECODE_PREFILL_ATTENTION is masked");
            }
        }
        if (asked == PrefillAttention.Masked)
        {
            return (PrefillAttention.Masked, "TargetModelOptions.PrefillAttention is Masked");
        }
        if (scripted is null)
        {
            return (PrefillAttention.Masked, "packed prefill needs the scripted layers");
        }
        if (asked == PrefillAttention.Packed)
        {
            return (PrefillAttention.Packed, "the reference attention was asked for");
        }
        string? flashOff = device.type != DeviceType.CUDA ? "flash attention needs a CUDA device"
            : dtype is not (ScalarType.BFloat16 or ScalarType.Float16) ? $"flash attention needs bfloat16 or float16, not {dtype}"
            : scripted.ProbeFlash(device, dtype) is { } failed ? $"flash attention: {failed}"
            : null;
        if (flashOff is null)
        {
            return (PrefillAttention.Flash, "libtorch's variable-length flash attention");
        }
        return asked == PrefillAttention.Flash
            ? throw new NotSupportedException($"Prefill with flash attention cannot run here: {flashOff}. Leave TargetModelOptions.PrefillAttention at Auto and SPECDECODE_PREFILL_ATTENTION unset (or auto).")
            : (PrefillAttention.Masked, flashOff);
    }

    /// <summary>What <c>SPECDECODE_PREFILL_ATTENTION</c> asks for: <see cref="PrefillAttention.Auto"/> when unset or
    /// empty.</summary>
    /// <exception cref="ArgumentException">A value other than auto, masked, packed or flash (any case).</exception>
    internal static PrefillAttention PrefillOverride(string? value) =>
        string.IsNullOrEmpty(value) ? PrefillAttention.Auto
        : Enum.TryParse(value, ignoreCase: true, out PrefillAttention parsed) && Enum.IsDefined(parsed) && !value.Any(char.IsDigit) ? parsed
        : throw new ArgumentException($"SPECDECODE_PREFILL_ATTENTION is '{value}'; use auto, masked, packed or flash.");

    /// <summary>
    /// Splits causal first chunks of the given lengths (each at most <paramref name="maxRows"/>) into forwards, longest
    /// first: a forward pads every chunk to its longest, so it takes chunks of at least half that length (padding at most
    /// doubles the work) and at most <paramref name="maxRows"/> rows × width in all (activation memory). Returns indices
    /// into <paramref name="lengths"/>.
    /// </summary>
    internal static List<List<int>> CausalGroups(IReadOnlyList<int> lengths, int maxRows)
    {
        var order = Enumerable.Range(0, lengths.Count).OrderByDescending(i => lengths[i]).ThenBy(i => i).ToList();
        var groups = new List<List<int>>();
        foreach (int i in order)
        {
            List<int>? last = groups.Count > 0 ? groups[^1] : null;
            int width = last is null ? 0 : lengths[last[0]];
            if (last is not null && 2 * lengths[i] >= width && (long)(last.Count + 1) * width <= maxRows)
            {
                last.Add(i);
            }
            else
            {
                groups.Add([i]);
            }
        }
        return groups;
    }

    private Tensor? PrefillChunks(List<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, bool causal, IReadOnlyList<bool>? logitsAfter)
    {
        // tensor parallelism: a failed rank stops the group
        return _parallel is not null
            ? _parallel.Guard(() => _reference.PrefillChunks(chunks, causal, logitsAfter))
            : _reference.PrefillChunks(chunks, causal, logitsAfter);
    }

    /// <summary>
    /// Verifies every sequence's draft tree in one forward and accepts greedily: from the root, the child whose token is
    /// the target's argmax at its parent, as long as there is one; the argmax after the last accepted node is the bonus
    /// token. The output is exactly what plain greedy decoding produces. Each slot's cache grows by the root plus the
    /// accepted tokens. With <see cref="TargetModelOptions.CudaGraphs"/>, a call with one sequence and an empty draft
    /// replays a captured graph instead, and where the decode-step kernels run, so does a call of up to 64 sequences with
    /// 64 roots and draft nodes in all (<see cref="UsesTreeKernels"/>).
    /// </summary>
    /// <exception cref="ArgumentException">A slot is out of range or repeated, or a token is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">A sequence would exceed the cache's capacity.</exception>
    public VerifiedStep[] VerifyGreedy(IReadOnlyList<TreeInput> inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        CheckTrees(inputs);
        return Run(new VerifyStep(inputs, AcceptanceRule.Greedy));
    }

    /// <summary>
    /// Logits [B, T, vocab] (float32, on the CPU) of one verification forward, without accepting anything: the caches
    /// keep their lengths. Row t of slot b follows entry t (0 = the root). For tests and the checkpoint checker.
    /// </summary>
    internal Tensor TreeLogits(IReadOnlyList<TreeInput> inputs)
    {
        CheckTrees(inputs);
        _parallel?.Announce(RankCommand.Verify(inputs, RankCommandKind.TreeLogits)); // tensor parallelism: every rank runs the forward
        ReserveRows(inputs);
        return _parallel is null ? _reference.TreeLogits(inputs) : _parallel.Guard(() => _reference.TreeLogits(inputs));
    }

    private void CheckTrees(IReadOnlyList<TreeInput> inputs)
    {
        if (inputs.Count == 0)
        {
            throw new ArgumentException("No sequences to verify.", nameof(inputs));
        }
        foreach (TreeInput input in inputs)
        {
            ArgumentNullException.ThrowIfNull(input?.Draft, nameof(inputs));
        }
        CheckInputs(inputs.Select(i => i.Slot), inputs.SelectMany(i => i.Draft.Tokens.ToArray().Prepend(i.Root)));
    }

    /// <summary>Gives every input's sequence the blocks for its root and tree rows (they are written at length + entry)
    /// and brings the device's block tables up to date.</summary>
    /// <exception cref="InvalidOperationException">A sequence would pass the capacity.</exception>
    /// <exception cref="KvCacheExhaustedException">The pool has no block left for a sequence.</exception>
    private void ReserveRows(IReadOnlyList<TreeInput> inputs)
    {
        foreach (TreeInput input in inputs)
        {
            int length = _cache.Length(input.Slot);
            StepPlan.CheckRoom(input.Slot, length, input.Draft.Count + 1, Capacity);
            _cache.Reserve(input.Slot, length + input.Draft.Count + 1);
        }
        _cache.SyncTables();
    }

    private void CheckInputs(IEnumerable<int> slots, IEnumerable<int> tokens)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var seen = new HashSet<int>();
        foreach (int slot in slots)
        {
            CheckSlot(slot);
            if (!seen.Add(slot))
            {
                throw new ArgumentException($"Slot {slot} appears twice in one step; give each sequence its own slot.");
            }
        }
        foreach (int token in tokens)
        {
            if ((uint)token >= (uint)Config.VocabSize)
            {
                throw new ArgumentException($"Token {token} is outside the vocabulary (0 .. {Config.VocabSize - 1}); was it made by another model's tokenizer?");
            }
        }
    }

    private int CheckSlot(int slot) =>
        (uint)slot < (uint)MaxBatch ? slot
        : throw new ArgumentOutOfRangeException(nameof(slot), slot, $"Slots are 0 .. {MaxBatch - 1} (TargetModelOptions.MaxBatch).");

    /// <summary>Makes <paramref name="engine"/> the model's one engine.</summary>
    /// <exception cref="ModelInUseException">Another engine, not yet disposed, serves this model.</exception>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    internal void AttachEngine(SpeculativeEngine engine)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        SpeculativeEngine? other = Interlocked.CompareExchange(ref _engine, engine, null);
        if (other is not null && other != engine)
        {
            throw new ModelInUseException(
                "This TargetModel already serves a SpeculativeEngine that has not been disposed. An engine owns its model's KV-cache slots, " +
                "and two engines on one model would overwrite each other's caches: Dispose the first engine before creating another on this model, " +
                "or load a second TargetModel for the second engine.");
        }
    }

    /// <summary>Frees the model for another engine once <paramref name="engine"/> has stopped.</summary>
    internal void DetachEngine(SpeculativeEngine engine) => Interlocked.CompareExchange(ref _engine, null, engine);

    /// <summary>Frees the weights, the cache and the kernels' buffers. An engine still running on the model is stopped
    /// first (its step in flight ends, then its requests fail with <see cref="ObjectDisposedException"/>), so that no
    /// forward runs on freed tensors; dispose the engine before its model to end it yourself.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        Volatile.Read(ref _engine)?.Stop(new ObjectDisposedException(nameof(TargetModel),
            "The target model was disposed while the request ran; dispose the engine before its model."));
        _disposed = true;
        _parallel?.Dispose(); // tensor parallelism: the coordinator stops the other ranks first
        _treeKernels?.Dispose();
        _graphed.Dispose();
        _reference.Dispose();
        _cache.Dispose();
        _cos.Dispose();
        _sin.Dispose();
        _weights.Dispose();
    }
}
