using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests.Parallel;

/// <summary>The communicator seam: the in-process group's collectives (same bits on every rank, rank order), its checks
/// (ranks that disagree, a rank that never comes, a failed rank) and the NCCL binding's ABI and its refusal without NCCL.</summary>
public sealed class CommunicatorTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void CollectivesGiveEveryRankTheSameResult(int world)
    {
        using var group = new InProcessGroup(world, TimeSpan.FromSeconds(30));
        var sums = new float[world][];
        var gathered = new float[world][];
        var broadcast = new float[world][];
        var values = new long[world][];
        Exception?[] failures = RankThreads.Run(world, rank =>
        {
            ICommunicator c = group.Communicators[rank];
            using var scope = NewDisposeScope();
            for (int round = 0; round < 20; round++) // the barrier and the shared result are reused
            {
                Tensor mine = Contribution(rank, round);
                Tensor sum = mine.clone();
                c.AllReduceSum(sum);
                Tensor all = c.AllGather(mine);
                Tensor fromRoot = mine.clone();
                c.Broadcast(fromRoot, world - 1);
                long[] got = c.Broadcast(rank == world / 2 ? [round, rank, 7] : null, world / 2);
                if (round == 19)
                {
                    sums[rank] = sum.data<float>().ToArray();
                    gathered[rank] = all.data<float>().ToArray();
                    broadcast[rank] = fromRoot.data<float>().ToArray();
                    values[rank] = got;
                }
            }
        });
        Assert.All(failures, Assert.Null);
        // rank order: ((t0 + t1) + t2) + t3, bit for bit the same on every rank
        Tensor expectedSum = Contribution(0, 19);
        for (int r = 1; r < world; r++)
        {
            expectedSum = expectedSum + Contribution(r, 19);
        }
        float[] expectedGather = Enumerable.Range(0, world).SelectMany(r => Contribution(r, 19).data<float>().ToArray()).ToArray();
        for (int r = 0; r < world; r++)
        {
            Assert.Equal(expectedSum.data<float>().ToArray(), sums[r]);
            Assert.Equal(expectedGather, gathered[r]);
            Assert.Equal(Contribution(world - 1, 19).data<float>().ToArray(), broadcast[r]);
            Assert.Equal([19L, world / 2, 7], values[r]);
        }
        Assert.All(group.Communicators, c => Assert.Equal(80, c.Collectives));
    }

    [Fact]
    public void RanksThatCallDifferentCollectivesAreToldWhoCalledWhat()
    {
        using var group = new InProcessGroup(2, TimeSpan.FromSeconds(30));
        Exception?[] failures = RankThreads.Run(2, rank =>
        {
            using var scope = NewDisposeScope();
            Tensor t = ones(3, 4);
            if (rank == 0)
            {
                group.Communicators[0].AllReduceSum(t);
            }
            else
            {
                group.Communicators[1].AllGather(t);
            }
        });
        Assert.All(failures, f => Assert.IsType<TensorParallelException>(f));
        Assert.Contains("rank 0 called AllReduceSum of Float32 [3, 4], rank 1 called AllGather of Float32 [3, 4]", failures[0]!.Message, StringComparison.Ordinal);
        Assert.True(group.Failed);
        // the group stays stopped
        Assert.Throws<TensorParallelException>(() => group.Communicators[0].Broadcast([1L], 0));
    }

    [Fact]
    public void ARankThatNeverComesStopsTheOthersAfterTheTimeout()
    {
        using var group = new InProcessGroup(3, TimeSpan.FromSeconds(1));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Exception?[] failures = RankThreads.Run(3, rank =>
        {
            if (rank != 2)
            {
                group.Communicators[rank].Broadcast(rank == 0 ? [1L] : null, 0);
            }
        });
        Assert.IsType<TensorParallelException>(failures[0]);
        Assert.IsType<TensorParallelException>(failures[1]);
        Assert.Null(failures[2]);
        Assert.Contains("for a rank that never came", failures[0]!.Message + failures[1]!.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(20), $"took {watch.Elapsed}");
    }

    [Fact]
    public void AFailedRankReleasesTheRanksWaitingForIt()
    {
        using var group = new InProcessGroup(3, TimeSpan.FromMinutes(5));
        group.FailWhen = (rank, index) => rank == 1 && index == 2;
        var watch = System.Diagnostics.Stopwatch.StartNew();
        Exception?[] failures = RankThreads.Run(3, rank =>
        {
            ICommunicator c = group.Communicators[rank];
            try
            {
                using var scope = NewDisposeScope();
                for (int i = 0; i < 5; i++)
                {
                    c.AllReduceSum(ones(2));
                }
            }
            catch (ExternalException e)
            {
                c.Abort(e); // what a rank does with a device failure: stop the group, then report
                throw;
            }
        });
        Assert.IsType<ExternalException>(failures[1]);
        Assert.IsType<TensorParallelException>(failures[0]);
        Assert.IsType<TensorParallelException>(failures[2]);
        Assert.Contains("injected failure on rank 1 at collective 2", failures[0]!.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromMinutes(1), $"took {watch.Elapsed}: the ranks waited for the timeout instead of the abort");
    }

    [Fact]
    public void NcclBindingMatchesTheDocumentedAbi()
    {
        // nccl.h (NCCL 2.x): NCCL_UNIQUE_ID_BYTES 128; ncclResult_t, ncclDataType_t and ncclRedOp_t as numbered there.
        Assert.Equal(128, Nccl.UniqueIdBytes);
        Assert.Equal(128, Marshal.SizeOf<NcclUniqueId>());
        Assert.Equal(128, Unsafe.SizeOf<NcclUniqueId>());
        Assert.Equal(128, default(NcclUniqueId).ToArray().Length);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7], Enum.GetValues<NcclResult>().Select(v => (int)v));
        Assert.Equal(
            [("Int8", 0), ("Uint8", 1), ("Int32", 2), ("Uint32", 3), ("Int64", 4), ("Uint64", 5), ("Float16", 6), ("Float32", 7), ("Float64", 8), ("BFloat16", 9)],
            Enum.GetValues<NcclDataType>().Select(v => (v.ToString(), (int)v)));
        Assert.Equal([("Sum", 0), ("Prod", 1), ("Max", 2), ("Min", 3), ("Avg", 4)], Enum.GetValues<NcclRedOp>().Select(v => (v.ToString(), (int)v)));
        Assert.Equal(sizeof(int), Marshal.SizeOf(Enum.GetUnderlyingType(typeof(NcclDataType)))); // C enums are ints
        Assert.Equal(NcclDataType.BFloat16, Nccl.DataTypeOf(ScalarType.BFloat16));
        Assert.Equal(NcclDataType.Float16, Nccl.DataTypeOf(ScalarType.Float16));
        Assert.Equal(NcclDataType.Float32, Nccl.DataTypeOf(ScalarType.Float32));
        Assert.Equal(NcclDataType.Int64, Nccl.DataTypeOf(ScalarType.Int64));
        Assert.Throws<ArgumentException>(() => Nccl.DataTypeOf(ScalarType.ComplexFloat32));
    }

    [Fact]
    public void NcclIsLookedForByItsSonameThenBesideLibtorchAndInThePipLayouts()
    {
        Assert.Equal(["libnccl.so.2", "/x/torch/lib/libnccl.so.2", "/x/nvidia/nccl/lib/libnccl.so.2", "/x/nvidia/cu13/lib/libnccl.so.2"], Nccl.Candidates("/x/torch/lib"));
        Assert.Equal(["libnccl.so.2"], Nccl.Candidates(null));
    }

    [Fact]
    public void WithoutNcclTheBindingSaysWhereItLookedAndWhatToDo()
    {
        using var dir = new TestFiles.TempDir();
        (Nccl? api, string reason) = Nccl.TryLoad([dir.File("libnccl.so.2"), "libnccl-that-does-not-exist.so.2"]);
        Assert.Null(api);
        Assert.StartsWith("NCCL not found: tried " + dir.File("libnccl.so.2") + " (no such file), libnccl-that-does-not-exist.so.2 (not on the loader's path)", reason, StringComparison.Ordinal);
        Assert.Contains(TorchRuntime.LibTorchVariable, reason, StringComparison.Ordinal);
        // On this CPU machine (TorchSharp-cpu) a group over GPUs is refused with a typed error, whether NCCL is missing or
        // present without CUDA.
        var e = Assert.ThrowsAny<NcclUnavailableException>(() => NcclCommunicator.CreateGroup([CPU]));
        Assert.Contains("NCCL", e.Message, StringComparison.Ordinal);
    }

    private static Tensor Contribution(int rank, int round) =>
        arange(12, float32).view(3, 4).mul(0.1f * (rank + 1)).add(round / 3.0f + rank * 1e-3f);
}

/// <summary>Runs one body per rank, each on its own thread, and returns each rank's exception (null where it succeeded).</summary>
internal static class RankThreads
{
    public static Exception?[] Run(int world, Action<int> body, TimeSpan? timeout = null)
    {
        var failures = new Exception?[world];
        Thread[] threads = Enumerable.Range(0, world).Select(rank => new Thread(() =>
        {
            try
            {
                body(rank);
            }
            catch (Exception e)
            {
                failures[rank] = e;
            }
        }) { IsBackground = true, Name = $"test rank {rank}" }).ToArray();
        foreach (Thread t in threads)
        {
            t.Start();
        }
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(timeout ?? TimeSpan.FromMinutes(3)), $"{t.Name} did not finish");
        }
        return failures;
    }
}
