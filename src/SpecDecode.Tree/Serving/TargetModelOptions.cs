using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>Where and how a <see cref="TargetModel"/> runs, and how much KV cache it preallocates.</summary>
public sealed class TargetModelOptions
{
    /// <summary>The device; null picks CUDA when <see cref="TorchRuntime.EnsureLoaded"/> found a CUDA libtorch, else the CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>The weights' and activations' dtype; null picks float32 on the CPU, and on CUDA the checkpoint's
    /// float16/bfloat16 (bfloat16 for float32 checkpoints).</summary>
    public ScalarType? DType { get; init; }

    /// <summary>Sequences the model serves at once (slots 0 .. MaxBatch-1). Default 1.</summary>
    public int MaxBatch { get; init; } = 1;

    /// <summary>Tokens one sequence holds at most: prompt, generated tokens and one step's draft tree. Default 4096.</summary>
    public int MaxContext { get; init; } = 4096;

    /// <summary>
    /// Tokens of KV cache the model allocates for all sequences together, in blocks of <see cref="KvBlockSize"/>: a
    /// sequence takes blocks as it grows, so short and long sequences share the pool instead of each holding
    /// <see cref="MaxContext"/>. Null (default) allocates MaxBatch × MaxContext (every slot can reach MaxContext at once).
    /// At least <see cref="MaxContext"/>; <see cref="MemoryEstimate.KvTokensFor"/> gives what fits in a memory budget.
    /// </summary>
    public long? KvCacheTokens { get; init; }

    /// <summary>Token rows per KV block (a power of two, 16 to 1024). Default 64; see docs/kv-cache.md for the
    /// measurement behind it.</summary>
    public int KvBlockSize { get; init; } = 64;

    /// <summary>
    /// Keep finished sequences' keys and values and reuse them for later sequences that begin with the same tokens
    /// (<see cref="TargetModel.ReusePrefix"/>; the engine does this for every request): a conversation's next call then
    /// computes only its new tokens. Cached blocks no sequence uses are evicted, least recently used first, when the pool
    /// needs room. Default on.
    /// </summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>Prompt tokens per sequence per forward for prefill chunks that attend to tokens already cached (a
    /// prompt's tokens past <see cref="CausalPrefillChunk"/>, or a prefill that continues a cached sequence). Such a
    /// chunk's attention takes a materialised mask of chunk × cached keys (a few bytes per entry, times the query heads
    /// per key/value head), so this bounds the mask: a long prompt never needs a prompt × prompt mask. Default 512.
    /// Packed prefill (flash attention on CUDA) has no mask and does not use it (see <see cref="CausalPrefillChunk"/>).</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>
    /// Prompt tokens a slot whose cache is empty caches first, with plain causal attention and no mask: those tokens
    /// attend only to each other, so PyTorch can use flash attention on CUDA in float16/bfloat16, and the forward's
    /// memory grows only linearly: about 100 KB of activations per row for Llama-3.1-8B in bfloat16 (the MLP's
    /// [rows, intermediate] products), ≈ 0.8 GB at the default 8192. It also bounds each such forward's rows × width
    /// (sequences of similar lengths share one). The rest of a longer prompt goes in masked chunks of
    /// <see cref="PrefillChunk"/>. 0 turns the causal path off (every chunk masked). Default 8192.
    /// Where prefill runs on packed chunks with flash attention (a CUDA device in bfloat16 or float16; <see cref="TargetModel.StepPaths"/>
    /// says whether it does), there is no mask and no padding: each prefill forward then carries up to this many prompt
    /// tokens of all its sequences together, whether or not they continue cached tokens (<see cref="PrefillChunk"/> when
    /// this is 0).
    /// </summary>
    public int CausalPrefillChunk { get; init; } = 8192;

    /// <summary>Run the decoder layers as one TorchScript function compiled at load time (default), instead of one
    /// TorchSharp call per tensor operation; both compute the same, the script with far less host time per step.</summary>
    public bool ScriptedLayers { get; init; } = true;

    /// <summary>
    /// Let libtorch pick cuDNN's attention kernel on CUDA. Off by default: cuDNN builds an execution plan for every new
    /// key count, and a decoder's key count changes every step; on an H100 that made a Llama-3.1-8B decode step at a
    /// 5k context 65 ms instead of 19 ms (bench/RESULTS.md). With it off, libtorch uses its memory-efficient kernel. The
    /// setting is process-wide (libtorch's global context): the last model loaded decides.
    /// </summary>
    public bool CuDnnAttention { get; init; }

    /// <summary>
    /// Replay single-sequence steps as CUDA graphs, through SpecDecode's kernels where they cover the model. Null (the
    /// default): on wherever they work (a CUDA device, a CUDA libtorch with the graph exports, the scripted layers and a
    /// model without output or MLP projection biases), off elsewhere, the CPU included; true: required,
    /// <see cref="TargetModel.Load"/> throws <see cref="NotSupportedException"/> where it cannot work; false: off.
    /// With graphs, a <see cref="TargetModel.VerifyGreedy"/> call with one sequence and an empty draft runs a fixed-shape
    /// step captured once per key bucket and shared by every slot (the cached length + 1 rounded up to a multiple of 1024,
    /// at most the capacity; keys past the length are masked), and where the decode-step kernels run, a call of up to 64 sequences
    /// with 64 roots and draft nodes in all (one sequence with a draft, a batch, or any sampled call) runs the tree
    /// kernels (<see cref="TargetModel.UsesTreeKernels"/>); every wider call takes the libtorch path.
    /// <see cref="TargetModel.StepPaths"/> (and <see cref="Logger"/> at load) says which path runs what, and why. Graphs are captured lazily and kept until the model is disposed, at most
    /// <see cref="MaxCudaGraphs"/> of each kind (the least recently used goes first). For a bf16 Llama-family model (head size 64 or 128, no q/k norms, no output or MLP biases) the graphed
    /// step is SpecDecode's decode-step kernels (<see cref="DecodeKernels"/>): 5 launches per layer at about 1.15x the
    /// memory-bandwidth floor on an H100, against 2.3x for the captured libtorch step (bench/RESULTS.md).
    /// </summary>
    public bool? CudaGraphs { get; init; }

    /// <summary>
    /// With <see cref="CudaGraphs"/>, run graphed plain steps through SpecDecode's decode-step kernels, and trees and
    /// batches of up to 512 rows through its tree kernels, where the model and the GPU allow it (default on). Off keeps the
    /// captured libtorch step and the usual path for trees, e.g. to compare them.
    /// </summary>
    public bool DecodeKernels { get; init; } = true;

    /// <summary>
    /// CUDA graphs each kind of graphed step keeps (plain steps, greedy tree steps, sampled tree steps): beyond it the least
    /// recently used graph of that kind is disposed, and captured again if its shape comes back. Default 512. Graphs are
    /// kept per key bucket and step shape, and a long-running server meets many shapes; this bounds the device memory they
    /// hold, which the KV pool's sizing does not count. What one graph holds has not been measured yet (docs/target-model.md);
    /// lower it where memory is short, raise it where a workload cycles through more shapes than this (each capture costs an
    /// eager step and a capture).
    /// </summary>
    public int MaxCudaGraphs { get; init; } = CudaGraphSet<int>.DefaultCapacity;

    /// <summary>Where the model logs, at load, which path runs which steps and why (Information); null for none.</summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; init; }

    /// <summary>Key count granularity of <see cref="CudaGraphs"/>: a graphed step attends over the cached length + 1
    /// rounded up to a multiple of this (at most the capacity). Lowered by tests to cross buckets on tiny models.</summary>
    internal int CudaGraphKeyBucket { get; init; } = 1024;

    /// <summary>False runs the graphed path's fixed-shape step eagerly instead of capturing it (and allows the CPU): for
    /// tests of the bucketing and masking on machines without CUDA.</summary>
    internal bool CudaGraphCapture { get; init; } = true;

    /// <summary>Shortest cache (keys) for which the scripted layers may compute attention with matrix products (see
    /// ScriptedDecoder); lowered by tests to reach that branch on tiny models.</summary>
    internal long MatmulAttentionMinKeys { get; init; } = 8192;

    /// <summary>How prefill forwards attend (<see cref="SpecDecode.Tree.PrefillAttention"/>): flash attention over packed
    /// chunks where it runs, else masked chunks. Benchmarks and tests set it to compare the paths.</summary>
    internal PrefillAttention PrefillAttention { get; init; } = PrefillAttention.Auto;

    /// <summary>Blocks of the KV pool these options allocate (see <see cref="KvCacheTokens"/>).</summary>
    internal int KvBlocks => (int)(((KvCacheTokens ?? (long)MaxBatch * MaxContext) + KvBlockSize - 1) / KvBlockSize);

    internal void Validate()
    {
        if (MaxBatch < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatch), MaxBatch, "MaxBatch must be at least 1.");
        }
        if (MaxContext < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxContext), MaxContext, "MaxContext must be at least 2.");
        }
        if (KvBlockSize < 16 || KvBlockSize > 1024 || (KvBlockSize & (KvBlockSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(KvBlockSize), KvBlockSize, "KvBlockSize must be a power of two from 16 to 1024.");
        }
        if (KvCacheTokens is long tokens && (tokens < MaxContext || tokens > (long)int.MaxValue * KvBlockSize))
        {
            throw new ArgumentOutOfRangeException(nameof(KvCacheTokens), tokens,
                $"KvCacheTokens must hold at least one whole sequence (MaxContext = {MaxContext}); leave it null for MaxBatch × MaxContext.");
        }
        if (PrefillChunk < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(PrefillChunk), PrefillChunk, "PrefillChunk must be at least 1.");
        }
        if (CausalPrefillChunk < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(CausalPrefillChunk), CausalPrefillChunk, "CausalPrefillChunk must be at least 0 (0 turns the causal first chunk off).");
        }
        if (MaxCudaGraphs < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxCudaGraphs), MaxCudaGraphs, "MaxCudaGraphs must be at least 1 (graphs each kind of step keeps).");
        }
        if (CudaGraphKeyBucket < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(CudaGraphKeyBucket), CudaGraphKeyBucket, "CudaGraphKeyBucket must be at least 1.");
        }
        if (DType is { } d && d is not (ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16))
        {
            throw new ArgumentOutOfRangeException(nameof(DType), d, "DType must be Float32, Float16 or BFloat16.");
        }
    }
}

/// <summary>One sequence's input to a verification step.</summary>
/// <param name="Slot">The KV-cache slot of the sequence (0 .. MaxBatch-1); each slot at most once per step.</param>
/// <param name="Root">The last accepted token, not yet in the cache (after prefill: the prompt's last token; after a
/// step: that step's bonus token).</param>
/// <param name="Draft">The candidate tree hanging after <paramref name="Root"/>; may be empty.</param>
public sealed record TreeInput(int Slot, int Root, DraftTree Draft);

/// <summary>What one verification step decided for one sequence.</summary>
/// <param name="Slot">The sequence's slot.</param>
/// <param name="AcceptedNodes">The draft nodes accepted, root to leaf.</param>
/// <param name="Tokens">The emitted tokens: the accepted draft tokens, then the bonus token (never empty). The last
/// one is the next step's <see cref="TreeInput.Root"/>.</param>
public sealed record VerifiedStep(int Slot, int[] AcceptedNodes, int[] Tokens)
{
    /// <summary>Draft tokens accepted (Tokens.Length - 1).</summary>
    public int AcceptedCount => AcceptedNodes.Length;

    /// <summary>The token the target model chose after the accepted path (the last of <see cref="Tokens"/>).</summary>
    public int Bonus => Tokens[^1];
}
