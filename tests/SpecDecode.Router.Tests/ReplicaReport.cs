using System.Text.Json;
using SpecDecode.Fleet;
using SpecDecode.Suffix;

namespace SpecDecode.Router.Tests;

/// <summary>What a replica's <c>GET /admin/cache</c> answers (the server's <c>CacheReport</c>; the model-free stand-in
/// writes the same JSON).</summary>
internal sealed record ReplicaReport(string Replica, string Drafter, long MaxCachedTokens, SuffixCacheStatistics Cache, SharingStatistics? Sharing)
{
    /// <summary>The admin routes' JSON: snake_case names.</summary>
    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Responses that entered the global tree so far: still cached, or since evicted.</summary>
    public long Entered => Cache.CachedResponses + Cache.EvictedResponses;
}
