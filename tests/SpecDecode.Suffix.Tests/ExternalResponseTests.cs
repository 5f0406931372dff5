namespace SpecDecode.Suffix.Tests;

/// <summary><see cref="SuffixDecodingCache.AddResponse"/>: responses produced elsewhere joining the global tree.</summary>
public sealed class ExternalResponseTests
{
    private static readonly RequestId R1 = new(1), R2 = new(2);

    [Fact]
    public void An_added_response_drafts_exactly_like_one_generated_here()
    {
        int[] response = TestTokens(1, 400);
        int[] prompt = [900, 901, .. response[100..120]];

        using var local = new SuffixDrafter();
        local.StartRequest(R1, [7, 7, 7], null);
        local.Observe(R1, response);
        local.EndRequest(R1);

        using var remote = new SuffixDrafter();
        Assert.True(remote.Cache.AddResponse(response));
        Assert.Equal(1, remote.Cache.GetStatistics().CachedResponses);
        Assert.Equal(response.Length, remote.Cache.GetStatistics().CachedResponseTokens);

        local.StartRequest(R2, prompt, null);
        remote.StartRequest(R2, prompt, null);
        DraftTree expected = local.Propose(R2, 16);
        DraftTree actual = remote.Propose(R2, 16);
        Assert.Equal(response[120..136], actual.Tokens.ToArray());
        Assert.Equal(expected.Tokens.ToArray(), actual.Tokens.ToArray());
        Assert.Equal(expected.Score, actual.Score);
        remote.Cache.CheckIntegrity();
    }

    [Fact]
    public void Added_responses_obey_the_token_bound_oldest_first()
    {
        using var cache = new SuffixDecodingCache(new SuffixCacheOptions { MaxCachedTokens = 1000 });
        for (int i = 0; i < 10; i++)
        {
            Assert.True(cache.AddResponse(TestTokens(i, 300)));
            cache.CheckIntegrity();
        }
        SuffixCacheStatistics stats = cache.GetStatistics();
        Assert.Equal(3, stats.CachedResponses);
        Assert.Equal(900, stats.CachedResponseTokens);
        Assert.Equal(7, stats.EvictedResponses);
    }

    [Fact]
    public void Added_responses_go_before_an_active_requests_response()
    {
        using var cache = new SuffixDecodingCache(new SuffixCacheOptions { MaxCachedResponses = 2 });
        cache.StartRequest(R1, [1, 2, 3], null);
        cache.AddTokens(R1, [4, 5, 6]);
        Assert.True(cache.AddResponse(TestTokens(1, 50)));
        Assert.True(cache.AddResponse(TestTokens(2, 50)));
        // The active request's response stays; the older added response went.
        SuffixCacheStatistics stats = cache.GetStatistics();
        Assert.Equal(2, stats.CachedResponses);
        Assert.Equal(53, stats.CachedResponseTokens);
        cache.AddTokens(R1, [7]);
        cache.EndRequest(R1);
        cache.CheckIntegrity();
    }

    [Fact]
    public void Nothing_is_added_when_it_cannot_be_kept()
    {
        using var off = new SuffixDecodingCache(new SuffixCacheOptions { MaxCachedResponses = 0 });
        Assert.False(off.AddResponse([1, 2, 3]));
        using var small = new SuffixDecodingCache(new SuffixCacheOptions { MaxCachedTokens = 10 });
        Assert.True(small.AddResponse([1, 2, 3]));
        Assert.False(small.AddResponse(TestTokens(3, 11)));
        Assert.False(small.AddResponse([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => small.AddResponse([1, -2]));
        SuffixCacheStatistics stats = small.GetStatistics();
        Assert.Equal(1, stats.CachedResponses);
        Assert.Equal(3, stats.CachedResponseTokens);
        small.CheckIntegrity();
        small.Dispose();
        Assert.Throws<ObjectDisposedException>(() => small.AddResponse([1]));
    }

    [Fact]
    public async Task Concurrent_adds_and_drafts_keep_the_tree_whole()
    {
        using var drafter = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedTokens = 20_000 });
        int[] prompt = TestTokens(99, 500);
        Task writer = Task.Run(() =>
        {
            for (int i = 0; i < 200; i++)
            {
                drafter.Cache.AddResponse(TestTokens(i, 250));
            }
        });
        Task reader = Task.Run(() =>
        {
            var id = new RequestId(1000);
            drafter.StartRequest(id, prompt, null);
            int steps = 0;
            while (!writer.IsCompleted || steps < 10)
            {
                DraftTree draft = drafter.Propose(id, 8);
                drafter.Observe(id, draft.Count > 0 ? draft.Tokens[..1] : [3]);
                steps++;
            }
            drafter.EndRequest(id);
        });
        await Task.WhenAll(writer, reader);
        drafter.Cache.CheckIntegrity();
        Assert.InRange(drafter.Cache.GetStatistics().CachedResponseTokens, 1, 20_000);
    }

    private static int[] TestTokens(int seed, int length)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => rng.Next(5000)).ToArray();
    }
}
