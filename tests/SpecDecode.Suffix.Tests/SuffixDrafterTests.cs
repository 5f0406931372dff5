namespace SpecDecode.Suffix.Tests;

/// <summary>The suffix drafter through <see cref="IDrafter"/>: lifecycle, cache, conversations, eviction, concurrency.</summary>
public sealed class SuffixDrafterTests
{
    private static readonly RequestId R1 = new(1), R2 = new(2), R3 = new(3);

    [Fact]
    public void DraftsFromItsOwnPromptAndFromEarlierResponses()
    {
        using IDrafter drafter = new SuffixDrafter();
        // The prompt repeats itself: the request's own tree predicts it.
        drafter.StartRequest(R1, [10, 11, 12, 13, 14, 10, 11], null);
        DraftTree own = drafter.Propose(R1, 8);
        Assert.Equal([12, 13], own.Tokens[..2].ToArray());
        drafter.Observe(R1, [12, 13, 14, 15, 16, 17]);
        drafter.EndRequest(R1);

        // A new request never saw 15 16 17 in its prompt, but R1's response did.
        drafter.StartRequest(R2, [1, 2, 14, 15], null);
        DraftTree global = drafter.Propose(R2, 8);
        Assert.Equal([16, 17], global.Tokens.ToArray());
        drafter.EndRequest(R2);
    }

    [Fact]
    public void OwnTreeWinsTies()
    {
        using var drafter = new SuffixDrafter();
        drafter.StartRequest(R1, [7], null);
        drafter.Observe(R1, [5, 6, 8, 2, 5, 6]);
        drafter.EndRequest(R1);
        // Own context says 5 6 -> 9 half the time; the global tree says 5 6 -> 8 half the time: equal scores.
        drafter.StartRequest(R2, [5, 6, 9, 1, 5, 6], null);
        Assert.Equal(0.5f, drafter.Propose(R2, 1).Score);
        Assert.Equal(9, drafter.Propose(R2, 1).Tokens[0]);
    }

    [Fact]
    public void ConversationContinuesItsTreeAndDraftsTheSame()
    {
        var rng = new Random(7);
        int[] turn1 = Enumerable.Range(0, 3000).Select(_ => rng.Next(50)).ToArray();
        int[] reply1 = Enumerable.Range(0, 200).Select(_ => rng.Next(50)).ToArray();
        int[] turn2 = [.. turn1, .. reply1, .. Enumerable.Range(0, 300).Select(_ => rng.Next(50))];

        using var reusing = new SuffixDrafter();
        var conv = new DraftRequestOptions { ConversationId = "task-1" };
        reusing.StartRequest(R1, turn1, conv);
        reusing.Observe(R1, reply1);
        reusing.EndRequest(R1);
        reusing.StartRequest(R2, turn2, conv);
        SuffixCacheStatistics stats = reusing.Cache.GetStatistics();
        Assert.Equal(1, stats.ConversationReuses);
        Assert.Equal(turn1.Length + reply1.Length, stats.PromptTokensReused);
        Assert.Equal(turn1.Length + 300, stats.PromptTokensInserted);
        Assert.Equal(turn2, reusing.Cache.GetContext(R2));
        reusing.Cache.CheckIntegrity();

        // The same calls without a conversation id rebuild the tree; drafts agree in score and length.
        using var rebuilding = new SuffixDrafter();
        rebuilding.StartRequest(R1, turn1, null);
        rebuilding.Observe(R1, reply1);
        rebuilding.EndRequest(R1);
        rebuilding.StartRequest(R2, turn2, null);
        for (int step = 0; step < 50; step++)
        {
            DraftTree a = reusing.Propose(R2, 16), b = rebuilding.Propose(R2, 16);
            Assert.Equal(b.Score, a.Score);
            Assert.Equal(b.Count, a.Count);
            int[] next = [rng.Next(50)];
            reusing.Observe(R2, next);
            rebuilding.Observe(R2, next);
        }
    }

    [Fact]
    public void ConversationWhosePromptDivergesIsRebuilt()
    {
        using var drafter = new SuffixDrafter();
        var conv = new DraftRequestOptions { ConversationId = "c" };
        drafter.StartRequest(R1, [1, 2, 3, 4], conv);
        drafter.Observe(R1, [5]);
        drafter.EndRequest(R1);
        drafter.StartRequest(R2, [1, 2, 9, 4, 5, 6], conv);
        SuffixCacheStatistics stats = drafter.Cache.GetStatistics();
        Assert.Equal(0, stats.ConversationReuses);
        Assert.Equal(1, stats.ConversationRebuilds);
        Assert.Equal([1, 2, 9, 4, 5, 6], drafter.Cache.GetContext(R2));
        drafter.Cache.CheckIntegrity();
    }

    [Fact]
    public void EvictionKeepsBoundsAndNeverBreaksAnActiveRequest()
    {
        var rng = new Random(11);
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions
        {
            MaxDepth = 8, MaxCachedResponses = 5, MaxCachedTokens = 400, MaxCachedConversations = 3, MaxConversationTokens = 2000,
        });
        var active = new List<RequestId>();
        long next = 0;
        for (int op = 0; op < 3000; op++)
        {
            int kind = rng.Next(10);
            if (kind < 2 || active.Count == 0)
            {
                var id = new RequestId(next++);
                int[] prompt = Enumerable.Range(0, rng.Next(0, 60)).Select(_ => rng.Next(6)).ToArray();
                drafter.StartRequest(id, prompt, new DraftRequestOptions { ConversationId = rng.Next(2) == 0 ? $"c{rng.Next(6)}" : null });
                active.Add(id);
            }
            else if (kind < 8)
            {
                RequestId id = active[rng.Next(active.Count)];
                DraftTree draft = drafter.Propose(id, rng.Next(0, 10));
                Assert.True(draft.Count <= 9);
                drafter.Observe(id, Enumerable.Range(0, rng.Next(1, 30)).Select(_ => rng.Next(6)).ToArray());
            }
            else
            {
                RequestId id = active[rng.Next(active.Count)];
                drafter.EndRequest(id);
                active.Remove(id);
            }
            if (op % 100 == 0)
            {
                drafter.Cache.CheckIntegrity();   // includes both bounds
                SuffixCacheStatistics s = drafter.Cache.GetStatistics();
                Assert.True(s.CachedConversations <= 3 && s.CachedConversationTokens <= 2000);
            }
        }
        Assert.True(drafter.Cache.GetStatistics().EvictedResponses > 0);
        foreach (RequestId id in active)
        {
            drafter.Propose(id, 4);
            drafter.Observe(id, [1, 2]);
            drafter.EndRequest(id);
        }
        drafter.Cache.CheckIntegrity();
    }

    [Fact]
    public void ManyThreadsDraftWhileOthersWrite()
    {
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedResponses = 20 });
        var rng = new Random(3);
        int[] common = Enumerable.Range(0, 500).Select(_ => rng.Next(30)).ToArray();
        Exception? failure = null;
        int drafts = 0;
        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 8 }, worker =>
        {
            try
            {
                var local = new Random(worker);
                for (int r = 0; r < 10; r++)
                {
                    var id = new RequestId(worker * 1000 + r);
                    drafter.StartRequest(id, common.AsSpan(local.Next(400)), null);
                    for (int step = 0; step < 60; step++)
                    {
                        DraftTree draft = drafter.Propose(id, 16);
                        Interlocked.Add(ref drafts, draft.IsEmpty ? 0 : 1);
                        int at = local.Next(common.Length - 4);
                        drafter.Observe(id, common.AsSpan(at, 3));
                    }
                    drafter.EndRequest(id);
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        Assert.Null(failure);
        Assert.True(drafts > 1000, $"only {drafts} non-empty drafts");
        drafter.Cache.CheckIntegrity();
    }

    /// <summary>Issue 16 item 9: CheckIntegrity read each request's tree without synchronising with the thread that owns
    /// the request, and reported hundreds of false failures per 10 s while requests ran.</summary>
    [Fact]
    public async Task CheckIntegrityWhileRequestsRun_ReportsNoFalseFailure()
    {
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedResponses = 8, MaxCachedConversations = 4 });
        var rng = new Random(5);
        int[] common = Enumerable.Range(0, 2000).Select(_ => rng.Next(40)).ToArray();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        Exception? workerFailure = null;
        Task[] workers = Enumerable.Range(0, 3).Select(worker => Task.Run(() =>
        {
            try
            {
                var local = new Random(worker);
                for (int r = 0; !stop.IsCancellationRequested; r++)
                {
                    var id = new RequestId(worker * 1_000_000 + r);
                    drafter.StartRequest(id, common.AsSpan(local.Next(1500)), new DraftRequestOptions { ConversationId = $"c{worker}-{r % 3}" });
                    for (int step = 0; step < 40; step++)
                    {
                        drafter.Propose(id, 16);
                        drafter.Observe(id, common.AsSpan(local.Next(common.Length - 8), 1 + local.Next(6)));
                    }
                    drafter.EndRequest(id);
                }
            }
            catch (Exception e)
            {
                workerFailure = e;
            }
        })).ToArray();
        int checks = 0;
        var failures = new List<string>();
        while (!stop.IsCancellationRequested)
        {
            try
            {
                drafter.Cache.CheckIntegrity();
            }
            catch (Exception e)
            {
                failures.Add(e.GetType().Name + ": " + e.Message);
            }
            checks++;
        }
        await Task.WhenAll(workers);
        Assert.Null(workerFailure);
        Assert.True(checks > 10, $"only {checks} checks ran");
        Assert.True(failures.Count == 0, $"{failures.Count} of {checks} checks failed while requests ran, e.g. {failures.FirstOrDefault()}");
        drafter.Cache.CheckIntegrity();
    }

    [Fact]
    public void AnEndedRequestsTreeIsFreedWhileItsResponseStaysCached()
    {
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedConversations = 0 });
        WeakReference tree = StartAndEnd(drafter);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        Assert.False(tree.IsAlive, "the cache still holds the ended request's context tree");
        Assert.Equal(1, drafter.Cache.GetStatistics().CachedResponses);

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        static WeakReference StartAndEnd(SuffixDrafter d)
        {
            d.StartRequest(R1, Enumerable.Range(0, 1000).ToArray(), null);
            var weak = new WeakReference(d.Cache.ContextTreeOf(R1));
            d.Observe(R1, [1, 2, 3]);
            d.EndRequest(R1);
            return weak;
        }
    }

    [Fact]
    public void LifecycleMisuseGetsTypedErrors()
    {
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { MaxBudget = 64 });
        Assert.Throws<UnknownRequestException>(() => drafter.Propose(R1, 4));
        Assert.Throws<UnknownRequestException>(() => drafter.Observe(R1, [1]));
        Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(R1));
        Assert.Throws<ArgumentException>(() => drafter.StartRequest(RequestId.Invalid, [1], null));
        drafter.StartRequest(R1, [1, 2, 1], null);
        Assert.Throws<DuplicateRequestException>(() => drafter.StartRequest(R1, [1], null));
        Assert.Throws<ArgumentOutOfRangeException>(() => drafter.Propose(R1, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => drafter.Propose(R1, 65));
        Assert.Throws<ArgumentOutOfRangeException>(() => drafter.Observe(R1, [3, -1]));
        Assert.Equal([1, 2, 1], drafter.Cache.GetContext(R1));    // the bad Observe appended nothing
        Assert.True(drafter.Propose(R1, 0).IsEmpty);
        drafter.EndRequest(R1);
        Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(R1));
        drafter.StartRequest(R1, [], null);                         // an ended id may start again; empty prompt is fine
        Assert.True(drafter.Propose(R1, 8).IsEmpty);
        drafter.Cache.CheckIntegrity();
        drafter.Dispose();
        Assert.Throws<ObjectDisposedException>(() => drafter.Propose(R1, 1));
    }

    [Theory]
    [InlineData(0, 1f, 0f, 0.1f)]
    [InlineData(64, -1f, 0f, 0.1f)]
    [InlineData(64, 1f, float.NaN, 0.1f)]
    [InlineData(64, 1f, 0f, 2f)]
    public void BadOptionsAreRefusedUpFront(int maxDepth, float factor, float offset, float minProb)
    {
        Assert.ThrowsAny<ArgumentOutOfRangeException>(() => new SuffixDrafter(new SuffixDrafterOptions
        {
            MaxDepth = maxDepth, MaxSpecFactor = factor, MaxSpecOffset = offset, MinTokenProbability = minProb,
        }));
    }
}
