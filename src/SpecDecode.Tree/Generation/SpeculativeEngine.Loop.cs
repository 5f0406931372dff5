using System.Diagnostics;

namespace SpecDecode.Tree;

public sealed partial class SpeculativeEngine
{
    private void Run()
    {
        while (true)
        {
            if (_active.Count == 0 && _waiting.Count == 0 && _submitted.IsEmpty && !_stopping)
            {
                _wake.Wait();
                continue;
            }
            while (_submitted.TryDequeue(out EngineRequest? r))
            {
                _waiting.Enqueue(r);
            }
            if (_stopping)
            {
                var disposed = new ObjectDisposedException(nameof(SpeculativeEngine), "The engine was disposed before the request finished.");
                foreach (EngineRequest r in _active.Concat(_waiting).ToArray())
                {
                    Fail(r, disposed);
                }
                return;
            }
            RemoveCancelled();
            try
            {
                Admit();
                if (_active.Count > 0)
                {
                    Step();
                }
            }
            catch (Exception e)
            {
                // A failed forward (out of memory, a native error) fails the requests of that step; the engine goes on.
                EngineLog.StepFailed(_logger, e, _active.Count);
                foreach (EngineRequest r in _active.ToArray())
                {
                    Fail(r, e);
                }
            }
        }
    }

    private void RemoveCancelled()
    {
        if (_waiting.Any(r => r.CancelRequested))
        {
            EngineRequest[] keep = [.. _waiting];
            _waiting.Clear();
            foreach (EngineRequest r in keep)
            {
                if (r.CancelRequested)
                {
                    Cancel(r);
                }
                else
                {
                    _waiting.Enqueue(r);
                }
            }
        }
        foreach (EngineRequest r in _active.ToArray())
        {
            if (r.CancelRequested)
            {
                Cancel(r);
            }
        }
    }

    private void Admit()
    {
        List<EngineRequest>? admitted = null;
        while (_waiting.Count > 0 && _freeSlots.Count > 0 && _active.Count + (admitted?.Count ?? 0) < _maxBatch)
        {
            EngineRequest r = _waiting.Dequeue();
            r.Slot = _freeSlots.Pop();
            r.AdmittedAt = Stopwatch.GetTimestamp();
            r.Root = r.Prompt[^1];
            r.RecentAccepted = _recentAccepted; // what drafts yielded lately, engine-wide: a new request starts from that
            try
            {
                _drafter?.StartRequest(r.Id, r.Prompt, new DraftRequestOptions { ConversationId = r.ConversationId, Sampling = r.Sampling });
            }
            catch (Exception e)
            {
                _freeSlots.Push(r.Slot);
                r.Slot = -1;
                Fail(r, e);
                continue;
            }
            (admitted ??= []).Add(r);
        }
        if (admitted is null)
        {
            return;
        }
        long start = Stopwatch.GetTimestamp();
        try
        {
            if (_options.SkipPrefillForBenchmark)
            {
                foreach (EngineRequest r in admitted)
                {
                    _model.SetLengthForBenchmark(r.Slot, r.Prompt.Length - 1);
                }
            }
            else
            {
                _model.Prefill(admitted.Select(r => (r.Slot, r.Prompt[..^1])).ToList());
            }
        }
        catch (Exception e)
        {
            EngineLog.StepFailed(_logger, e, admitted.Count);
            foreach (EngineRequest r in admitted)
            {
                _active.Add(r); // so that Fail frees the slot and ends the drafter's request
                Fail(r, e);
            }
            return;
        }
        long elapsed = Stopwatch.GetTimestamp() - start;
        _counters.AddPrefill(elapsed, admitted.Sum(r => (long)r.Prompt.Length));
        foreach (EngineRequest r in admitted)
        {
            r.PrefillTicks = elapsed;
            _active.Add(r);
        }
    }

    private void Step()
    {
        long stepStart = Stopwatch.GetTimestamp();
        int batch = _active.Count;
        var budgets = new int[batch];
        bool anyBudget = false;
        for (int i = 0; i < batch; i++)
        {
            budgets[i] = Budget(_active[i], batch);
            anyBudget |= budgets[i] > 0;
        }
        // A model drafter's forwards cost whether or not its drafts survive pruning: skip them when recent drafts did not
        // pay. Not for the hybrid, which stops asking its model by itself and whose cheap drafts cost next to nothing.
        if (anyBudget && _adaptive is not null && _drafter is IBatchDrafter and not HybridDrafter
            && !_adaptive.WorthDrafting(_active.Select((r, i) => (budgets[i], r.RecentAccepted)).ToArray()))
        {
            Array.Clear(budgets);
            anyBudget = false;
        }

        var trees = new DraftTree[batch];
        Array.Fill(trees, DraftTree.Empty);
        long draftStart = Stopwatch.GetTimestamp();
        if (anyBudget)
        {
            Draft(budgets, trees);
        }
        // Which requests got a draft before pruning: a draft pruned away entirely still counts as drafting that paid nothing.
        bool[] drafted = trees.Select(t => !t.IsEmpty).ToArray();
        long draftTicks = Stopwatch.GetTimestamp() - draftStart;
        double expected = 0;
        if (_adaptive is not null && trees.Any(t => !t.IsEmpty))
        {
            DraftTree[] selected = _adaptive.Select(trees, out expected);
            for (int i = 0; i < batch; i++)
            {
                KeepDistributions(trees[i], selected[i]);
            }
            trees = selected;
        }

        var inputs = new TreeInput[batch];
        int widest = 0;
        for (int i = 0; i < batch; i++)
        {
            inputs[i] = new TreeInput(_active[i].Slot, _active[i].Root, trees[i]);
            widest = Math.Max(widest, trees[i].Count + 1);
        }
        int totalTokens = batch * widest; // what the step computes: every sequence is padded to the widest tree
        long verifyStart = Stopwatch.GetTimestamp();
        VerifiedStep[] steps = Verify(inputs);
        long verifyTicks = Stopwatch.GetTimestamp() - verifyStart;

        int accepted = 0;
        var finished = new List<EngineRequest>();
        for (int i = 0; i < batch; i++)
        {
            EngineRequest r = _active[i];
            r.DraftingTicks += draftTicks / batch;
            r.VerificationTicks += verifyTicks;
            accepted += steps[i].AcceptedCount;
            if (drafted[i])
            {
                r.RecentAccepted = 0.8 * r.RecentAccepted + 0.2 * steps[i].AcceptedCount;
                _recentAccepted = 0.95 * _recentAccepted + 0.05 * steps[i].AcceptedCount;
            }
            if (Process(r, trees[i], steps[i]))
            {
                finished.Add(r);
            }
        }
        foreach (EngineRequest r in finished)
        {
            _active.Remove(r);
        }
        _adaptive?.ObserveStep(batch, totalTokens, Stopwatch.GetElapsedTime(0, verifyTicks).TotalSeconds,
            anyBudget, Stopwatch.GetElapsedTime(0, draftTicks).TotalSeconds, expected, accepted);
        _counters.AddStep(batch, Stopwatch.GetTimestamp() - stepStart, draftTicks, verifyTicks);
    }

    private int Budget(EngineRequest r, int batch)
    {
        if (_drafter is null)
        {
            return 0;
        }
        int cached = _model.CachedLength(r.Slot);
        int room = _model.Capacity - cached - 1;
        int remaining = r.MaxNewTokens - r.Generated.Count - 1;
        int budget = Math.Min(Math.Min(_options.MaxDraftTokens, _drafter.MaxBudget), Math.Min(room, remaining));
        if (_options.Policy is { } policy && budget > 0)
        {
            budget = Math.Min(budget, policy.ChooseBudget(new SpeculationInput(r.Id, batch, cached + 1, r.RecentAccepted)));
        }
        return Math.Max(0, budget);
    }

    private void Draft(int[] budgets, DraftTree[] trees)
    {
        if (_drafter is IBatchDrafter batchDrafter)
        {
            var queries = new List<DraftQuery>();
            var rows = new List<int>();
            for (int i = 0; i < budgets.Length; i++)
            {
                if (budgets[i] > 0)
                {
                    queries.Add(new DraftQuery(_active[i].Id, budgets[i]));
                    rows.Add(i);
                }
            }
            IReadOnlyList<DraftTree> drafts = batchDrafter.ProposeBatch(queries);
            for (int k = 0; k < rows.Count; k++)
            {
                trees[rows[k]] = drafts[k];
            }
            return;
        }
        for (int i = 0; i < budgets.Length; i++)
        {
            if (budgets[i] > 0)
            {
                trees[i] = _drafter!.Propose(_active[i].Id, budgets[i]);
            }
        }
    }

    /// <summary>Hands a request its step's tokens; true when it finished.</summary>
    private bool Process(EngineRequest r, DraftTree tree, VerifiedStep step)
    {
        r.Steps++;
        if (!tree.IsEmpty)
        {
            r.Drafts++;
            r.DraftTokens += tree.Count;
            r.AcceptedTokens += step.AcceptedCount;
            r.RecordAccepted(step.AcceptedCount);
        }
        r.Root = step.Bonus;
        _drafter?.Observe(r.Id, step.Tokens);

        // Tokens past a stop token or past the length limit were verified but are not emitted: they count neither as
        // generated tokens nor in tokens per step (the acceptance counters above keep what the verifier accepted).
        var fresh = new List<int>(step.Tokens.Length);
        FinishReason? finish = null;
        int consumed = 0;
        foreach (int token in step.Tokens)
        {
            consumed++;
            if (r.StopIds.Contains(token))
            {
                finish = FinishReason.Stop;
                break;
            }
            r.Generated.Add(token);
            fresh.Add(token);
            if (r.Generated.Count >= r.MaxNewTokens)
            {
                finish = FinishReason.Length;
                break;
            }
        }
        r.Emitted += consumed;
        _counters.AddRequestStep(tree.IsEmpty ? 0 : tree.Count, step.AcceptedCount, consumed);
        string text = r.Text.Append(fresh);
        if (r.Text.Stopped)
        {
            finish = FinishReason.Stop;
        }
        if (finish is null && _model.CachedLength(r.Slot) >= _model.Capacity)
        {
            finish = FinishReason.ContextFull;
        }
        if (finish is FinishReason reason)
        {
            Complete(r, reason, text + r.Text.Flush(), fresh);
            return true;
        }
        if (r.Stream is not null && (text.Length > 0 || fresh.Count > 0))
        {
            r.Stream.Writer.TryWrite(new GenerationChunk(text, fresh, null));
        }
        return false;
    }

    private void Complete(EngineRequest r, FinishReason reason, string text, List<int> fresh)
    {
        Release(r);
        var result = new GenerationResult(r.Text.Text, r.Generated.ToArray(), reason, r.Statistics(Stopwatch.GetTimestamp()));
        _counters.AddCompleted(reason);
        EngineLog.RequestCompleted(_logger, r.Id.Value, reason, result.Statistics.PromptTokens, result.Statistics.GeneratedTokens,
            result.Statistics.Steps, result.Statistics.MeanAcceptanceLength);
        if (r.Stream is not null)
        {
            r.Stream.Writer.TryWrite(new GenerationChunk(text, fresh, result));
            r.Stream.Writer.TryComplete();
        }
        r.Completion.TrySetResult(result);
        r.Registration.Dispose();
    }

    private void Cancel(EngineRequest r)
    {
        _active.Remove(r);
        Release(r);
        _counters.AddCompleted(null);
        EngineLog.RequestCancelled(_logger, r.Id.Value, r.Generated.Count);
        var cancelled = new OperationCanceledException("The request was cancelled.", r.CancellationToken);
        r.Stream?.Writer.TryComplete(cancelled);
        r.Completion.TrySetCanceled(r.CancellationToken);
        r.Registration.Dispose();
    }

    private void Fail(EngineRequest r, Exception error)
    {
        _active.Remove(r);
        try
        {
            Release(r);
        }
        catch (Exception)
        {
            // The request fails with the original error; a second one while cleaning up adds nothing for the caller.
        }
        _counters.AddCompleted(null, failed: true);
        EngineLog.RequestFailed(_logger, r.Id.Value, r.Generated.Count, error.Message);
        r.Stream?.Writer.TryComplete(error);
        r.Completion.TrySetException(error);
        r.Registration.Dispose();
    }

    /// <summary>Ends the drafter's request and frees the slot (for a request that holds one).</summary>
    private void Release(EngineRequest r)
    {
        if (r.Slot < 0)
        {
            return;
        }
        int slot = r.Slot;
        r.Slot = -1;
        _freeSlots.Push(slot);
        _model.Truncate(slot, 0);
        _drafter?.EndRequest(r.Id);
    }
}
