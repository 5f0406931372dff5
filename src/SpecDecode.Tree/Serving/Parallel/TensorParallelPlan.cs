namespace SpecDecode.Tree;

/// <summary>How one rank holds one checkpoint tensor.</summary>
internal enum ShardSplit
{
    /// <summary>The whole tensor (norms, the embedding table, a row-parallel bias on rank 0).</summary>
    Whole,

    /// <summary>Rows [Start, Start + Length) of dimension 0: the output features of a column-parallel projection
    /// (q/k/v, gate/up, the output head's vocabulary), or a slice of its bias.</summary>
    Rows,

    /// <summary>Columns [Start, Start + Length) of dimension 1: the input features of a row-parallel projection (o, down).</summary>
    Columns,

    /// <summary>Zeros of the whole shape, nothing read: a row-parallel projection's bias on ranks other than 0. The ranks'
    /// partial products are summed by the all-reduce, so the bias must be in exactly one of them.</summary>
    Zeros,
}

/// <summary>A contiguous range of heads, columns or vocabulary entries.</summary>
/// <param name="Start">The first index.</param>
/// <param name="Count">How many.</param>
internal readonly record struct ShardRange(int Start, int Count)
{
    /// <summary>One past the last index.</summary>
    public int End => Start + Count;

    /// <inheritdoc />
    public override string ToString() => $"[{Start}, {End})";
}

/// <summary>What one rank holds of one checkpoint tensor.</summary>
/// <param name="Name">The Hugging Face tensor name (<c>model.layers.3.self_attn.q_proj.weight</c>).</param>
/// <param name="FullShape">The tensor's shape in the checkpoint.</param>
/// <param name="Split">How the rank holds it.</param>
/// <param name="Start">The first row (<see cref="ShardSplit.Rows"/>) or column (<see cref="ShardSplit.Columns"/>); 0 otherwise.</param>
/// <param name="Length">Rows or columns held; the whole dimension 0 otherwise.</param>
internal sealed record WeightShard(string Name, long[] FullShape, ShardSplit Split, long Start, long Length)
{
    /// <summary>The shape the rank holds.</summary>
    public long[] Shape => Split switch
    {
        ShardSplit.Rows => [Length, .. FullShape.AsSpan(1)],
        ShardSplit.Columns => [FullShape[0], Length, .. FullShape.AsSpan(2)],
        _ => FullShape,
    };

    /// <summary>Elements the rank holds.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Elements the rank reads from the checkpoint (none for <see cref="ShardSplit.Zeros"/>).</summary>
    public long ReadElements => Split == ShardSplit.Zeros ? 0 : ElementCount;

    /// <inheritdoc />
    public override string ToString() => Split switch
    {
        ShardSplit.Rows => $"{Name} rows [{Start}, {Start + Length}) of [{string.Join(", ", FullShape)}]",
        ShardSplit.Columns => $"{Name} columns [{Start}, {Start + Length}) of [{string.Join(", ", FullShape)}]",
        _ => $"{Name} {Split.ToString().ToLowerInvariant()} [{string.Join(", ", FullShape)}]",
    };
}

/// <summary>One rank's part of a <see cref="TensorParallelPlan"/>.</summary>
internal sealed class RankShard
{
    internal RankShard(int rank, ShardRange heads, ShardRange keyValueHeads, ShardRange intermediate, ShardRange vocab, ModelConfig config,
        IReadOnlyList<WeightShard> weights, WeightShard outputHead, bool headIsEmbeddingView)
    {
        Rank = rank;
        Heads = heads;
        KeyValueHeads = keyValueHeads;
        Intermediate = intermediate;
        Vocab = vocab;
        Config = config;
        Weights = weights;
        WeightsByName = weights.ToDictionary(w => w.Name, StringComparer.Ordinal);
        OutputHead = outputHead;
        HeadIsEmbeddingView = headIsEmbeddingView;
    }

    /// <summary>The rank (0 .. world size − 1); rank 0 is the coordinator.</summary>
    public int Rank { get; }

    /// <summary>The query heads the rank computes.</summary>
    public ShardRange Heads { get; }

    /// <summary>The key/value heads the rank computes and caches (shared with other ranks when the model has fewer
    /// key/value heads than ranks).</summary>
    public ShardRange KeyValueHeads { get; }

    /// <summary>The MLP columns (gate/up rows, down columns) the rank computes.</summary>
    public ShardRange Intermediate { get; }

    /// <summary>The vocabulary entries whose logits the rank computes.</summary>
    public ShardRange Vocab { get; }

    /// <summary>The shape the rank computes: its heads, key/value heads and MLP columns, the whole hidden size and
    /// vocabulary (see <see cref="ModelConfig.ForTensorParallelRank"/>).</summary>
    public ModelConfig Config { get; }

    /// <summary>Every tensor of the rank's decoder (the parameters of a model of <see cref="Config"/>), in the model's
    /// parameter order, with what the rank holds of it.</summary>
    public IReadOnlyList<WeightShard> Weights { get; }

    /// <summary><see cref="Weights"/> by name.</summary>
    public IReadOnlyDictionary<string, WeightShard> WeightsByName { get; }

    /// <summary>The rank's rows of the output head: <c>lm_head.weight</c>, or <c>model.embed_tokens.weight</c> when the
    /// model ties them.</summary>
    public WeightShard OutputHead { get; }

    /// <summary>The head is tied to the embedding table, which every rank holds whole: the head shard is a view of it and
    /// costs neither memory nor a read.</summary>
    public bool HeadIsEmbeddingView { get; }

    /// <summary>Bytes of weights the rank holds in a dtype of <paramref name="elementSize"/> bytes.</summary>
    public long WeightBytes(int elementSize) =>
        (Weights.Sum(w => w.ElementCount) + (HeadIsEmbeddingView ? 0 : OutputHead.ElementCount)) * elementSize;

    /// <summary>Bytes of weights one plain decoding step reads on this rank: every weight but the embedding table (of
    /// which a step reads one row per token), plus the head shard. With the KV cache's bytes and the all-reduce time this
    /// is the step's floor (docs/tensor-parallel.md).</summary>
    public long StepReadBytes(int elementSize) =>
        (Weights.Where(w => w.Name != TensorParallelPlan.EmbeddingName).Sum(w => w.ElementCount) + OutputHead.ElementCount) * elementSize;
}

/// <summary>
/// The Megatron-LM split of a Llama-family model over <see cref="WorldSize"/> ranks, as data: which rows or columns of
/// each checkpoint tensor each rank holds. Query heads and key/value heads are split by head (q/k/v column-parallel), the
/// attention output projection by its input columns (row-parallel), gate/up by their output rows and down by its input
/// columns (one all-reduce after o and one after down per layer), the output head by vocabulary rows (each rank computes
/// its vocabulary's logits; they are gathered). The embedding table, norms and q/k norms are replicated; a row-parallel
/// bias lives on rank 0 only. When the model has fewer key/value heads than ranks, each key/value head is replicated on
/// world size / key/value heads ranks (vLLM does the same).
/// </summary>
/// <remarks>Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using Model Parallelism"
/// (2019), section 3. Why the embedding is replicated: docs/tensor-parallel.md.</remarks>
internal sealed class TensorParallelPlan
{
    /// <summary>The embedding table's tensor name.</summary>
    public const string EmbeddingName = "model.embed_tokens.weight";

    /// <summary>The untied output head's tensor name.</summary>
    public const string HeadName = "lm_head.weight";

    private TensorParallelPlan(ModelConfig config, int worldSize, RankShard[] ranks)
    {
        Config = config;
        WorldSize = worldSize;
        Ranks = ranks;
    }

    /// <summary>The whole model's configuration.</summary>
    public ModelConfig Config { get; }

    /// <summary>Ranks.</summary>
    public int WorldSize { get; }

    /// <summary>Each rank's part, by rank.</summary>
    public IReadOnlyList<RankShard> Ranks { get; }

    /// <summary>The largest vocabulary shard: every rank's logits are padded to it for the gather.</summary>
    public int VocabShardSize => Ranks.Max(r => r.Vocab.Count);

    /// <summary>Whether key/value heads are replicated (fewer of them than ranks).</summary>
    public bool ReplicatesKeyValueHeads => Config.KeyValueHeadCount < WorldSize;

    /// <summary>Splits <paramref name="config"/> over <paramref name="worldSize"/> ranks.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="config"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="worldSize"/> is below 1.</exception>
    /// <exception cref="TensorParallelException">The model cannot be split that way: query heads, key/value heads or MLP
    /// columns do not divide evenly, or the vocabulary is smaller than the world size. The message lists the world sizes
    /// that work.</exception>
    public static TensorParallelPlan Create(ModelConfig config, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        if (Refusal(config, worldSize) is { } why)
        {
            int[] valid = ValidWorldSizes(config, 64);
            throw new TensorParallelException(
                $"A {config.Architecture} model of {config.HeadCount} query heads, {config.KeyValueHeadCount} key/value heads, {config.IntermediateSize} MLP " +
                $"columns and {config.VocabSize} vocabulary entries cannot run on {worldSize} ranks: {why}. " +
                $"World sizes that work: {string.Join(", ", valid)}.");
        }
        IReadOnlyList<(string Name, long[] Shape)> parameters = TargetModel.ParameterShapes(config);
        var ranks = new RankShard[worldSize];
        for (int r = 0; r < worldSize; r++)
        {
            ranks[r] = RankOf(config, worldSize, r, parameters);
        }
        return new TensorParallelPlan(config, worldSize, ranks);
    }

    /// <summary>Why <paramref name="config"/> cannot be split over <paramref name="worldSize"/> ranks, or null when it can.</summary>
    public static string? Refusal(ModelConfig config, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        int kv = config.KeyValueHeadCount;
        if (config.HeadCount % worldSize != 0)
        {
            return $"each rank computes whole query heads, and {config.HeadCount} heads do not divide into {worldSize}";
        }
        if (kv >= worldSize && kv % worldSize != 0)
        {
            return $"each rank caches whole key/value heads, and {kv} key/value heads do not divide into {worldSize}";
        }
        if (kv < worldSize && worldSize % kv != 0)
        {
            return $"with fewer key/value heads ({kv}) than ranks each key/value head is replicated on world size / {kv} ranks, so the world size must be a multiple of {kv}";
        }
        if (config.IntermediateSize % worldSize != 0)
        {
            return $"each rank computes an equal share of the MLP, and {config.IntermediateSize} MLP columns do not divide into {worldSize}";
        }
        if (config.VocabSize < worldSize)
        {
            return $"each rank computes the logits of a share of the vocabulary, and {config.VocabSize} entries are fewer than {worldSize} ranks";
        }
        return null;
    }

    /// <summary>The world sizes from 1 to <paramref name="max"/> that <paramref name="config"/> can be split over.</summary>
    public static int[] ValidWorldSizes(ModelConfig config, int max) =>
        Enumerable.Range(1, max).Where(w => Refusal(config, w) is null).ToArray();

    private static RankShard RankOf(ModelConfig config, int world, int rank, IReadOnlyList<(string Name, long[] Shape)> parameters)
    {
        int d = config.HeadDim;
        var heads = new ShardRange(rank * (config.HeadCount / world), config.HeadCount / world);
        int kv = config.KeyValueHeadCount;
        ShardRange kvHeads = kv >= world ? new ShardRange(rank * (kv / world), kv / world) : new ShardRange(rank / (world / kv), 1);
        var intermediate = new ShardRange(rank * (config.IntermediateSize / world), config.IntermediateSize / world);
        // The vocabulary need not divide: the first V % W ranks take one entry more.
        int baseShare = config.VocabSize / world, extra = config.VocabSize % world;
        var vocab = new ShardRange(rank * baseShare + Math.Min(rank, extra), baseShare + (rank < extra ? 1 : 0));

        var weights = new List<WeightShard>();
        WeightShard? head = null;
        foreach ((string name, long[] shape) in parameters)
        {
            WeightShard shard = Classify(name, shape, rank, heads, kvHeads, intermediate, vocab, d);
            if (name == HeadName)
            {
                head = shard;
            }
            else
            {
                weights.Add(shard);
            }
        }
        bool tied = config.TieWordEmbeddings;
        if (tied)
        {
            long[] embedding = parameters.Single(p => p.Name == EmbeddingName).Shape;
            head = new WeightShard(EmbeddingName, embedding, ShardSplit.Rows, vocab.Start, vocab.Count);
        }
        ModelConfig rankConfig = config.ForTensorParallelRank(heads.Count, kvHeads.Count, intermediate.Count);
        var result = new RankShard(rank, heads, kvHeads, intermediate, vocab, rankConfig, weights,
            head ?? throw new InvalidOperationException($"the model of {config.Architecture} has no {HeadName}: the plan cannot place the output head"), tied);
        CheckAgainstRankModel(result);
        return result;
    }

    /// <summary>How rank <paramref name="rank"/> holds the tensor <paramref name="name"/> of the Hugging Face layout.</summary>
    private static WeightShard Classify(string name, long[] shape, int rank, ShardRange heads, ShardRange kvHeads, ShardRange intermediate,
        ShardRange vocab, int headDim)
    {
        WeightShard Rows(ShardRange range, int unit) => new(name, shape, ShardSplit.Rows, (long)range.Start * unit, (long)range.Count * unit);
        WeightShard Columns(ShardRange range, int unit) => new(name, shape, ShardSplit.Columns, (long)range.Start * unit, (long)range.Count * unit);
        WeightShard Whole() => new(name, shape, ShardSplit.Whole, 0, shape.Length == 0 ? 1 : shape[0]);
        WeightShard FirstRankOnly() => rank == 0 ? Whole() : new(name, shape, ShardSplit.Zeros, 0, shape[0]);

        if (name == HeadName)
        {
            return Rows(vocab, 1);
        }
        if (name is EmbeddingName or "model.norm.weight")
        {
            return Whole();
        }
        string part = name.StartsWith("model.layers.", StringComparison.Ordinal) ? name[(name.IndexOf('.', "model.layers.".Length) + 1)..] : name;
        return part switch
        {
            "input_layernorm.weight" or "post_attention_layernorm.weight" or "self_attn.q_norm.weight" or "self_attn.k_norm.weight" => Whole(),
            "self_attn.q_proj.weight" or "self_attn.q_proj.bias" => Rows(heads, headDim),
            "self_attn.k_proj.weight" or "self_attn.k_proj.bias" or "self_attn.v_proj.weight" or "self_attn.v_proj.bias" => Rows(kvHeads, headDim),
            "self_attn.o_proj.weight" => Columns(heads, headDim),
            "self_attn.o_proj.bias" or "mlp.down_proj.bias" => FirstRankOnly(),
            "mlp.gate_proj.weight" or "mlp.gate_proj.bias" or "mlp.up_proj.weight" or "mlp.up_proj.bias" => Rows(intermediate, 1),
            "mlp.down_proj.weight" => Columns(intermediate, 1),
            _ => throw new InvalidOperationException($"the tensor-parallel plan does not know how to split '{name}': add it to TensorParallelPlan.Classify"),
        };
    }

    /// <summary>The rank's shards must be exactly the parameters of a model of the rank's configuration, shape for shape:
    /// the rank's weights are then loaded by name like any model's.</summary>
    private static void CheckAgainstRankModel(RankShard rank)
    {
        IReadOnlyList<(string Name, long[] Shape)> expected = TargetModel.ParameterShapes(rank.Config);
        bool same = expected.Count == rank.Weights.Count
            && expected.Zip(rank.Weights).All(p => p.First.Name == p.Second.Name && p.First.Shape.SequenceEqual(p.Second.Shape));
        if (!same)
        {
            throw new InvalidOperationException(
                $"tensor-parallel plan of rank {rank.Rank}: its shards [{string.Join("; ", rank.Weights.Select(w => $"{w.Name} [{string.Join(", ", w.Shape)}]"))}] " +
                $"are not the parameters of the rank's model [{string.Join("; ", expected.Select(p => $"{p.Name} [{string.Join(", ", p.Shape)}]"))}]");
        }
    }
}
