using System.Reflection;

namespace SpecDecode.Tree.Tests.Parallel;

/// <summary>The Megatron split as data: which rows and columns each rank holds, that the ranks together hold every weight
/// exactly once (or whole where replicated), and the typed refusals.</summary>
public sealed class TensorParallelPlanTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Llama8BSplitsHeadsColumnsAndVocabulary(int world)
    {
        ModelConfig config = ParallelFixtures.Llama8B;
        TensorParallelPlan plan = TensorParallelPlan.Create(config, world);
        Assert.Equal(world, plan.Ranks.Count);
        for (int r = 0; r < world; r++)
        {
            RankShard rank = plan.Ranks[r];
            Assert.Equal(new ShardRange(r * 32 / world, 32 / world), rank.Heads);
            Assert.Equal(new ShardRange(r * 8 / world, 8 / world), rank.KeyValueHeads);
            Assert.Equal(new ShardRange(r * 14336 / world, 14336 / world), rank.Intermediate);
            Assert.Equal(new ShardRange(r * 128256 / world, 128256 / world), rank.Vocab);
            Assert.Equal(32 / world, rank.Config.HeadCount);
            Assert.Equal(8 / world, rank.Config.KeyValueHeadCount);
            Assert.Equal(14336 / world, rank.Config.IntermediateSize);

            WeightShard q = rank.WeightsByName["model.layers.5.self_attn.q_proj.weight"];
            Assert.Equal((ShardSplit.Rows, (long)r * 4096 / world, 4096L / world), (q.Split, q.Start, q.Length));
            Assert.Equal([4096L / world, 4096], q.Shape);
            WeightShard k = rank.WeightsByName["model.layers.5.self_attn.k_proj.weight"];
            Assert.Equal((ShardSplit.Rows, (long)r * 1024 / world, 1024L / world), (k.Split, k.Start, k.Length));
            WeightShard o = rank.WeightsByName["model.layers.5.self_attn.o_proj.weight"];
            Assert.Equal((ShardSplit.Columns, (long)r * 4096 / world), (o.Split, o.Start));
            Assert.Equal([4096L, 4096 / world], o.Shape);
            WeightShard down = rank.WeightsByName["model.layers.31.mlp.down_proj.weight"];
            Assert.Equal([4096L, 14336 / world], down.Shape);
            Assert.Equal(ShardSplit.Columns, down.Split);
            Assert.Equal(ShardSplit.Rows, rank.WeightsByName["model.layers.31.mlp.up_proj.weight"].Split);
            Assert.Equal(ShardSplit.Whole, rank.WeightsByName[TensorParallelPlan.EmbeddingName].Split);
            Assert.Equal(ShardSplit.Whole, rank.WeightsByName["model.norm.weight"].Split);
            Assert.False(rank.WeightsByName.ContainsKey(TensorParallelPlan.HeadName)); // the head is apart
            Assert.Equal(TensorParallelPlan.HeadName, rank.OutputHead.Name);
            Assert.Equal([128256L / world, 4096], rank.OutputHead.Shape);
            Assert.False(rank.HeadIsEmbeddingView);
        }
    }

    public static TheoryData<string, int> EveryValidSplit()
    {
        var data = new TheoryData<string, int>();
        foreach ((string name, ModelConfig config) in ParallelFixtures.Configs)
        {
            foreach (int world in TensorParallelPlan.ValidWorldSizes(config, 8))
            {
                data.Add(name, world);
            }
        }
        return data;
    }

    /// <summary>Every element of every sharded tensor is held by exactly one rank (by world size / KV heads ranks for a
    /// replicated key/value head), replicated tensors by every rank, a row-parallel bias by rank 0 only.</summary>
    [Theory]
    [MemberData(nameof(EveryValidSplit))]
    public void RanksHoldEveryWeightExactlyOnce(string name, int world)
    {
        ModelConfig config = ParallelFixtures.Configs.Single(c => c.Name == name).Config;
        TensorParallelPlan plan = TensorParallelPlan.Create(config, world);
        foreach ((string tensor, long[] shape) in TargetModel.ParameterShapes(config))
        {
            WeightShard[] shards = plan.Ranks.Select(r => tensor == TensorParallelPlan.HeadName ? r.OutputHead : r.WeightsByName[tensor]).ToArray();
            bool keyValue = tensor.Contains(".k_proj.", StringComparison.Ordinal) || tensor.Contains(".v_proj.", StringComparison.Ordinal);
            int copies = keyValue && plan.ReplicatesKeyValueHeads ? world / config.KeyValueHeadCount : 1;
            switch (shards[0].Split)
            {
                case ShardSplit.Whole when shards.All(s => s.Split == ShardSplit.Whole):
                    Assert.All(shards, s => Assert.Equal(shape, s.Shape));
                    break;
                case ShardSplit.Whole or ShardSplit.Zeros:
                    Assert.True(tensor.EndsWith("o_proj.bias", StringComparison.Ordinal) || tensor.EndsWith("down_proj.bias", StringComparison.Ordinal), tensor);
                    Assert.Equal(ShardSplit.Whole, shards[0].Split);
                    Assert.All(shards.Skip(1), s => Assert.Equal(ShardSplit.Zeros, s.Split));
                    Assert.Equal(0, shards.Skip(1).Sum(s => s.ReadElements));
                    break;
                default:
                    int dim = shards[0].Split == ShardSplit.Rows ? 0 : 1;
                    var held = new int[shape[dim]];
                    foreach (WeightShard s in shards)
                    {
                        Assert.Equal(shards[0].Split, s.Split);
                        Assert.Equal(shape.Where((_, i) => i != dim), s.Shape.Where((_, i) => i != dim));
                        for (long i = s.Start; i < s.Start + s.Length; i++)
                        {
                            held[i]++;
                        }
                    }
                    Assert.All(held, h => Assert.Equal(copies, h));
                    break;
            }
        }
        // The tied head is a view of the embedding's rows; the vocabulary is covered once.
        var vocab = new int[config.VocabSize];
        foreach (RankShard rank in plan.Ranks)
        {
            Assert.Equal(config.TieWordEmbeddings, rank.HeadIsEmbeddingView);
            Assert.Equal(rank.Vocab.Count, rank.OutputHead.Length);
            for (int v = rank.Vocab.Start; v < rank.Vocab.End; v++)
            {
                vocab[v]++;
            }
        }
        Assert.All(vocab, v => Assert.Equal(1, v));
    }

    [Fact]
    public void FewerKeyValueHeadsThanRanksReplicatesThem()
    {
        // llama-gqa: 4 query heads, 2 key/value heads; on 4 ranks ranks 0-1 share KV head 0, ranks 2-3 KV head 1.
        ModelConfig config = ModelConfig.Load(SharedFixtures.TinyCheckpoint("llama-gqa"));
        TensorParallelPlan plan = TensorParallelPlan.Create(config, 4);
        Assert.True(plan.ReplicatesKeyValueHeads);
        Assert.Equal([0, 0, 1, 1], plan.Ranks.Select(r => r.KeyValueHeads.Start));
        Assert.All(plan.Ranks, r => Assert.Equal(1, r.KeyValueHeads.Count));
        Assert.Equal([0, 1, 2, 3], plan.Ranks.Select(r => r.Heads.Start));
        // each rank's query head belongs to its key/value head (groups of 2 query heads per KV head)
        Assert.All(plan.Ranks, r => Assert.Equal(r.KeyValueHeads.Start, r.Heads.Start / 2));
    }

    [Fact]
    public void UnevenVocabularyGivesTheFirstRanksOneMore()
    {
        ModelConfig config = ParallelFixtures.Configs.Single(c => c.Name == "biased-1001").Config;
        TensorParallelPlan plan = TensorParallelPlan.Create(config, 4);
        Assert.Equal([new ShardRange(0, 251), new ShardRange(251, 250), new ShardRange(501, 250), new ShardRange(751, 250)], plan.Ranks.Select(r => r.Vocab));
        Assert.Equal(251, plan.VocabShardSize);
    }

    [Theory]
    [InlineData(3, "32 heads do not divide into 3", "1, 2, 4, 8, 16, 32")]
    [InlineData(64, "32 heads do not divide into 64", "1, 2, 4, 8, 16, 32")]
    public void Llama8BRefusesWorldSizesThatDoNotDivideItsHeads(int world, string why, string valid)
    {
        var e = Assert.Throws<TensorParallelException>(() => TensorParallelPlan.Create(ParallelFixtures.Llama8B, world));
        Assert.Contains(why, e.Message, StringComparison.Ordinal);
        Assert.Contains("World sizes that work: " + valid + ".", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RefusalsNameTheDimensionThatDoesNotDivide()
    {
        ModelConfig qwen = ModelConfig.Load(SharedFixtures.TinyCheckpoint("qwen2-tied")); // 6 heads, 2 KV heads, 256 MLP columns
        Assert.Contains("world size must be a multiple of 2", Assert.Throws<TensorParallelException>(() => TensorParallelPlan.Create(qwen, 3)).Message, StringComparison.Ordinal);
        Assert.Contains("6 heads do not divide into 4", Assert.Throws<TensorParallelException>(() => TensorParallelPlan.Create(qwen, 4)).Message, StringComparison.Ordinal);
        Assert.Contains("256 MLP columns do not divide into 6", Assert.Throws<TensorParallelException>(() => TensorParallelPlan.Create(qwen, 6)).Message, StringComparison.Ordinal);
        Assert.Equal([1, 2], TensorParallelPlan.ValidWorldSizes(qwen, 16));
        ModelConfig kv12 = ParallelFixtures.Parse("""{"architectures": ["LlamaForCausalLM"], "hidden_size": 96, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 24, "num_key_value_heads": 12, "vocab_size": 3}""");
        Assert.Contains("12 key/value heads do not divide into 8", Assert.Throws<TensorParallelException>(() => TensorParallelPlan.Create(kv12, 8)).Message, StringComparison.Ordinal);
        Assert.Contains("3 entries are fewer than 4 ranks", Assert.Throws<TensorParallelException>(() => TensorParallelPlan.Create(kv12, 4)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => TensorParallelPlan.Create(kv12, 0));
    }

    [Fact]
    public void Llama70BAtFourRanksHoldsAQuarterOfTheStepBytesPerCard()
    {
        ModelConfig config = ParallelFixtures.Llama70B;
        long full = TensorParallelPlan.Create(config, 1).Ranks[0].StepReadBytes(2);
        TensorParallelPlan plan = TensorParallelPlan.Create(config, 4);
        long norms = (2L * config.LayerCount + 1) * config.HiddenSize * 2; // replicated on every rank
        foreach (RankShard rank in plan.Ranks)
        {
            Assert.Equal((full - norms) / 4 + norms, rank.StepReadBytes(2));
            // the replicated embedding table (2.1 GB) comes on top of the step's bytes
            Assert.Equal(rank.StepReadBytes(2) + (long)config.VocabSize * config.HiddenSize * 2, rank.WeightBytes(2));
        }
        Assert.InRange(full, 139_000_000_000L, 140_500_000_000L); // 70.6 B parameters less the embedding table, in bf16
    }

    [Fact]
    public void RankConfigKeepsEveryOtherSetting()
    {
        ModelConfig config = ParallelFixtures.Configs.Single(c => c.Name == "biased-1001").Config;
        ModelConfig rank = config.ForTensorParallelRank(2, 1, 24);
        string[] changed = [nameof(ModelConfig.HeadCount), nameof(ModelConfig.KeyValueHeadCount), nameof(ModelConfig.IntermediateSize), nameof(ModelConfig.TieWordEmbeddings)];
        foreach (PropertyInfo p in typeof(ModelConfig).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => !changed.Contains(p.Name)))
        {
            Assert.Equal(p.GetValue(config), p.GetValue(rank));
        }
        Assert.Equal((2, 1, 24, true), (rank.HeadCount, rank.KeyValueHeadCount, rank.IntermediateSize, rank.TieWordEmbeddings));
    }
}
