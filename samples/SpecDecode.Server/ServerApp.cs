using System.Security.Cryptography;
using System.Text;
using OpenTelemetry.Metrics;

namespace SpecDecode.Server;

/// <summary>
/// Builds the web application over a loaded <see cref="ModelHost"/>: ASP.NET Core minimal APIs for the OpenAI routes,
/// <c>GET /health</c>, Prometheus <c>GET /metrics</c> through OpenTelemetry (the engine's meter <c>SpecDecode</c> and the
/// server's <c>SpecDecode.Server</c>), the suffix cache's admin routes (<c>GET /admin/cache</c>, <c>POST
/// /admin/cache/check</c>), the optional API key (on <c>/v1</c> and <c>/admin</c>), and OpenAI-style 404s for unknown
/// routes.
/// </summary>
public static class ServerApp
{
    /// <summary>Builds the application (not started). The caller owns <paramref name="host"/> and disposes it after the
    /// application stops.</summary>
    /// <param name="settings">The server's settings (URLs, API key, waiting room).</param>
    /// <param name="host">The loaded model and engine.</param>
    /// <param name="args">ASP.NET Core's own command-line configuration, if any.</param>
    public static WebApplication Build(ServerSettings settings, ModelHost host, string[]? args = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(host);
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(args ?? []);
        builder.WebHost.UseUrls([.. settings.Urls]);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton(host);
        builder.Services.AddSingleton(new Admission(host.MaxBatch + settings.MaxWaiting));
        builder.Services.AddSingleton<ServerMetrics>();
        builder.Services.AddSingleton<CompletionEndpoints>();
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter("SpecDecode", ServerMetrics.MeterName)
            .AddPrometheusExporter());

        WebApplication app = builder.Build();
        if (settings.ApiKey is { Length: > 0 } key)
        {
            byte[] expected = Encoding.UTF8.GetBytes("Bearer " + key);
            app.Use(async (context, next) =>
            {
                if ((context.Request.Path.StartsWithSegments("/v1") || context.Request.Path.StartsWithSegments("/admin"))
                    && !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(context.Request.Headers.Authorization.ToString()), expected))
                {
                    await new OpenAiException(401, "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.", code: "invalid_api_key")
                        .WriteAsync(context).ConfigureAwait(false);
                    return;
                }
                await next(context).ConfigureAwait(false);
            });
        }

        CompletionEndpoints completions = app.Services.GetRequiredService<CompletionEndpoints>();
        _ = app.Services.GetRequiredService<ServerMetrics>();   // the gauges exist before the first scrape
        app.MapPost("/v1/chat/completions", completions.ChatAsync);
        app.MapPost("/v1/completions", completions.CompletionAsync);
        app.MapGet("/v1/models", () => Results.Json(new ModelList("list", [Card(host)]), ServerJson.Options));
        app.MapGet("/v1/models/{**id}", (string id) => id == host.ServedModelName
            ? Results.Json(Card(host), ServerJson.Options)
            : new ErrorResult(new OpenAiException(404, $"The model '{id}' does not exist here; this server serves '{host.ServedModelName}'.", "model", "model_not_found")));
        app.MapGet("/health", () => Results.Json(new { status = "ok", model = host.ServedModelName, benchmark = host.Benchmark is not null }));
        app.MapPrometheusScrapingEndpoint("/metrics");
        // The suffix cache: its counters and the sharing's (GET), and its integrity check (POST: it holds the global
        // tree's read lock while it walks every node, so a scraper must not run it by accident).
        app.MapGet("/admin/cache", () => host.Cache is { } cache
            ? Results.Json(cache.Report(), ReplicaCache.JsonOptions)
            : NoSuffixCache());
        app.MapPost("/admin/cache/check", () =>
        {
            if (host.Cache is not { } cache)
            {
                return NoSuffixCache();
            }
            IntegrityReport report = cache.CheckIntegrity();
            return Results.Json(report, ReplicaCache.JsonOptions, statusCode: report.Ok ? 200 : 500);
        });
        app.MapFallback((HttpContext context) => new OpenAiException(404, $"No route {context.Request.Method} {context.Request.Path}: this server offers POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics, GET /admin/cache and POST /admin/cache/check.", code: "not_found")
            .WriteAsync(context));
        return app;
    }

    /// <summary>The address Kestrel bound once started (the real port when the settings asked for port 0).</summary>
    public static string BoundAddress(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features
            .Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()!.Addresses.First();
    }

    private static IResult NoSuffixCache() => new ErrorResult(
        new OpenAiException(404, "This server drafts without a suffix cache (--draft prompt-lookup or none): /admin/cache has nothing to show.", code: "not_found"));

    private static ModelCard Card(ModelHost host) =>
        new(host.ServedModelName, "model", StartedAt, "specdecode", host.Capacity);

    private static readonly long StartedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>An OpenAI-style error as a minimal-API result.</summary>
    private sealed class ErrorResult(OpenAiException error) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext) => error.WriteAsync(httpContext);
    }
}
