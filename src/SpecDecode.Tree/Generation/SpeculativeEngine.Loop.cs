using System.Diagnostics;

namespace SpecDecode.Tree;

public sealed partial class SpeculativeEngine
{
    /// <summary>The engine thread. Nothing may escape it: an exception leaving a thread ends the process.</summary>
    private void Run()
    {
        try
        {
            Serve();
        }
        catch (Exception e)
        {
            // A defect of the engine itself (every plug-in and forward error is handled below): stop taking requests, and
            // fail every request still held with this error rather than leave it waiting.
            lock (_submitGate)
            {
                if (!_stopping)
                {
                    _stopReason = new InvalidOperationException("The speculative engine failed and stopped: " + e.Message, e);
                    _stopping = true;
                }
            }
            EngineLog.StepFailed(_logger, e, _active.Count);
        }
        finally
        {
            Shutdown();
        }
    }

    private void Serve()
    {
        while (true)
        {
            if (_active.Count == 0 && _prefilling.Count == 0 && _waiting.Count == 0 && _submitted.IsEmpty && !_stopping)
            {
                _wake.Wait();
                continue;
            }
            if (_stopping)
            {
                return;
            }
            Drain();
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

    private void Drain()
    {
        while (_submitted.TryDequeue(out EngineRequest? r))
        {
            _waiting.AddLast(r);
        }
    }

    /// <summary>Ends every request still held, then the engine. Runs once, on the engine thread, after it saw
    /// <see cref="_stopping"/>: Submit enqueues under the gate Stop sets the flag under, so this drain sees every request
    /// that was not refused.</summary>
    private void Shutdown()
    {
        try
        {
            Drain();
            Exception reason = _stopReason ?? new ObjectDisposedException(nameof(SpeculativeEngine), "The engine was disposed before the request finished.");
            foreach (EngineRequest r in _active.Concat(_prefilling).Concat(_waiting).ToArray())
            {
                if (r.CancelRequested)
                {
                    Cancel(r);
                }
                else
                {
                    Fail(r, reason);
                }
            }
            _active.Clear();
            _prefilling.Clear();
            _waiting.Clear();
            EngineStatistics statistics = Statistics;
            EngineLog.EngineStopped(_logger, statistics.Completed, statistics.Batches, statistics.Totals.MeanAcceptanceLength);
        }
        catch (Exception)
        {
            // Fail, Cancel and the guarded logger do not throw; nothing may leave the engine thread in any case.
        }
        finally
        {
            _model.DetachEngine(this);
            _metrics.Dispose();
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
            if (r.AdmittedAt == 0 && !r.DrafterStarted)
            {
                r.RecentAccepted = _recentAccepted; // what drafts yielded lately, engine-wide: a new request starts from that
                if (_drafter is not null)
                {
                    try
                    {
                        _drafter.StartRequest(r.Id, r.Prompt, new DraftRequestOptions { ConversationId = r.ConversationId, Sampling = r.Sampling });
                        r.DrafterStarted = true;
                    }
                    catch (Exception e)
                    {
                        Fail(r, new PluginFailedException(_drafterName, "StartRequest", r.Id, null, e));
                        continue;
                    }
                }
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
        if (_freeSlots.Count == 0 && _active.Count == 0 && _prefilling.Count == 0 && _waiting.Count > 0)
        {
            // Every slot was lost to failed clean-ups: no request could ever be admitted, so none is left waiting.
            var noSlot = new InvalidOperationException("The engine has no usable KV-cache slot left (freeing slots failed; see the log); create a new engine.");
            while (_waiting.First is { } first)
            {
                Fail(first.Value, noSlot);
            }
        }
    }

    /// <summary>
    /// Prefills the admitted requests' prompts within the step's token budget (<see cref="SpeculativeEngineOptions.StepTokenBudget"/>
    /// minus the last verification step's rows, at least a sixteenth of it), oldest first, all chunks in the same
    /// forwards. A request whose prompt is complete gets its first token from the prefill's last row
    /// (<see cref="TargetModel.PrefillAndChoose"/>) and joins this step's verification with that token as its root. Benchmarks
    /// that skip prefill (<see cref="SpeculativeEngineOptions.SkipPrefillForBenchmark"/>) compute no logits: there the
    /// prompt's last token stays out of the prefill and is the first step's root.
    /// </summary>
    private void PrefillChunks()
    {
        if (_prefilling.Count == 0)
        {
            return;
        }
        bool choose = !_options.SkipPrefillForBenchmark;
        int held = choose ? 0 : 1; // the prompt's tokens the prefill leaves to the first step
        int budget = Math.Max(_options.StepTokenBudget / 16, _options.StepTokenBudget - (_active.Count == 0 ? 0 : _lastStepRows));
        var chunks = new List<(int Slot, int[] Tokens)>();
        var choices = new List<NextTokenChoice?>();
        var chunkOf = new List<EngineRequest>();
        var ready = new List<EngineRequest>();
        foreach (EngineRequest r in _prefilling)
        {
            int remaining = r.Sequence.Count - held - r.Prefilled;
            int take = Math.Min(remaining, budget);
            if (take > 0)
            {
                chunks.Add((r.Slot, r.Sequence.GetRange(r.Prefilled, take).ToArray()));
                chunkOf.Add(r);
                choices.Add(choose && take == remaining ? Choice(r) : null);
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
        int[]? chosen = null;
        long prefillTicks = -1;
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
                else if (choose)
                {
                    chosen = _model.PrefillAndChoose(chunks, choices);
                }
                else
                {
                    _model.Prefill(chunks);
                }
            }
            catch (Exception e)
            {
                EngineLog.StepFailed(_logger, e, chunks.Count);
                foreach (EngineRequest r in chunkOf)
                {
                    Fail(r, e);
                }
                return;
            }
            prefillTicks = Stopwatch.GetTimestamp() - start;
            int total = chunks.Sum(c => c.Tokens.Length);
            for (int i = 0; i < chunks.Count; i++)
            {
                chunkOf[i].Prefilled += chunks[i].Tokens.Length;
                chunkOf[i].PrefillTicks += prefillTicks * chunks[i].Tokens.Length / total;
            }
        }
        foreach (EngineRequest r in ready)
        {
            _prefilling.Remove(r);
            _active.Add(r);
            int i = chunkOf.IndexOf(r);
            if (chosen is not null && i >= 0 && chosen[i] >= 0)
            {
                try
                {
                    Process(r, DraftTree.Empty, new VerifiedStep(r.Slot, [], [chosen[i]]));
                }
                catch (Exception e)
                {
                    // The drafter's Observe or the tokenizer failed for this request (Process wraps those): it alone fails.
                    Fail(r, e);
                }
            }
        }
        if (prefillTicks >= 0)
        {
            // after the first tokens the prefill emitted: a metrics listener can tell them from the next step's (they come
            // before the prefill's duration record, a step's before its batch size)
            _counters.AddPrefill(prefillTicks);
        }
    }

    /// <summary>How the token after <paramref name="r"/>'s prompt is chosen: its sampling (greedy without), and for a
    /// benchmark request its recorded answer from what it has emitted on.</summary>
    private static NextTokenChoice Choice(EngineRequest r) =>
        new(r.IsGreedy ? Greedy : r.Sampling!, r.Forced is { } f ? f[(int)Math.Min(r.Emitted, f.Length)..] : null);

    /// <summary>
    /// Gives every running request the KV blocks for its step (the root and up to <paramref name="budgets"/>[i] draft
    /// rows), lowering a budget to what fits; when a request cannot get even its root's row, the most recently admitted
    /// other requests are preempted (prompts being prefilled first): their blocks go back to the pool, registered for
    /// reuse, and they wait at the head of the queue to resume. Returns false when <paramref name="budgets"/> must be
    /// recomputed (the batch changed).
    /// </summary>
    private bool ReserveStep(EngineRequest[] batch, int[] budgets)
    {
        for (int i = 0; i < batch.Length; i++)
        {
            EngineRequest r = batch[i];
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
        try
        {
            _model.Truncate(slot, 0);
            _freeSlots.Push(slot);
        }
        catch (Exception e)
        {
            EngineLog.CleanupFailed(_logger, e, r.Id.Value); // the slot is not used again
        }
        r.Preemptions++;
        _counters.AddPreemption();
        _waiting.AddFirst(r);
    }

    private void Step()
    {
        long stepStart = Stopwatch.GetTimestamp();
        EngineRequest[] batch;
        int[] budgets;
        Exception?[] failures;
        bool anyBudget;
        do
        {
            // every running request gets the KV blocks for its step, or the newest others are preempted for it
            batch = [.. _active];
            budgets = new int[batch.Length];
            failures = new Exception?[batch.Length];
            anyBudget = Budgets(batch, budgets, failures);
        }
        while (!ReserveStep(batch, budgets));
        if (batch.Length == 0)
        {
            return;
        }
        anyBudget = budgets.Any(b => b > 0);
        // A model drafter's forwards cost whether or not its drafts survive pruning: skip them when recent drafts did not
        // pay. Not for the hybrid, which stops asking its model by itself and whose cheap drafts cost next to nothing.
        if (anyBudget && _adaptive is not null && _drafter is IBatchDrafter and not HybridDrafter
            && !_adaptive.WorthDrafting(batch.Select((r, i) => (budgets[i], r.RecentAccepted)).ToArray()))
        {
            Array.Clear(budgets);
            anyBudget = false;
        }

        var trees = new DraftTree[batch.Length];
        Array.Fill(trees, DraftTree.Empty);
        long draftStart = Stopwatch.GetTimestamp();
        if (anyBudget)
        {
            Draft(batch, budgets, trees, failures);
        }
        long draftTicks = Stopwatch.GetTimestamp() - draftStart;
        if (failures.Any(f => f is not null))
        {
            // A plug-in failed for some requests: they fail, the others are verified as usual.
            int[] keep = Enumerable.Range(0, batch.Length).Where(i => failures[i] is null).ToArray();
            for (int i = 0; i < batch.Length; i++)
            {
                if (failures[i] is { } failure)
                {
                    Fail(batch[i], failure);
                }
            }
            batch = [.. keep.Select(i => batch[i])];
            trees = [.. keep.Select(i => trees[i])];
            if (batch.Length == 0)
            {
                return;
            }
        }
        int size = batch.Length;
        // Which requests got a draft before pruning: a draft pruned away entirely still counts as drafting that paid nothing.
        bool[] drafted = trees.Select(t => !t.IsEmpty).ToArray();
        double expected = 0;
        if (_adaptive is not null && trees.Any(t => !t.IsEmpty))
        {
            DraftTree[] selected = _adaptive.Select(trees, out expected);
            for (int i = 0; i < size; i++)
            {
                KeepDistributions(trees[i], selected[i]);
            }
            trees = selected;
        }

        var inputs = new TreeInput[size];
        int widest = 0;
        for (int i = 0; i < size; i++)
        {
            inputs[i] = new TreeInput(batch[i].Slot, batch[i].Root, trees[i]);
            widest = Math.Max(widest, trees[i].Count + 1);
        }
        // what the step computes: its rows where the tree kernels take it ragged, else every sequence padded to the widest tree
        int totalTokens = _adaptive?.StepRows(trees) ?? size * widest;
        _lastStepRows = totalTokens;
        long verifyStart = Stopwatch.GetTimestamp();
        VerifiedStep[] steps = Verify(batch, inputs);
        long verifyTicks = Stopwatch.GetTimestamp() - verifyStart;

        int accepted = 0;
        for (int i = 0; i < size; i++)
        {
            EngineRequest r = batch[i];
            r.DraftingTicks += draftTicks / size;
            r.VerificationTicks += verifyTicks;
            accepted += steps[i].AcceptedCount;
            if (drafted[i])
            {
                r.RecentAccepted = 0.8 * r.RecentAccepted + 0.2 * steps[i].AcceptedCount;
                _recentAccepted = 0.95 * _recentAccepted + 0.05 * steps[i].AcceptedCount;
            }
            try
            {
                Process(r, trees[i], steps[i]);
            }
            catch (Exception e)
            {
                // The drafter's Observe or the tokenizer failed for this request (Process wraps those): it alone fails.
                Fail(r, e);
            }
        }
        _adaptive?.ObserveStep(size, totalTokens, Stopwatch.GetElapsedTime(0, verifyTicks).TotalSeconds,
            anyBudget, Stopwatch.GetElapsedTime(0, draftTicks).TotalSeconds, expected, accepted);
        _counters.AddStep(size, Stopwatch.GetTimestamp() - stepStart, draftTicks, verifyTicks);
    }

    /// <summary>Each request's draft budget; a policy (or drafter budget) that throws fails the request it was asked
    /// about. True when any budget is above 0.</summary>
    private bool Budgets(EngineRequest[] batch, int[] budgets, Exception?[] failures)
    {
        if (_drafter is null)
        {
            return false;
        }
        int drafterMax;
        try
        {
            drafterMax = _drafter.MaxBudget;
        }
        catch (Exception e)
        {
            for (int i = 0; i < batch.Length; i++)
            {
                failures[i] = new PluginFailedException(_drafterName, "MaxBudget", batch[i].Id, null, e);
            }
            return false;
        }
        bool any = false;
        for (int i = 0; i < batch.Length; i++)
        {
            EngineRequest r = batch[i];
            int cached = _model.CachedLength(r.Slot);
            int room = _model.Capacity - cached - 1;
            int remaining = r.MaxNewTokens - r.Generated.Count - 1;
            int budget = Math.Min(Math.Min(_options.MaxDraftTokens, drafterMax), Math.Min(room, remaining));
            if (_options.Policy is { } policy && budget > 0)
            {
                try
                {
                    budget = Math.Min(budget, policy.ChooseBudget(new SpeculationInput(r.Id, batch.Length, cached + 1, r.RecentAccepted)));
                }
                catch (Exception e)
                {
                    failures[i] = new PluginFailedException("speculation policy", "ChooseBudget", r.Id, null, e);
                    continue;
                }
            }
            budgets[i] = Math.Max(0, budget);
            any |= budgets[i] > 0;
        }
        return any;
    }

    /// <summary>Asks the drafter for every request with a budget. A call that throws, or a draft the engine cannot verify
    /// (null, over its budget, a token outside the target's vocabulary), fails the requests it concerns.</summary>
    private void Draft(EngineRequest[] batch, int[] budgets, DraftTree[] trees, Exception?[] failures)
    {
        // the requests the drafter is asked about: a budget, and no plug-in failure so far
        int[] asked = Enumerable.Range(0, batch.Length).Where(i => budgets[i] > 0 && failures[i] is null).ToArray();
        if (_drafter is IBatchDrafter batchDrafter)
        {
            IReadOnlyList<DraftTree>? drafts = null;
            Exception? error = null;
            try
            {
                drafts = batchDrafter.ProposeBatch([.. asked.Select(i => new DraftQuery(batch[i].Id, budgets[i]))]);
            }
            catch (Exception e)
            {
                error = e;
            }
            string? problem = error is null && (drafts is null || drafts.Count != asked.Length)
                ? $"it returned {drafts?.Count.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null"} drafts for {asked.Length} queries"
                : null;
            for (int k = 0; k < asked.Length; k++)
            {
                int i = asked[k];
                if (error is not null || problem is not null)
                {
                    failures[i] = new PluginFailedException(_drafterName, "ProposeBatch", batch[i].Id, problem, error);
                }
                else
                {
                    Accept(i, drafts![k], "ProposeBatch");
                }
            }
            return;
        }
        var proposed = new DraftTree?[batch.Length];
        void ProposeFor(int i)
        {
            try
            {
                proposed[i] = _drafter!.Propose(batch[i].Id, budgets[i]);
            }
            catch (Exception e)
            {
                failures[i] = new PluginFailedException(_drafterName, "Propose", batch[i].Id, null, e);
            }
        }
        // A large batch drafts on several cores (ParallelProposals). Each request's outcome lands in its own element, so
        // one that throws still fails only its own request.
        ParallelProposals.ForEach(asked, ProposeFor);
        foreach (int i in asked)
        {
            if (failures[i] is null)
            {
                Accept(i, proposed[i], "Propose");
            }
        }

        void Accept(int i, DraftTree? tree, string operation)
        {
            if (DraftProblem(tree, budgets[i]) is { } problem)
            {
                failures[i] = new PluginFailedException(_drafterName, operation, batch[i].Id, problem);
            }
            else
            {
                trees[i] = tree!;
            }
        }
    }

    /// <summary>Why the engine cannot verify <paramref name="tree"/>, or null when it can. The tree's structure was
    /// checked when it was built (<see cref="DraftTree"/>); its size and tokens depend on the request and the model.</summary>
    private string? DraftProblem(DraftTree? tree, int budget)
    {
        if (tree is null)
        {
            return "it returned null instead of a draft tree (DraftTree.Empty means no draft)";
        }
        if (tree.Count > budget)
        {
            return $"it proposed {tree.Count} nodes for a budget of {budget}";
        }
        int vocab = _model.Config.VocabSize;
        foreach (int token in tree.Tokens)
        {
            if ((uint)token >= (uint)vocab)
            {
                return $"it proposed token {token}, outside the target's vocabulary (0 .. {vocab - 1})";
            }
        }
        return null;
    }

    /// <summary>Hands a request its step's tokens, and completes it when it finished.</summary>
    private void Process(EngineRequest r, DraftTree tree, VerifiedStep step)
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
        if (_drafter is not null)
        {
            try
            {
                _drafter.Observe(r.Id, step.Tokens);
            }
            catch (Exception e)
            {
                throw new PluginFailedException(_drafterName, "Observe", r.Id, null, e);
            }
        }

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
        string text;
        try
        {
            text = r.Text.Append(fresh);
            if (r.Text.Stopped)
            {
                finish = FinishReason.Stop;
            }
            if (finish is null && _model.CachedLength(r.Slot) >= _model.Capacity)
            {
                finish = FinishReason.ContextFull;
            }
            if (finish is not null)
            {
                text += r.Text.Flush();
            }
        }
        catch (Exception e)
        {
            throw new PluginFailedException("tokenizer", "Decode", r.Id, null, e);
        }
        if (finish is FinishReason reason)
        {
            Complete(r, reason, text, fresh);
            return;
        }
        if (r.Stream is not null && (text.Length > 0 || fresh.Count > 0))
        {
            r.Stream.Writer.TryWrite(new GenerationChunk(text, fresh, null));
        }
    }

    private void Complete(EngineRequest r, FinishReason reason, string text, List<int> fresh)
    {
        Forget(r); // before the result is signalled, as Fail and Cancel do: a caller who sees it must not count it active
        if (!r.TryFinish())
        {
            return;
        }
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
        if (!r.TryFinish())
        {
            return;
        }
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
        if (!r.TryFinish())
        {
            return;
        }
        Release(r);
        _counters.AddCompleted(null, failed: true);
        EngineLog.RequestFailed(_logger, r.Id.Value, r.Generated.Count, error.Message);
        r.Stream?.Writer.TryComplete(error);
        r.Completion.TrySetException(error);
        if (r.Stream is not null)
        {
            // A stream's reader gets the error from the channel and never sees this task: mark its exception observed, or
            // TaskScheduler.UnobservedTaskException would report every failed stream as an escaped error.
            _ = r.Completion.Task.Exception;
        }
        r.Registration.Dispose();
    }

    /// <summary>Takes the request out of the queue and the running lists.</summary>
    private void Forget(EngineRequest r)
    {
        _active.Remove(r);
        _prefilling.Remove(r);
        _waiting.Remove(r);
    }

    /// <summary>Frees the request's slot (its cached tokens stay in the prefix cache) and ends its drafter request. Never throws: a drafter whose EndRequest throws is
    /// logged and the request keeps its outcome; a slot that cannot be freed is logged and not used again.</summary>
    private void Release(EngineRequest r)
    {
        if (r.Slot >= 0)
        {
            int slot = r.Slot;
            r.Slot = -1;
            try
            {
                _model.Truncate(slot, 0);
                _freeSlots.Push(slot);
            }
            catch (Exception e)
            {
                EngineLog.CleanupFailed(_logger, e, r.Id.Value);
            }
        }
        if (r.DrafterStarted)
        {
            r.DrafterStarted = false;
            try
            {
                _drafter!.EndRequest(r.Id);
            }
            catch (Exception e)
            {
                EngineLog.PluginFailed(_logger, e, _drafterName, "EndRequest", r.Id.Value);
            }
        }
    }
}
