using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>How a verification step accepts draft tokens.</summary>
internal enum AcceptanceRule
{
    /// <summary>The target's argmax (<see cref="TargetModel.VerifyGreedy"/>).</summary>
    Greedy,

    /// <summary>Recorded tokens in place of the target's choices, for benchmarks (<see cref="TargetModel.VerifyForced"/>).</summary>
    Forced,

    /// <summary>Multi-step speculative sampling per sequence (<see cref="TargetModel.VerifySampled(IReadOnlyList{TreeInput}, IReadOnlyList{SamplingOptions}, IReadOnlyList{Tensor?})"/>).</summary>
    Sampled,
}

/// <summary>One verification step as <see cref="TargetModel"/> hands it to a backend, checked and with its rows reserved.</summary>
/// <param name="Inputs">Each sequence's slot, root and draft tree.</param>
/// <param name="Rule">How tokens are accepted.</param>
/// <param name="Forced">With <see cref="AcceptanceRule.Forced"/>: per input, the recorded tokens after its root. With
/// <see cref="AcceptanceRule.Sampled"/> (benchmarks): the same, deciding the path after the sampling has run.</param>
/// <param name="Sampling">With <see cref="AcceptanceRule.Sampled"/>: per input, its sampling settings.</param>
/// <param name="Drafts">With <see cref="AcceptanceRule.Sampled"/>: per input, a model draft's distributions or null.</param>
internal sealed record VerifyStep(IReadOnlyList<TreeInput> Inputs, AcceptanceRule Rule, IReadOnlyList<int[]>? Forced = null,
    IReadOnlyList<SamplingOptions>? Sampling = null, IReadOnlyList<Tensor?>? Drafts = null);

/// <summary>
/// One way of running a verification step: the libtorch reference path (<see cref="ReferenceBackend"/>, every step), the
/// graphed decode-step kernels (<see cref="GraphedDecodeBackend"/>, one sequence without a draft) and the tree kernels
/// (<see cref="TreeKernelBackend"/>, one sequence with a draft). <see cref="TargetModel"/> asks its backends in order of
/// preference and runs the step on the first that takes it: the one place where the paths are chosen. Every backend
/// reads and writes the cache through <see cref="KvCache"/> (rows, tables, <see cref="KvCache.Addressing"/>), commits
/// what it accepted with <see cref="GreedyAcceptance.Commit"/>, and computes the reference path's tokens (tests hold
/// them equal).
/// </summary>
internal interface IStepBackend : IDisposable
{
    /// <summary>A short name for logs and benchmarks.</summary>
    string Name { get; }

    /// <summary>Null when this backend runs <paramref name="step"/>, else why not.</summary>
    string? Refuses(VerifyStep step);

    /// <summary>Runs the step: the forward, the acceptance, the cache commit; one host synchronisation.</summary>
    VerifiedStep[] Verify(VerifyStep step);
}

/// <summary>What the backends of one model share: its shape, weights, paged cache, rotary tables, the scripted layers
/// (null where the layers run eagerly) and, for one rank of a tensor-parallel model, the rank's collectives and output head
/// (null on one device; docs/tensor-parallel.md).</summary>
internal sealed record ModelParts(ModelConfig Config, CausalLMWeights Weights, KvCache Cache, Tensor Cos, Tensor Sin, Device Device,
    ScalarType DType, ScriptedDecoder? Scripted, TensorParallelRank? Parallel = null)
{
    /// <summary>Tokens one sequence holds at most.</summary>
    public int Capacity => Cache.Capacity;

    /// <summary>Sampled acceptance and its random streams, shared by the backends that run sampled steps.</summary>
    public SampledAcceptance Sampling { get; } = new();
}
