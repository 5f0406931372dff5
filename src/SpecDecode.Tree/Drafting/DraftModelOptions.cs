using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Where a <see cref="DraftModelDrafter"/>'s model runs, how many requests it serves, and the shape of the trees it
/// grows. Validated when the drafter is created.
/// </summary>
/// <remarks>
/// <para>The tree defaults (<see cref="TopK"/> 4, <see cref="Beam"/> 8, <see cref="MaxDepth"/> 6) follow EAGLE-2's
/// dynamic draft trees (Li et al., 2024, "EAGLE-2: Faster Inference of Language Models with Dynamic Draft Trees"), scaled
/// to a separate draft model: 6 forwards of the draft per step, 4 + 16 + 4 × 32 = 148 candidate nodes at most, from which
/// the budget's best are kept. A small draft puts most of its probability on its first few tokens, so more children per
/// node mostly add candidates the selection drops, while the beam decides how many branches reach the deeper levels.</para>
/// </remarks>
public sealed class DraftModelOptions
{
    /// <summary>The largest <see cref="TopK"/>, <see cref="Beam"/> and <see cref="MaxDepth"/> accepted.</summary>
    public const int MaxTreeSetting = 64;

    /// <summary>Requests drafted for at once: the draft model's KV-cache slots. Default 8.</summary>
    public int MaxRequests { get; init; } = 8;

    /// <summary>Tokens each slot holds: the context plus one step's draft region (<see cref="Beam"/> ×
    /// (<see cref="MaxDepth"/> − 1) tree nodes). Near the end of it, trees get shallower, and a request whose context no
    /// longer fits gets empty drafts. Default 4096.</summary>
    public int MaxContext { get; init; } = 4096;

    /// <summary>The device; null picks as <see cref="TargetModelOptions.Device"/> does (CUDA when loaded, else the CPU).</summary>
    public Device? Device { get; init; }

    /// <summary>The dtype; null picks as <see cref="TargetModelOptions.DType"/> does.</summary>
    public ScalarType? DType { get; init; }

    /// <summary>Context tokens per sequence per forward when cached context is continued, or past the first 8192 tokens of
    /// an empty slot: those are cached in causal chunks, as <see cref="TargetModelOptions.CausalPrefillChunk"/>'s default
    /// does for the target. Default 512.</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>Run the draft model's layers as one TorchScript function (see <see cref="TargetModelOptions.ScriptedLayers"/>). Default true.</summary>
    public bool ScriptedLayers { get; init; } = true;

    /// <summary>Children per expanded node of a greedy request's tree: the draft's most probable next tokens.
    /// 1 .. <see cref="MaxTreeSetting"/>; default 4.</summary>
    public int TopK { get; init; } = 4;

    /// <summary>Frontier nodes expanded per depth of a greedy request's tree: those with the highest cumulative draft
    /// probability. 1 .. <see cref="MaxTreeSetting"/>; default 8. <c>TopK = Beam = 1</c> drafts a greedy chain.</summary>
    public int Beam { get; init; } = 8;

    /// <summary>Deepest draft: one draft forward per depth. Sampled requests draft chains of at most this many tokens.
    /// 1 .. <see cref="MaxTreeSetting"/>; default 6.</summary>
    public int MaxDepth { get; init; } = 6;

    /// <summary>
    /// Keep the draft's own greedy path (the most probable child at each depth, from the root) in every greedy tree,
    /// in the beam and in the final selection, even where other branches have a higher cumulative probability (e.g.
    /// 0.4 × 0.3 &lt; 0.35 × 0.9). Under greedy verification a draft that imitates the target is accepted along exactly
    /// this path, and the cumulative-probability ranking alone can cut it short. Default true.
    /// </summary>
    public bool KeepGreedyPath { get; init; } = true;

    /// <summary>Checks every setting.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of its range (the message names it).</exception>
    internal void Validate()
    {
        if (MaxRequests < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRequests), MaxRequests, "MaxRequests must be at least 1 (one KV-cache slot per request).");
        }
        if (MaxContext < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxContext), MaxContext, "MaxContext must be at least 2.");
        }
        if (PrefillChunk < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(PrefillChunk), PrefillChunk, "PrefillChunk must be at least 1.");
        }
        if (TopK is < 1 or > MaxTreeSetting)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, $"TopK must lie in 1 .. {MaxTreeSetting}.");
        }
        if (Beam is < 1 or > MaxTreeSetting)
        {
            throw new ArgumentOutOfRangeException(nameof(Beam), Beam, $"Beam must lie in 1 .. {MaxTreeSetting}.");
        }
        if (MaxDepth is < 1 or > MaxTreeSetting)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxDepth), MaxDepth, $"MaxDepth must lie in 1 .. {MaxTreeSetting}.");
        }
        if (DType is { } d && d is not (ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16))
        {
            throw new ArgumentOutOfRangeException(nameof(DType), d, "DType must be Float32, Float16 or BFloat16.");
        }
    }

    /// <summary>The model options these settings imply.</summary>
    internal TargetModelOptions ToModelOptions() => new()
    {
        Device = Device,
        DType = DType,
        MaxBatch = MaxRequests,
        MaxContext = MaxContext,
        PrefillChunk = PrefillChunk,
        ScriptedLayers = ScriptedLayers,
    };

    /// <summary>
    /// The most nodes a greedy tree can have: <see cref="TopK"/> candidates at depth 1, then per depth
    /// min(<see cref="Beam"/>, candidates of the depth above) × TopK, down to <see cref="MaxDepth"/>.
    /// </summary>
    internal int CandidateBound()
    {
        long total = 0, candidates = TopK;
        for (int depth = 1; depth <= MaxDepth; depth++)
        {
            total += candidates;
            candidates = Math.Min(Beam, candidates) * TopK;
        }
        return (int)Math.Min(total, int.MaxValue);
    }
}
