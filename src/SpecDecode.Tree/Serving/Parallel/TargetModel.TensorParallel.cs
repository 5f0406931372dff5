using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

public sealed partial class TargetModel
{
    // Null on one device; the rank's context when this model is one rank of a tensor-parallel model.
    private readonly TensorParallelRank? _parallel;

    /// <summary>The tensor-parallel context of this model (null on one device).</summary>
    internal TensorParallelRank? TensorParallel => _parallel;

    /// <summary>On the coordinator of a tensor-parallel model, the other ranks' models once they have replayed every call
    /// so far (tests read their state between calls); empty otherwise.</summary>
    internal IReadOnlyList<TargetModel> OtherRanks => _parallel is { Workers: { } workers } p ? workers.Models(p.Announced) : [];

    /// <summary>
    /// Loads a Hugging Face checkpoint folder split over <see cref="TensorParallelOptions.WorldSize"/> ranks in the
    /// Megatron layout (<see cref="TensorParallelPlan"/>): each rank reads only its shards of the weights and caches only
    /// its key/value heads. Returns the coordinator (rank 0): use it as any model (the engine, prefill, verification);
    /// every call is replayed on the other ranks, whose threads this model owns and stops when it is disposed. Runs the
    /// libtorch reference path with eager layers (no scripted layers, CUDA graphs or kernels yet; docs/tensor-parallel.md).
    /// </summary>
    /// <exception cref="ModelConfigException">config.json is missing, malformed or unsupported.</exception>
    /// <exception cref="SafeTensorsException">A weights file or tensor is missing, corrupt or of the wrong shape.</exception>
    /// <exception cref="TensorParallelException">The model cannot be split over that many ranks, NCCL is not available, or a
    /// rank failed to load.</exception>
    /// <exception cref="NotSupportedException"><see cref="TargetModelOptions.CudaGraphs"/> is on.</exception>
    internal static TargetModel LoadTensorParallel(string folder, TensorParallelOptions parallel, TargetModelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(parallel);
        TorchRuntime.EnsureLoaded();
        ModelConfig config = ModelConfig.Load(folder);
        return StartRanks(config, parallel, options ?? new TargetModelOptions(), () => new CheckpointShardSource(folder), GenerationConfig.EosTokenIds(folder));
    }

    /// <summary>A tensor-parallel model of the given shape with random weights (<see cref="RandomShardSource"/>): the
    /// same whole weights as <see cref="CreateRandomWhole"/> of the same seed, split. For benchmarks.</summary>
    internal static TargetModel CreateRandomTensorParallel(ModelConfig config, TensorParallelOptions parallel, TargetModelOptions options, long seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(parallel);
        return StartRanks(config, parallel, options, () => new RandomShardSource(seed), config.EosTokenIds);
    }

    /// <summary>A one-device model with the weights <see cref="CreateRandomTensorParallel"/> splits for the same seed: the
    /// reference its logits and tokens are compared with.</summary>
    internal static TargetModel CreateRandomWhole(ModelConfig config, TargetModelOptions options, long seed) => CreateFilled(config, options, (weights, _) =>
    {
        using var source = new RandomShardSource(seed);
        foreach ((string name, Parameter parameter) in weights.named_parameters())
        {
            source.Fill(new WeightShard(name, parameter.shape, ShardSplit.Whole, 0, parameter.shape[0]), parameter);
        }
    });

    /// <summary>The host bookkeeping of the KV cache, as text: every slot's length and block table and the pool's counts.
    /// Equal on every rank of a tensor-parallel model when the ranks agree.</summary>
    internal string KvBookkeeping() =>
        string.Join(";", Enumerable.Range(0, MaxBatch).Select(s => $"{_cache.Length(s)}:{string.Join(",", _cache.BlocksOf(s))}"))
        + $"|free {_cache.Blocks.FreeBlocks}, idle cached {_cache.Blocks.IdleCachedBlocks}, registered {_cache.Blocks.RegisteredBlocks}";

    /// <summary>A rank's memory: the estimate of its shape (its key/value heads' cache) with the weights it really holds
    /// (its head shard, which the rank's shape leaves out); the estimate unchanged on one device.</summary>
    private MemoryEstimate RankMemory(MemoryEstimate estimate) =>
        _parallel is null ? estimate : estimate with { WeightBytes = _parallel.Shard.WeightBytes(DType == ScalarType.Float32 ? 4 : 2) };

    /// <summary>Throws for what a rank of a tensor-parallel model cannot do.</summary>
    /// <exception cref="NotSupportedException">This model is tensor-parallel.</exception>
    private void RefuseTensorParallel(string what)
    {
        if (_parallel is not null)
        {
            throw new NotSupportedException($"A tensor-parallel model cannot {what}; load a one-device model for it.");
        }
    }

    /// <summary>Forms the group (communicators), starts a thread per rank other than 0 that builds its rank and replays
    /// the coordinator's calls, builds rank 0 here, and returns it once every rank is ready.</summary>
    private static TargetModel StartRanks(ModelConfig config, TensorParallelOptions parallel, TargetModelOptions options, Func<IShardSource> sources,
        IReadOnlyList<int> endOfSequence)
    {
        options.Validate();
        parallel.Validate();
        TorchRuntime.EnsureLoaded();
        if (options.CudaGraphs == true)
        {
            throw new NotSupportedException(
                "CUDA graphs and SpecDecode's decode and tree kernels do not run tensor-parallel yet (docs/tensor-parallel.md): load with TargetModelOptions.CudaGraphs = false (or leave it unset: automatic graphs stay off for ranks).");
        }
        TensorParallelPlan plan = TensorParallelPlan.Create(config, parallel.WorldSize);
        (Device device, ScalarType dtype) = Placement(config, options);
        IReadOnlyList<Device> devices = parallel.DevicesFor(device);
        InProcessGroup? group = null;
        IReadOnlyList<ICommunicator> communicators;
        if (parallel.Transport == TensorParallelTransport.Nccl)
        {
            communicators = NcclCommunicator.CreateGroup(devices);
        }
        else
        {
            group = new InProcessGroup(parallel.WorldSize, parallel.CollectiveTimeout);
            communicators = group.Communicators;
        }

        TargetModel Build(int rank)
        {
            using IShardSource source = sources();
            return CreateRank(plan, rank, communicators[rank], options, devices[rank], dtype, source, endOfSequence);
        }

        RankWorkers? workers = null;
        TargetModel? coordinator = null;
        try
        {
            workers = new RankWorkers(Enumerable.Range(1, parallel.WorldSize - 1).ToArray(), Build, group, parallel.CollectiveTimeout);
            coordinator = Build(0);
            coordinator._parallel!.Workers = workers;
            workers.WaitReady();
            return coordinator;
        }
        catch
        {
            if (coordinator is not null)
            {
                coordinator.Dispose(); // stops the other ranks (aborting the group when some never became ready)
            }
            else if (workers is not null)
            {
                workers.Stop(communicators[0]);
                communicators[0].Dispose();
                workers.Dispose();
            }
            else
            {
                group?.Dispose();
            }
            throw;
        }
    }

    /// <summary>Builds rank <paramref name="rank"/>'s model: its shards of every weight and of the head, its KV cache over
    /// its key/value heads, the reference path with the rank's collectives.</summary>
    private static TargetModel CreateRank(TensorParallelPlan plan, int rank, ICommunicator communicator, TargetModelOptions options, Device device,
        ScalarType dtype, IShardSource source, IReadOnlyList<int> endOfSequence)
    {
        RankShard shard = plan.Ranks[rank];
        var weights = new CausalLMWeights(shard.Config, dtype, device);
        Tensor? head = null;
        try
        {
            using (no_grad())
            {
                foreach ((string name, Parameter parameter) in weights.named_parameters())
                {
                    source.Fill(shard.WeightsByName[name], parameter);
                }
                if (shard.HeadIsEmbeddingView)
                {
                    head = weights.EmbedTokens.narrow(0, shard.Vocab.Start, shard.Vocab.Count);
                }
                else
                {
                    head = empty(shard.OutputHead.Shape, dtype, device);
                    source.Fill(shard.OutputHead, head);
                }
            }
            var context = new TensorParallelRank(plan, shard, communicator, head);
            return new TargetModel(shard.Config, weights, options, device, dtype, context) { EndOfSequenceTokenIds = endOfSequence };
        }
        catch
        {
            weights.Dispose();
            head?.Dispose();
            throw;
        }
    }
}
