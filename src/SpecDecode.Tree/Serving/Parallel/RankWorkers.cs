namespace SpecDecode.Tree;

/// <summary>
/// The ranks other than the coordinator, one thread each: a thread builds its rank's <see cref="TargetModel"/> (its
/// shards loaded on its device), reports that it is ready, then replays the coordinator's commands
/// (<see cref="RankCommand"/>) until it is told to stop or the group fails, and disposes its model.
/// </summary>
/// <remarks>
/// <para>This is the mapping to threads: one process, one thread per rank, as the CPU tests simulate ranks and as one
/// host drives its GPUs over NCCL (<see cref="NcclCommunicator.CreateGroup"/>). With one process per GPU instead, each
/// non-coordinator process runs <see cref="Serve"/> on its own rank model (its communicator from
/// <see cref="NcclCommunicator.CreateRank"/>), and only the coordinator's process hosts the engine and the drafters
/// (docs/tensor-parallel.md).</para>
/// <para>A command that fails on a rank in the host logic every rank runs (an argument or state error before any
/// collective) fails identically on the coordinator, which reports it; the rank goes on with the next command. Any other
/// failure stops the group (<see cref="TensorParallelRank.Guard{T}"/>), and the loop ends.</para>
/// </remarks>
internal sealed class RankWorkers : IDisposable
{
    private readonly Thread[] _threads;
    private readonly TaskCompletionSource<TargetModel>[] _ready;
    private readonly IDisposable? _transport;
    private readonly TimeSpan _stopTimeout;
    private readonly long[] _replayed; // commands each rank has finished

    /// <summary>Starts one thread per rank in <paramref name="ranks"/>; each builds its model with <paramref name="build"/>.
    /// <paramref name="transport"/> (the in-process group, if any) is disposed after the threads end.</summary>
    public RankWorkers(IReadOnlyList<int> ranks, Func<int, TargetModel> build, IDisposable? transport, TimeSpan stopTimeout)
    {
        _transport = transport;
        _stopTimeout = stopTimeout;
        _ready = ranks.Select(_ => new TaskCompletionSource<TargetModel>(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        _threads = new Thread[ranks.Count];
        _replayed = new long[ranks.Count];
        for (int i = 0; i < ranks.Count; i++)
        {
            int index = i, rank = ranks[i];
            _threads[i] = new Thread(() => Run(rank, build, _ready[index], () => Interlocked.Increment(ref _replayed[index])))
            {
                IsBackground = true,
                Name = $"SpecDecode tensor-parallel rank {rank}",
            };
            _threads[i].Start();
        }
    }

    /// <summary>The worker ranks' models once they have replayed the first <paramref name="announced"/> commands (tests
    /// read them between calls: a rank may still be finishing the last call when the coordinator returns).</summary>
    /// <exception cref="TimeoutException">A rank did not catch up within the stop timeout.</exception>
    public IReadOnlyList<TargetModel> Models(long announced)
    {
        TargetModel[] models = _ready.Select(r => r.Task.Result).ToArray();
        for (int i = 0; i < _replayed.Length; i++)
        {
            int index = i;
            if (!SpinWait.SpinUntil(() => Volatile.Read(ref _replayed[index]) >= announced || !_threads[index].IsAlive, _stopTimeout))
            {
                throw new TimeoutException($"{_threads[i].Name} replayed {Volatile.Read(ref _replayed[i])} of {announced} commands.");
            }
        }
        return models;
    }

    /// <summary>Waits until every rank's model is built; the first rank's failure, if any, is thrown.</summary>
    public void WaitReady()
    {
        try
        {
            Task.WaitAll(_ready.Select(r => (Task)r.Task).ToArray());
        }
        catch (AggregateException e)
        {
            throw e.InnerExceptions[0];
        }
    }

    /// <summary>Replays the coordinator's commands on <paramref name="model"/> (a rank other than 0) until a stop command
    /// or a failure of the group; <paramref name="replayed"/> runs after each command.</summary>
    public static void Serve(TargetModel model, Action? replayed = null)
    {
        TensorParallelRank rank = model.TensorParallel ?? throw new ArgumentException("Not a rank of a tensor-parallel model.", nameof(model));
        while (true)
        {
            try
            {
                long[] command = rank.Communicator.Broadcast(null, 0);
                if (RankCommand.KindOf(command) == RankCommandKind.Stop)
                {
                    return;
                }
                RankCommand.Apply(model, command);
            }
            catch (TensorParallelException)
            {
                return; // the group stopped: the coordinator reports why
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or SpecDecodeException)
            {
                // the host logic every rank runs refused the call here and on the coordinator alike; next command
            }
            replayed?.Invoke();
        }
    }

    /// <summary>On the coordinator's dispose: tells the ranks to stop (unless the group already failed) and waits for their
    /// threads.</summary>
    public void Stop(ICommunicator coordinator)
    {
        if (_ready.Any(r => !r.Task.IsCompletedSuccessfully))
        {
            coordinator.Abort(new ObjectDisposedException(nameof(TargetModel), "The tensor-parallel model was disposed before every rank was ready."));
        }
        else
        {
            try
            {
                coordinator.Broadcast(RankCommand.Stop(), 0);
            }
            catch (TensorParallelException)
            {
                // the group failed earlier: the ranks have left their loops
            }
        }
        foreach (Thread t in _threads)
        {
            if (!t.Join(_stopTimeout))
            {
                coordinator.Abort(new TimeoutException($"{t.Name} did not stop within {_stopTimeout.TotalSeconds:F0} s."));
                t.Join(_stopTimeout);
            }
        }
    }

    /// <inheritdoc />
    public void Dispose() => _transport?.Dispose();

    private static void Run(int rank, Func<int, TargetModel> build, TaskCompletionSource<TargetModel> ready, Action replayed)
    {
        TargetModel model;
        try
        {
            model = build(rank);
        }
        catch (Exception e)
        {
            ready.SetException(e);
            return;
        }
        ready.SetResult(model);
        try
        {
            Serve(model, replayed);
        }
        catch (Exception e)
        {
            // Nothing may leave a rank's thread (it would end the process): the group fails, the coordinator reports why.
            try
            {
                model.TensorParallel?.Communicator.Abort(e);
            }
            catch (Exception)
            {
                // the group is failing anyway
            }
        }
        finally
        {
            model.Dispose();
        }
    }
}
