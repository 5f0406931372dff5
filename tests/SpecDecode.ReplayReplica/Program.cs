using System.Text.Json;
using Microsoft.AspNetCore.Mvc;
using SpecDecode;
using SpecDecode.Fleet;
using SpecDecode.ReplayReplica;
using SpecDecode.Suffix;

// Settings: --Replica:Id=r0 [--Replica:Nats=nats://127.0.0.1:4222] [--Replica:MaxCachedTokens=N]
WebApplicationBuilder builder = WebApplication.CreateBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
IConfigurationSection settings = builder.Configuration.GetSection("Replica");
string id = settings["Id"] ?? "replica";
string? nats = settings["Nats"];
long maxTokens = settings.GetValue("MaxCachedTokens", -1L);

var suffix = new SuffixDrafter(new SuffixDrafterOptions { MaxCachedTokens = maxTokens });
ResponseSharing? sharing = nats is null ? null : ResponseSharing.Start(suffix.Cache, new ResponseSharingOptions
{
    Url = nats,
    ReplicaId = id,
    Identity = new FleetIdentity("replay (recorded responses)", "o200k_base"),
    RetryDelay = TimeSpan.FromMilliseconds(200),
});
IDrafter drafter = sharing is null ? suffix : new SharingDrafter(suffix, sharing);
long nextRequest = 0;

WebApplication app = builder.Build();
app.MapGet("/health", () => Results.Ok(new { status = "ok", replica = id }));

app.MapPost("/v1/replay", ([FromBody] ReplayCallRequest call) =>
{
    if (call.Response.Length == 0 || call.Budget < 0 || call.Budget > drafter.MaxBudget)
    {
        return Results.BadRequest(new { error = "response must be non-empty and budget within 0..MaxBudget" });
    }
    var request = new RequestId(Interlocked.Increment(ref nextRequest));
    drafter.StartRequest(request, call.Prompt, new DraftRequestOptions { ConversationId = call.Conversation });
    int emittedSoFar = 0, steps = 0;
    long drafted = 0, accepted = 0;
    try
    {
        while (emittedSoFar < call.Response.Length)
        {
            DraftTree draft = drafter.Propose(request, call.Budget);
            ReadOnlySpan<int> remaining = call.Response.AsSpan(emittedSoFar);
            int a = draft.AcceptGreedy(remaining, out _);
            int emitted = Math.Min(a + 1, remaining.Length);
            drafter.Observe(request, remaining[..emitted]);
            emittedSoFar += emitted;
            steps++;
            drafted += draft.Count;
            accepted += a;
        }
    }
    finally
    {
        drafter.EndRequest(request);
    }
    return Results.Ok(new ReplayCallResult(id, steps, drafted, accepted, emittedSoFar));
});

// The server's admin routes and JSON (samples/SpecDecode.Server, GET /admin/cache and POST /admin/cache/check), so
// one fleet harness reads both kinds of replica.
var json = new JsonSerializerOptions(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
app.MapGet("/admin/cache", () => Results.Json(new
{
    Replica = id,
    Drafter = drafter.Name,
    MaxCachedTokens = maxTokens,
    Cache = suffix.Cache.GetStatistics(),
    Sharing = sharing?.GetStatistics(),
}, json));

app.MapPost("/admin/cache/check", () =>
{
    try
    {
        suffix.Cache.CheckIntegrity();
        return Results.Json(new { Ok = true, Error = (string?)null }, json);
    }
    catch (SuffixTreeIntegrityException ex)
    {
        return Results.Json(new { Ok = false, Error = ex.Message }, json, statusCode: 500);
    }
});

app.Lifetime.ApplicationStopping.Register(() => sharing?.FlushAsync(TimeSpan.FromSeconds(5)).GetAwaiter().GetResult());
app.Run();
if (sharing is not null)
{
    await sharing.DisposeAsync();
}
drafter.Dispose();
