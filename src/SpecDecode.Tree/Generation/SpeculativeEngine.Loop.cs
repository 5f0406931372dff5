using System.Diagnostics;

namespace SpecDecode.Tree;

public sealed partial class SpeculativeEngine
{
    private void Run()
    {
        while (true)
        {
            if (_active.Count == 0 && _prefilling.Count == 0 && _waiting.Count == 0 && _submitted.IsEmpty && !_stopping)
            {
                _wake.Wait();
                continue;
            }
            while (_submitted.TryDequeue(out EngineRequest? r))
            {
                _waiting.AddLast(r);
            }
            if (_stopping)
            {
                var disposed = new ObjectDisposedException(nameof(SpeculativeEngine), "The engine was disposed before the request finished.");
                foreach (EngineRequest r in _active.Concat(_prefilling).Concat(_waiting).ToArray())
                {
                    Fail(r, disposed);
                }
                return;
            }
            RemoveCancelled();
            try
            {
                Admit();
                PrefillChunks();
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
        for (LinkedListNode<EngineRequest>? node = _waiting.First; node is not null;)
        {
            LinkedListNode<EngineRequest>? next = node.Next;
            if (node.Value.CancelRequested)
            {
                Cancel(node.Value);
            }
            node = next;
        }
        foreach (EngineRequest r in _active.Concat(_prefilling).ToArray())
        {
            if (r.CancelRequested)
            {
                Cancel(r);
            }
        }
    }

    /// <summary>
    /// Moves waiting requests, first come first served, into free slots while the KV pool can hold their prompts: each
    /// starts from the longest cached prefix of its prompt (<see cref="TargetModel.ReusePrefix"/>: the conversation's
    /// earlier calls, a shared system prompt) and reserves the blocks for the rest, which <see cref="PrefillChunks"/> then
    /// computes. A request that does not fit waits, and so do the ones behind it. A preempted request resumes from its
    /// prompt and what it had generated.
    /// </summary>
    private void Admit()
    {
        while (_waiting.First is { } node && _freeSlots.Count > 0 && _active.Count + _prefilling.Count < _maxBatch)
        {
            EngineRequest r = node.Value;
            if (!r.Started)
            {
                r.RecentAccepted = _recentAccepted; // what drafts yielded lately, engine-wide: a new request starts from that
                try
                {
                    _drafter?.StartRequest(r.Id, r.Prompt, new DraftRequestOptions { ConversationId = r.ConversationId, Sampling = r.Sampling });
                }
                catch (Exception e)
                {
                    _waiting.Remove(node);
                    Fail(r, e);
                    continue;
                }
                r.Started = true;
            }
            int slot = _freeSlots.Pop();
            ReadOnlySpan<int> cached = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(r.Sequence)[..^1];
            int reused = _options.SkipPrefillForBenchmark ? 0 : _model.ReusePrefix(slot, cached);
            if (!_model.TryReserve(slot, cached.Length + 1))
            {
                // not enough free or evictable blocks for its prompt and first step: wait for running requests to finish
                _model.Truncate(slot, 0);
                _freeSlots.Push(slot);
                break;
            }
            _waiting.Remove(node);
            r.Slot = slot;
            r.Prefilled = reused;
            r.Root = r.Sequence[^1];
            if (r.AdmittedAt == 0)
            {
                r.AdmittedAt = Stopwatch.GetTimestamp();
                r.CachedPromptTokens = reused;
                _counters.AddAdmitted(r.Prompt.Length, reused);
            }
            _prefilling.Add(r);
        }
    }

    /// <summary>
    /// Prefills the admitted requests' prompts within the step's token budget (<see cref="SpeculativeEngineOptions.StepTokenBudget"/>
    /// minus the last verification step's rows, at least a sixteenth of it), oldest first, all chunks in the same
    /// forwards; a request whose prompt is complete joins this step's verification.
    /// </summary>
    private void PrefillChunks()
    {
        if (_prefilling.Count == 0)
        {
            return;
        }
        int budget = Math.Max(_options.StepTokenBudget / 16, _options.StepTokenBudget - (_active.Count == 0 ? 0 : _lastStepRows));
        var chunks = new List<(int Slot, int[] Tokens)>();
        var ready = new List<EngineRequest>();
        foreach (EngineRequest r in _prefilling)
        {
            int remaining = r.Sequence.Count - 1 - r.Prefilled;
            int take = Math.Min(remaining, budget);
            if (take > 0)
            {
                chunks.Add((r.Slot, r.Sequence.GetRange(r.Prefilled, take).ToArray()));
                budget -= take;
            }
            if (take == remaining)
            {
                ready.Add(r);
            }
            if (budget == 0)
            {
                break;
            }
        }
        if (chunks.Count > 0)
        {
            long start = Stopwatch.GetTimestamp();
            try
            {
                if (_options.SkipPrefillForBenchmark)
                {
                    foreach ((int slot, int[] tokens) in chunks)
                    {
                        _model.SetLengthForBenchmark(slot, _model.CachedLength(slot) + tokens.Length);
                    }
                }
                else
                {
                    _model.Prefill(chunks);
                }
            }
            catch (Exception e)
            {
                EngineLog.StepFailed(_logger, e, chunks.Count);
                foreach (EngineRequest r in _prefilling.Where(r => chunks.Any(c => c.Slot == r.Slot)).ToArray())
                {
                    Fail(r, e);
                }
                return;
            }
            long elapsed = Stopwatch.GetTimestamp() - start;
            _counters.AddPrefill(elapsed);
            foreach ((int slot, int[] tokens) in chunks)
            {
                EngineRequest r = _prefilling.First(p => p.Slot == slot);
                r.Prefilled += tokens.Length;
                r.PrefillTicks += elapsed * tokens.Length / chunks.Sum(c => c.Tokens.Length);
            }
        }
        foreach (EngineRequest r in ready)
        {
            _prefilling.Remove(r);
            _active.Add(r);
        }
    }

    /// <summary>
    /// Gives every running request the KV blocks for its step (the root and up to <paramref name="budgets"/>[i] draft
    /// rows), lowering a budget to what fits; when a request cannot get even its root's row, the most recently admitted
    /// other requests are preempted (prompts being prefilled first): their blocks go back to the pool, registered for
    /// reuse, and they wait at the head of the queue to resume. Returns false when <paramref name="budgets"/> must be
    /// recomputed (the batch changed).
    /// </summary>
    private bool ReserveStep(int[] budgets)
    {
        for (int i = 0; i < _active.Count; i++)
        {
            EngineRequest r = _active[i];
            int length = _model.CachedLength(r.Slot);
            for (int budget = budgets[i]; budget >= 0; budget = budget == 0 ? -1 : budget / 2)
            {
                if (_model.TryReserve(r.Slot, length + budget + 1))
                {
                    budgets[i] = budget;
                    break;
                }
            }
            if (_model.CachedLength(r.Slot) + 1 <= ReservedRows(r))
            {
                continue;
            }
            EngineRequest? victim = _prefilling.Count > 0 ? _prefilling[^1] : _active.Where(a => a != r).OrderBy(a => a.AdmittedAt).LastOrDefault();
            if (victim is null)
            {
                throw new KvCacheExhaustedException($"The KV cache cannot hold one more token of a request alone ({length} cached); raise TargetModelOptions.KvCacheTokens.");
            }
            Preempt(victim);
            return false;
        }
        return true;
    }

    /// <summary>Rows the request's blocks hold now.</summary>
    private int ReservedRows(EngineRequest r) => _model.KvBlocksOf(r.Slot).Count * _model.KvCache.BlockSize;

    /// <summary>Frees a running or prefilling request's slot and blocks (its content stays cached for its return) and puts
    /// it first in the queue; it keeps its drafter state, its tokens and its statistics.</summary>
    private void Preempt(EngineRequest r)
    {
        _active.Remove(r);
        _prefilling.Remove(r);
        int slot = r.Slot;
        r.Slot = -1;
        _model.Truncate(slot, 0);
        _freeSlots.Push(slot);
        r.Preemptions++;
        _counters.AddPreemption();
        _waiting.AddFirst(r);
    }

    private void Step()
    {
        long stepStart = Stopwatch.GetTimestamp();
        int[] budgets;
        do
        {
            budgets = new int[_active.Count];
            for (int i = 0; i < budgets.Length; i++)
            {
                budgets[i] = Budget(_active[i], budgets.Length);
            }
        }
        while (!ReserveStep(budgets));
        int batch = _active.Count;
        if (batch == 0)
        {
            return;
        }
        bool anyBudget = budgets.Any(b => b > 0);
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
        _lastStepRows = totalTokens;
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
        r.Sequence.AddRange(step.Tokens);
        if (r.FirstTokenAt == 0)
        {
            r.FirstTokenAt = Stopwatch.GetTimestamp();
            _counters.AddFirstToken(r.FirstTokenAt - r.SubmittedAt);
        }
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
        Forget(r);
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
        Forget(r);
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

    /// <summary>Takes the request out of the queue and the running lists.</summary>
    private void Forget(EngineRequest r)
    {
        _active.Remove(r);
        _prefilling.Remove(r);
        _waiting.Remove(r);
    }

    /// <summary>Frees the request's slot (its cached tokens stay in the prefix cache) and ends its drafter request.</summary>
    private void Release(EngineRequest r)
    {
        if (r.Slot >= 0)
        {
            int slot = r.Slot;
            r.Slot = -1;
            _freeSlots.Push(slot);
            _model.Truncate(slot, 0);
        }
        if (r.Started)
        {
            r.Started = false;
            _drafter?.EndRequest(r.Id);
        }
    }
}
