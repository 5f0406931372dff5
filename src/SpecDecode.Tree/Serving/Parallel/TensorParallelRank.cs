using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// One rank of a tensor-parallel model, as its <see cref="TargetModel"/> sees it: the rank's part of the plan, its
/// communicator and its rows of the output head, and the hooks the reference path calls (<see cref="AllReduce"/> after
/// the row-parallel o and down projections, <see cref="Logits"/> for the head). Rank 0 is the coordinator: the engine
/// and the drafters talk to its model only, and every call that changes a rank's state is first broadcast to the other
/// ranks (<see cref="Announce"/>), whose threads replay it on their own models (<see cref="RankWorkers"/>).
/// </summary>
internal sealed class TensorParallelRank : IDisposable
{
    private readonly Tensor _head;
    private readonly bool _ownsHead;
    private bool _disposed;

    /// <summary>Creates the context of <paramref name="shard"/>'s rank; <paramref name="head"/> is the rank's rows of the
    /// output head [vocabulary shard, hidden] (a view of the embedding table when tied, else owned and disposed here).</summary>
    public TensorParallelRank(TensorParallelPlan plan, RankShard shard, ICommunicator communicator, Tensor head)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(shard);
        ArgumentNullException.ThrowIfNull(communicator);
        ArgumentNullException.ThrowIfNull(head);
        if (communicator.Rank != shard.Rank || communicator.WorldSize != plan.WorldSize)
        {
            throw new ArgumentException($"Communicator rank {communicator.Rank} of {communicator.WorldSize} for shard {shard.Rank} of a {plan.WorldSize}-rank plan.", nameof(communicator));
        }
        Plan = plan;
        Shard = shard;
        Communicator = communicator;
        _head = head;
        _ownsHead = !shard.HeadIsEmbeddingView;
    }

    /// <summary>The whole model's split.</summary>
    public TensorParallelPlan Plan { get; }

    /// <summary>This rank's part of it.</summary>
    public RankShard Shard { get; }

    /// <summary>This rank's collectives.</summary>
    public ICommunicator Communicator { get; }

    /// <summary>The rank.</summary>
    public int Rank => Shard.Rank;

    /// <summary>Ranks in the group.</summary>
    public int WorldSize => Plan.WorldSize;

    /// <summary>Rank 0: the model the engine talks to, which decides every step and announces every call to the others.</summary>
    public bool IsCoordinator => Rank == 0;

    /// <summary>On the coordinator, the commands sent to the other ranks so far.</summary>
    public long Announced { get; private set; }

    /// <summary>On the coordinator, the other ranks' threads (null on the other ranks).</summary>
    internal RankWorkers? Workers { get; set; }

    /// <summary>Sums a row-parallel projection's partial products [.., hidden] over the ranks, in place. At world size 1
    /// too: that path then goes through the communicator (NCCL's one-rank all-reduce is a copy), which is what the
    /// world-size-1 checks compare with the one-device path.</summary>
    public void AllReduce(Tensor partial) => Communicator.AllReduceSum(partial);

    /// <summary>
    /// The logits of every vocabulary entry [B, T, vocab] for hidden states [B, T, hidden]: each rank multiplies by its
    /// rows of the head (the same dot products as the whole head) and the ranks' columns are gathered, padded to the
    /// largest shard for the gather. Every rank gets the same logits.
    /// </summary>
    public Tensor Logits(Tensor x)
    {
        Tensor local = nn.functional.linear(x, _head);
        int width = Plan.VocabShardSize;
        long b = x.shape[0], t = x.shape[1];
        if (local.shape[2] < width)
        {
            local = nn.functional.pad(local, [0, width - local.shape[2]]);
        }
        Tensor all = Communicator.AllGather(local.contiguous()); // [world, B, T, width]
        if (Plan.Ranks.All(r => r.Vocab.Count == width))
        {
            return all.permute(1, 2, 0, 3).reshape(b, t, (long)WorldSize * width);
        }
        return cat(Plan.Ranks.Select(r => all[r.Rank].narrow(2, 0, r.Vocab.Count)).ToArray(), 2);
    }

    /// <summary>On the coordinator, sends <paramref name="command"/> (<see cref="RankCommand"/>) to every other rank, which
    /// replays it; nothing on the other ranks (they are replaying it).</summary>
    /// <exception cref="TensorParallelException">The group has stopped after a failure.</exception>
    public void Announce(long[] command)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (IsCoordinator && WorldSize > 1)
        {
            Communicator.Broadcast(command, 0);
            Announced++;
        }
    }

    /// <summary>
    /// Runs device work that takes part in collectives. A failure of this rank stops the whole group (so no rank waits
    /// for it forever) and becomes a <see cref="TensorParallelException"/>, except an argument or state error raised
    /// before the work's first collective: that comes from the host logic every rank runs on the same state, so every
    /// rank raises it at the same point and nobody waits.
    /// </summary>
    public T Guard<T>(Func<T> work)
    {
        long before = Communicator.Collectives;
        try
        {
            return work();
        }
        catch (TensorParallelException)
        {
            throw;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException && Communicator.Collectives == before)
        {
            throw;
        }
        catch (Exception e)
        {
            Communicator.Abort(e);
            throw new TensorParallelException(
                $"Rank {Rank} of the tensor-parallel model failed ({e.GetType().Name}: {e.Message}); the group is stopped. Dispose the model and load it again.", e);
        }
    }

    /// <summary><see cref="Guard{T}(Func{T})"/> for work without a result.</summary>
    public void Guard(Action work) => Guard(() =>
    {
        work();
        return 0;
    });

    /// <summary>On the coordinator: tells the other ranks to stop, waits for their threads (they dispose their models)
    /// and disposes the communicators. On the other ranks: disposes the head and the rank's communicator.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Workers?.Stop(Communicator);
        if (_ownsHead)
        {
            _head.Dispose();
        }
        Communicator.Dispose();
        Workers?.Dispose();
    }
}
