using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests.Parallel;

/// <summary>Each rank reads only its rows and columns of each tensor, straight from the safetensors files (single file or
/// several with an index), and gets exactly the slice of the whole tensor the plan names.</summary>
public sealed class ShardLoadingTests
{
    [Theory]
    [InlineData("llama-gqa", 2)]
    [InlineData("llama-gqa", 4)]
    [InlineData("qwen2-tied", 2)]
    public void TinyFixtureShardsAreTheSlicesOfTheWholeTensors(string name, int world) =>
        AssertShardsAreSlices(SharedFixtures.TinyCheckpoint(name), world);

    /// <summary>A staging chunk smaller than a run (and not a multiple of it) crosses chunk boundaries inside and between
    /// runs, as 64 MiB chunks do on a real model's rows.</summary>
    [Theory]
    [InlineData(36)]
    [InlineData(100)]
    [InlineData(1000)]
    public void SmallStagingChunksGiveTheSameShards(long chunkBytes)
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using CheckpointWeights checkpoint = CheckpointWeights.Open(folder);
        TensorParallelPlan plan = TensorParallelPlan.Create(ModelConfig.Load(folder), 2);
        foreach (string name in new[] { "model.layers.1.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.k_proj.weight", TensorParallelPlan.EmbeddingName })
        {
            WeightShard shard = plan.Ranks[1].WeightsByName[name];
            using var scope = NewDisposeScope();
            Tensor expected = empty(shard.Shape);
            long bytes = checkpoint.CopyShardInto(shard, expected);
            Tensor chunked = empty(shard.Shape);
            Assert.Equal(bytes, checkpoint.CopyShardInto(shard, chunked, chunkBytes));
            Assert.True(expected.eq(chunked).all().item<bool>(), $"{shard} through {chunkBytes}-byte chunks");
        }
    }

    [Theory]
    [InlineData(2, SafeTensorsDType.Float32)]
    [InlineData(4, SafeTensorsDType.Float32)]
    [InlineData(4, SafeTensorsDType.BFloat16)]
    [InlineData(2, SafeTensorsDType.Float16)]
    public void ShardedCheckpointWithAnIndexLoadsPerRank(int world, SafeTensorsDType dtype)
    {
        using var dir = new TestFiles.TempDir();
        ParallelFixtures.WriteRandomCheckpoint(dir.Path, ParallelFixtures.BiasedLlama, seed: 3, dtype, maxShardBytes: 60_000);
        Assert.True(File.Exists(dir.File("model.safetensors.index.json")));
        Assert.True(Directory.GetFiles(dir.Path, "model-*-of-*.safetensors").Length >= 4, "the fixture should span several files");
        AssertShardsAreSlices(dir.Path, world);
    }

    [Fact]
    public void AShardOfTheWrongShapeOrACheckpointThatDisagreesIsRefused()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using CheckpointWeights checkpoint = CheckpointWeights.Open(folder);
        TensorParallelPlan plan = TensorParallelPlan.Create(ModelConfig.Load(folder), 2);
        WeightShard q = plan.Ranks[1].WeightsByName["model.layers.0.self_attn.q_proj.weight"];
        using Tensor wrong = empty([q.Shape[0] + 1, q.Shape[1]]);
        Assert.Contains("q_proj", Assert.Throws<ArgumentException>(() => checkpoint.CopyShardInto(q, wrong)).Message, StringComparison.Ordinal);

        // A plan made from a config that says 192 MLP columns, for weights of 176.
        ModelConfig other = ParallelFixtures.Parse(File.ReadAllText(Path.Combine(folder, "config.json")).Replace("\"intermediate_size\": 176", "\"intermediate_size\": 192", StringComparison.Ordinal));
        WeightShard up = TensorParallelPlan.Create(other, 2).Ranks[0].WeightsByName["model.layers.1.mlp.up_proj.weight"];
        using Tensor destination = empty(up.Shape);
        var e = Assert.Throws<SafeTensorsException>(() => checkpoint.CopyShardInto(up, destination));
        Assert.Contains("config.json and weights disagree", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Every rank's shard of every tensor (and its head) equals the slice of the whole tensor, and the rank read
    /// exactly its shards' bytes: less than the checkpoint when there are several ranks.</summary>
    private static void AssertShardsAreSlices(string folder, int world)
    {
        ModelConfig config = ModelConfig.Load(folder);
        TensorParallelPlan plan = TensorParallelPlan.Create(config, world);
        using CheckpointWeights checkpoint = CheckpointWeights.Open(folder);
        long wholeBytes = checkpoint.TensorNames.Sum(n => checkpoint.Get(n).Length);
        foreach (RankShard rank in plan.Ranks)
        {
            long read = 0, expectedRead = 0, splitRead = 0, splitWhole = 0;
            foreach (WeightShard shard in rank.HeadIsEmbeddingView ? rank.Weights : [.. rank.Weights, rank.OutputHead])
            {
                SafeTensorInfo info = checkpoint.Get(shard.Name);
                int elementSize = info.DType == SafeTensorsDType.Float32 ? 4 : 2;
                using var scope = NewDisposeScope();
                Tensor whole = empty(shard.FullShape);
                checkpoint.CopyInto(shard.Name, whole);
                Tensor part = empty(shard.Shape);
                long bytes = checkpoint.CopyShardInto(shard, part);
                read += bytes;
                expectedRead += shard.ReadElements * elementSize;
                if (shard.Split is ShardSplit.Rows or ShardSplit.Columns)
                {
                    splitRead += bytes;
                    splitWhole += info.Length;
                }
                Tensor slice = shard.Split switch
                {
                    ShardSplit.Rows => whole.narrow(0, shard.Start, shard.Length),
                    ShardSplit.Columns => whole.narrow(1, shard.Start, shard.Length),
                    ShardSplit.Zeros => zeros_like(whole),
                    _ => whole,
                };
                Assert.True(slice.eq(part).all().item<bool>(), $"rank {rank.Rank}: {shard}");
            }
            Assert.Equal(expectedRead, read);
            if (world > 1)
            {
                Assert.True(read < wholeBytes, $"rank {rank.Rank} read {read} of the checkpoint's {wholeBytes} bytes");
                if (!plan.ReplicatesKeyValueHeads)
                {
                    // the split tensors are split evenly: the rank reads 1 / world of them (the vocabulary up to one row)
                    long rowBytes = (long)config.HiddenSize * (wholeBytes / checkpoint.TensorNames.Sum(n => checkpoint.Get(n).ElementCount));
                    Assert.InRange(splitRead, splitWhole / world - rowBytes, splitWhole / world + rowBytes);
                }
            }
        }
    }
}
