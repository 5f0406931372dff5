using System.Globalization;

namespace SpecDecode.Suffix.Tests;

public sealed class PromptLookupDrafterTests
{
    private static readonly RequestId R1 = new(1);

    // ---------------------------------------------------------------- drafts on hand-made contexts

    [Theory]
    // Longest n-gram wins: "1 2 3" matches at the start (-> 7 ...), although "2 3" and "3" match more recently (-> 8).
    [InlineData("1 2 3 7 5 2 3 8 1 2 3", 1, 4, 3, "7 5 2", 3)]
    // ... unless MaxNgram forbids it: then the most recent "2 3" wins.
    [InlineData("1 2 3 7 5 2 3 8 1 2 3", 1, 2, 3, "8 1 2", 2)]
    // Most recent occurrence wins among equally long matches.
    [InlineData("1 2 5 1 2 6 1 2", 1, 4, 2, "6 1", 2)]
    [InlineData("4 9 4 8 4", 1, 4, 8, "8 4", 1)]
    // Budget cut.
    [InlineData("1 2 3 4 5 6 1", 1, 4, 3, "2 3 4", 1)]
    [InlineData("1 2 3 4 5 6 1", 1, 4, 1, "2", 1)]
    // The draft stops at the end of the context, whatever the budget.
    [InlineData("1 2 3 4 5 6 1", 1, 4, 100, "2 3 4 5 6 1", 1)]
    // No match: empty.
    [InlineData("1 2 3 4", 1, 4, 5, "", 0)]
    [InlineData("", 1, 4, 5, "", 0)]
    [InlineData("7", 1, 4, 5, "", 0)]
    // The suffix never matches itself: "2 3" occurs only at the very end, so the shorter "3" is used ...
    [InlineData("7 3 1 2 3", 1, 4, 5, "1 2 3", 1)]
    // ... and with MinNgram 2 that shorter match is not allowed: empty.
    [InlineData("7 3 1 2 3", 2, 4, 5, "", 0)]
    // Overlapping occurrence: "1 1 1" ends one token before the end and proposes the last token.
    [InlineData("1 1 1 1", 1, 4, 5, "1", 3)]
    [InlineData("1 1 1 1 1 1", 1, 3, 5, "1", 3)]
    // MinNgram = MaxNgram: exactly that length.
    [InlineData("5 6 9 6 7 5 6", 2, 2, 4, "9 6 7 5", 2)]
    [InlineData("5 6 9 6 7 5 6", 3, 3, 4, "", 0)]
    public void Propose_MatchesHandMadeContexts(string context, int minNgram, int maxNgram, int budget, string expected,
        int expectedMatchLength)
    {
        using var drafter = new PromptLookupDrafter(new PromptLookupDrafterOptions { MinNgram = minNgram, MaxNgram = maxNgram });
        drafter.StartRequest(R1, Parse(context), null);

        DraftTree draft = drafter.Propose(R1, budget);

        Assert.Equal(Parse(expected), draft.Tokens.ToArray());
        Assert.Equal(expectedMatchLength, draft.MatchLength);
        AssertChainOfOnes(draft);
        drafter.CheckIntegrity();
    }

    [Theory]
    // The same hand-made contexts, built token by token through Observe instead of all in the prompt.
    [InlineData("1 2 3 7 5 2 3 8 1 2 3", 3, "7 5 2", 3)]
    [InlineData("1 2 5 1 2 6 1 2", 2, "6 1", 2)]
    [InlineData("7 3 1 2 3", 5, "1 2 3", 1)]
    [InlineData("1 2 3 4", 5, "", 0)]
    public void Propose_SameWhenContextArrivesThroughObserve(string context, int budget, string expected, int expectedMatchLength)
    {
        int[] tokens = Parse(context);
        for (int promptLength = 0; promptLength <= tokens.Length; promptLength++)
        {
            using var drafter = new PromptLookupDrafter();
            drafter.StartRequest(R1, tokens.AsSpan(0, promptLength), null);
            for (int i = promptLength; i < tokens.Length; i++)
            {
                drafter.Observe(R1, tokens.AsSpan(i, 1));
            }

            DraftTree draft = drafter.Propose(R1, budget);

            Assert.Equal(Parse(expected), draft.Tokens.ToArray());
            Assert.Equal(expectedMatchLength, draft.MatchLength);
            drafter.CheckIntegrity();
        }
    }

    [Theory]
    // Rule min(cap, floor(m * factor + offset)) on top of the budget.
    [InlineData(10, 1f, 0f, 8, "1 2 3 9 1 2 3", "9 1 2", 3)]   // allows 3 for m = 3: the whole continuation
    [InlineData(10, 0.5f, 0f, 8, "1 2 3 9 1 2 3", "9", 3)]     // floor(1.5) = 1
    [InlineData(2, 1f, 5f, 8, "1 2 3 9 1 2 3", "9 1", 3)]      // capped at 2
    [InlineData(10, 1f, 0f, 2, "1 2 3 9 1 2 3", "9 1", 3)]     // budget below the rule
    [InlineData(10, 0f, 0f, 8, "1 2 3 9 1 2 3", "", 0)]        // the rule allows nothing: empty
    [InlineData(10, 1f, -3f, 8, "5 1 2 3 4 6 1", "", 0)]       // m = 1 gives floor(-2) -> 0: empty, no shorter try
    public void Propose_HonoursLengthRule(int maxSpecTokens, float factor, float offset, int budget, string context,
        string expected, int expectedMatchLength)
    {
        var options = new PromptLookupDrafterOptions { LengthRule = new MatchLengthRule(maxSpecTokens, factor, offset) };
        using var drafter = new PromptLookupDrafter(options);
        drafter.StartRequest(R1, Parse(context), null);

        DraftTree draft = drafter.Propose(R1, budget);

        Assert.Equal(Parse(expected), draft.Tokens.ToArray());
        Assert.Equal(expectedMatchLength, draft.MatchLength);
    }

    [Fact]
    public void Propose_BudgetZero_IsEmptySingleton()
    {
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 1], null);

        Assert.Same(DraftTree.Empty, drafter.Propose(R1, 0));
    }

    [Fact]
    public void Propose_AcceptsMaxBudget()
    {
        using var drafter = new PromptLookupDrafter();
        int[] prompt = Enumerable.Range(0, 3000).Select(i => i % 1500).ToArray();
        drafter.StartRequest(R1, prompt, null);

        DraftTree draft = drafter.Propose(R1, drafter.MaxBudget);

        Assert.Equal(drafter.MaxBudget, draft.Count);
        Assert.Equal(4, draft.MatchLength);
        Assert.Equal(prompt.AsSpan(1500, drafter.MaxBudget).ToArray(), draft.Tokens.ToArray());
    }

    [Fact]
    public void Propose_DoesNotChangeState_AndRequestsAreIndependent()
    {
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 3, 1, 2], null);
        drafter.StartRequest(new RequestId(2), [1, 2, 4, 1, 2], new DraftRequestOptions { ConversationId = "c" });

        Assert.Equal([3, 1, 2], drafter.Propose(R1, 5).Tokens.ToArray());
        Assert.Equal([3, 1, 2], drafter.Propose(R1, 5).Tokens.ToArray());
        Assert.Equal([4, 1, 2], drafter.Propose(new RequestId(2), 5).Tokens.ToArray());
        Assert.Equal(5, drafter.ContextLength(R1));
    }

    [Fact]
    public void Defaults_AreOneToFour_NoRule()
    {
        using var drafter = new PromptLookupDrafter();

        Assert.Equal("prompt-lookup", drafter.Name);
        Assert.Equal(1024, drafter.MaxBudget);
        Assert.Equal(1, drafter.Options.MinNgram);
        Assert.Equal(4, drafter.Options.MaxNgram);
        Assert.Null(drafter.Options.LengthRule);
        Assert.Equal(new PromptLookupDrafterOptions(), new PromptLookupDrafter(null).Options);
    }

    [Fact]
    public void DefaultDrafter_UsesMaxNgramFour()
    {
        // A 5-gram match exists (-> 9) but the default drafter only sees 4 tokens back, where "2 3 4 5" last
        // occurred before 8.
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 3, 4, 5, 9, 0, 2, 3, 4, 5, 8, 0, 1, 2, 3, 4, 5], null);

        DraftTree draft = drafter.Propose(R1, 1);

        Assert.Equal([8], draft.Tokens.ToArray());
        Assert.Equal(4, draft.MatchLength);
    }

    // ---------------------------------------------------------------- against a brute-force reference

    [Theory]
    [InlineData(1, 4, false, 3, ulong.MaxValue)]
    [InlineData(1, 4, false, 8, ulong.MaxValue)]
    [InlineData(2, 5, false, 4, ulong.MaxValue)]
    [InlineData(3, 3, false, 3, ulong.MaxValue)]
    [InlineData(1, 6, true, 5, ulong.MaxValue)]
    // A 2-bit key: nearly every lookup meets a collision, so only the verification keeps the drafts right.
    [InlineData(1, 4, false, 3, 0x3UL)]
    [InlineData(2, 6, true, 6, 0x1UL)]
    [InlineData(1, 3, false, 50, 0x0UL)]
    public void RandomSteps_MatchBruteForceReference(int minNgram, int maxNgram, bool withRule, int vocabulary, ulong hashMask)
    {
        var options = new PromptLookupDrafterOptions
        {
            MinNgram = minNgram,
            MaxNgram = maxNgram,
            LengthRule = withRule ? new MatchLengthRule(12, 1.5f, 1f) : null,
        };
        var random = new Random(20240613 + minNgram * 100 + maxNgram * 10 + vocabulary);
        using var drafter = new PromptLookupDrafter(options, hashMask);
        int steps = 0;
        for (int requestIndex = 0; requestIndex < 6; requestIndex++)
        {
            var request = new RequestId(requestIndex);
            List<int> context = RandomTokens(random, random.Next(0, 120), vocabulary);
            drafter.StartRequest(request, CollectionsMarshalAsSpan(context), null);
            for (int step = 0; step < 400; step++, steps++)
            {
                int budget = random.Next(0, 20);
                int[] expected = Reference(context, options, budget, out int expectedMatch);

                DraftTree draft = drafter.Propose(request, budget);

                Assert.True(expected.AsSpan().SequenceEqual(draft.Tokens),
                    $"step {step} of request {requestIndex}: expected [{string.Join(' ', expected)}], got [{string.Join(' ', draft.Tokens.ToArray())}]");
                Assert.Equal(expectedMatch, draft.MatchLength);
                Assert.True(draft.Count <= budget);
                AssertChainOfOnes(draft);

                // Emit like a decoder: a random accepted prefix of the draft plus a bonus token; now and then a burst
                // of unrelated tokens or nothing at all.
                int[] emitted = random.Next(10) switch
                {
                    0 => [],
                    1 => RandomTokens(random, random.Next(1, 9), vocabulary).ToArray(),
                    _ => [.. draft.Tokens[..random.Next(0, draft.Count + 1)], random.Next(vocabulary)],
                };
                drafter.Observe(request, emitted);
                context.AddRange(emitted);
                if (step % 97 == 0)
                {
                    drafter.CheckIntegrity();
                }
            }
            Assert.Equal(context.Count, drafter.ContextLength(request));
            drafter.CheckIntegrity();
            if (requestIndex % 2 == 0)
            {
                drafter.EndRequest(request);
            }
        }
        Assert.Equal(2400, steps);
    }

    [Fact]
    public void ConcurrentRequests_OnManyThreads_MatchReference()
    {
        var options = new PromptLookupDrafterOptions { MinNgram = 1, MaxNgram = 3 };
        using var drafter = new PromptLookupDrafter(options);
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();

        Parallel.For(0, 16, new ParallelOptions { MaxDegreeOfParallelism = 8 }, worker =>
        {
            var random = new Random(777 + worker);
            var request = new RequestId(1000 + worker);
            List<int> context = RandomTokens(random, 50, 5);
            drafter.StartRequest(request, CollectionsMarshalAsSpan(context), null);
            for (int step = 0; step < 300; step++)
            {
                int budget = random.Next(0, 10);
                int[] expected = Reference(context, options, budget, out _);
                DraftTree draft = drafter.Propose(request, budget);
                if (!expected.AsSpan().SequenceEqual(draft.Tokens))
                {
                    failures.Add($"worker {worker} step {step}");
                }
                int[] emitted = [.. draft.Tokens[..random.Next(0, draft.Count + 1)], random.Next(5)];
                drafter.Observe(request, emitted);
                context.AddRange(emitted);
                _ = drafter.EstimateMemoryBytes();
            }
            drafter.EndRequest(request);
        });

        Assert.Empty(failures);
        Assert.Equal(0, drafter.ActiveRequests);
    }

    [Fact]
    public void LongContext_StepsStayCheap()
    {
        // 100k-token prompt, then 2,000 decode steps: with the index each step is O(MaxNgram^2 + draft), so this runs in
        // milliseconds; a drafter that rescans the context would do ~2e8 token comparisons.
        var random = new Random(5);
        int[] prompt = RandomTokens(random, 100_000, 1000).ToArray();
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, prompt, null);
        long bytes = drafter.EstimateMemoryBytes();
        Assert.InRange(bytes, 100_000L * (4 + 4 * 4), 100_000L * 400);

        // Copy a stretch of the prompt so that lookups keep hitting long matches.
        int source = 12_345;
        int accepted = 0;
        for (int step = 0; step < 2_000; step++)
        {
            DraftTree draft = drafter.Propose(R1, 8);
            int[] truth = prompt.AsSpan(source, 9).ToArray();
            int n = draft.AcceptGreedy(truth, out _);
            accepted += n;
            drafter.Observe(R1, truth.AsSpan(0, n + 1));
            source += n + 1;
        }

        Assert.True(accepted > 2_000 * 6, $"accepted {accepted}");
        Assert.Equal(100_000 + source - 12_345, drafter.ContextLength(R1));
    }

    // ---------------------------------------------------------------- bad input and lifecycle

    [Theory]
    [InlineData(0, 4, "MinNgram")]
    [InlineData(-1, 4, "MinNgram")]
    [InlineData(3, 2, "MaxNgram")]
    [InlineData(1, 65, "MaxNgram")]
    [InlineData(1, int.MaxValue, "MaxNgram")]
    public void Constructor_RejectsBadNgramRange(int minNgram, int maxNgram, string named)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(
            () => new PromptLookupDrafter(new PromptLookupDrafterOptions { MinNgram = minNgram, MaxNgram = maxNgram }));

        Assert.Equal("options", ex.ParamName);
        Assert.Contains(named, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Constructor_AcceptsLargestSupportedNgram()
    {
        using var drafter = new PromptLookupDrafter(new PromptLookupDrafterOptions { MinNgram = 64, MaxNgram = PromptLookupDrafter.MaxSupportedNgram });
        int[] prompt = [.. Enumerable.Range(0, 64), 99, .. Enumerable.Range(0, 64)];
        drafter.StartRequest(R1, prompt, null);

        DraftTree draft = drafter.Propose(R1, 2);

        Assert.Equal([99, 0], draft.Tokens.ToArray());
        Assert.Equal(64, draft.MatchLength);
    }

    [Fact]
    public void UnknownRequests_Throw()
    {
        using var drafter = new PromptLookupDrafter();

        Assert.Throws<UnknownRequestException>(() => drafter.Propose(R1, 4));
        Assert.Throws<UnknownRequestException>(() => drafter.Propose(R1, 0));
        Assert.Throws<UnknownRequestException>(() => drafter.Observe(R1, [1]));
        Assert.Throws<UnknownRequestException>(() => drafter.Observe(R1, []));
        Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(R1));
        Assert.Throws<UnknownRequestException>(() => drafter.Propose(RequestId.Invalid, 4));
        var ex = Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(new RequestId(42)));
        Assert.Equal(new RequestId(42), ex.Request);
    }

    [Fact]
    public void EndedRequest_IsUnknown_AndMayStartAgain()
    {
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 1], null);
        drafter.EndRequest(R1);

        Assert.Throws<UnknownRequestException>(() => drafter.Propose(R1, 4));
        Assert.Throws<UnknownRequestException>(() => drafter.Observe(R1, [1]));
        Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(R1));

        drafter.StartRequest(R1, [5, 6, 5], null);
        Assert.Equal([6, 5], drafter.Propose(R1, 4).Tokens.ToArray());
    }

    [Fact]
    public void DoubleStart_Throws_AndKeepsTheFirstContext()
    {
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 1], null);

        var ex = Assert.Throws<DuplicateRequestException>(() => drafter.StartRequest(R1, [7, 8, 7], null));

        Assert.Equal(R1, ex.Request);
        Assert.Equal([2, 1], drafter.Propose(R1, 4).Tokens.ToArray());
    }

    [Fact]
    public void InvalidRequestId_CannotStart()
    {
        using var drafter = new PromptLookupDrafter();

        var ex = Assert.Throws<ArgumentException>(() => drafter.StartRequest(RequestId.Invalid, [1], null));
        Assert.Equal("request", ex.ParamName);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    [InlineData(1025)]
    [InlineData(int.MaxValue)]
    public void BadBudget_Throws(int budget)
    {
        using var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 1], null);

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => drafter.Propose(R1, budget));
        Assert.Equal("maxTokens", ex.ParamName);
    }

    [Fact]
    public void NegativeTokens_Throw_AndChangeNothing()
    {
        using var drafter = new PromptLookupDrafter();

        var ex = Assert.Throws<ArgumentException>(() => drafter.StartRequest(R1, [1, -2, 3], null));
        Assert.Equal("prompt", ex.ParamName);
        Assert.Equal(0, drafter.ActiveRequests);

        drafter.StartRequest(R1, [1, 2, 1], null);
        ex = Assert.Throws<ArgumentException>(() => drafter.Observe(R1, [2, 3, -1]));
        Assert.Equal("emitted", ex.ParamName);
        Assert.Equal(3, drafter.ContextLength(R1));
        Assert.Equal([2, 1], drafter.Propose(R1, 4).Tokens.ToArray());
        drafter.CheckIntegrity();
    }

    [Fact]
    public void AfterDispose_EverythingThrowsObjectDisposed()
    {
        var drafter = new PromptLookupDrafter();
        drafter.StartRequest(R1, [1, 2, 1], null);
        drafter.Dispose();

        Assert.Throws<ObjectDisposedException>(() => drafter.StartRequest(new RequestId(2), [1], null));
        Assert.Throws<ObjectDisposedException>(() => drafter.Propose(R1, 4));
        Assert.Throws<ObjectDisposedException>(() => drafter.Propose(R1, 0));
        Assert.Throws<ObjectDisposedException>(() => drafter.Observe(R1, [1]));
        Assert.Throws<ObjectDisposedException>(() => drafter.EndRequest(R1));
        Assert.Equal(0, drafter.EstimateMemoryBytes());
        Assert.Equal(0, drafter.ActiveRequests);
        drafter.Dispose(); // idempotent
    }

    [Fact]
    public void EstimateMemoryBytes_GrowsWithContext_AndDropsOnEnd()
    {
        using var drafter = new PromptLookupDrafter();
        Assert.Equal(0, drafter.EstimateMemoryBytes());

        drafter.StartRequest(R1, Enumerable.Range(0, 1000).ToArray(), null);
        long small = drafter.EstimateMemoryBytes();
        drafter.Observe(R1, Enumerable.Range(0, 10_000).ToArray());
        long large = drafter.EstimateMemoryBytes();
        drafter.StartRequest(new RequestId(2), Enumerable.Range(0, 1000).ToArray(), null);
        long both = drafter.EstimateMemoryBytes();

        Assert.InRange(small, 1000L * 4 * 5, 1000L * 400);
        Assert.True(large > 10 * small / 2, $"{small} -> {large}");
        Assert.Equal(large + small, both);
        drafter.EndRequest(R1);
        Assert.Equal(small, drafter.EstimateMemoryBytes());
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>
    /// The definition, by brute force: for n from min(MaxNgram, |context| - 1) down to MinNgram, scan back for the latest
    /// end position e &lt;= |context| - 2 whose n tokens equal the last n, and propose what follows e.
    /// </summary>
    private static int[] Reference(List<int> context, PromptLookupDrafterOptions options, int budget, out int matchLength)
    {
        matchLength = 0;
        int length = context.Count;
        if (budget == 0)
        {
            return [];
        }
        for (int n = Math.Min(options.MaxNgram, length - 1); n >= options.MinNgram; n--)
        {
            for (int end = length - 2; end >= n - 1; end--)
            {
                bool same = true;
                for (int i = 0; i < n && same; i++)
                {
                    same = context[end - i] == context[length - 1 - i];
                }
                if (!same)
                {
                    continue;
                }
                int take = Math.Min(budget, length - 1 - end);
                if (options.LengthRule is MatchLengthRule rule)
                {
                    take = Math.Min(take, rule.Limit(n));
                }
                if (take <= 0)
                {
                    return [];
                }
                matchLength = n;
                return context.GetRange(end + 1, take).ToArray();
            }
        }
        return [];
    }

    private static void AssertChainOfOnes(DraftTree draft)
    {
        Assert.True(draft.IsChain);
        Assert.Equal(draft.Count, draft.MaxDepth);
        for (int i = 0; i < draft.Count; i++)
        {
            Assert.Equal(i - 1, draft.Parents[i]);
            Assert.Equal(1f, draft.Probabilities[i]);
        }
        if (draft.IsEmpty)
        {
            Assert.Same(DraftTree.Empty, draft);
        }
    }

    private static List<int> RandomTokens(Random random, int count, int vocabulary)
    {
        var tokens = new List<int>(count);
        for (int i = 0; i < count; i++)
        {
            tokens.Add(random.Next(vocabulary));
        }
        return tokens;
    }

    private static ReadOnlySpan<int> CollectionsMarshalAsSpan(List<int> list) =>
        System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list);

    private static int[] Parse(string tokens) =>
        tokens.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(t => int.Parse(t, CultureInfo.InvariantCulture)).ToArray();
}
