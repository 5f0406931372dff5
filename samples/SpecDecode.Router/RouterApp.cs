using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.LoadBalancing;

namespace SpecDecode.Router;

/// <summary>Builds the router: YARP with one catch-all route to the replicas' cluster, conversation-affine.</summary>
public static class RouterApp
{
    /// <summary>The cluster's id.</summary>
    public const string ClusterId = "replicas";

    /// <summary>Builds the application (not started) over <paramref name="options"/>, listening on <paramref name="urls"/>.</summary>
    /// <exception cref="RouterConfigurationException">The router's settings cannot work; the message says what to set.</exception>
    public static WebApplication Build(RouterOptions options, IReadOnlyList<string> urls)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(urls);
        options.Validate();
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls([.. urls]);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<ILoadBalancingPolicy, ConversationLoadBalancingPolicy>();
        builder.Services.AddSingleton<FailoverMiddleware>();
        builder.Services.AddReverseProxy().LoadFromMemory([Route()], [Cluster(options)]);

        WebApplication app = builder.Build();
        app.MapGet("/router/health", () => Results.Ok(new { status = "ok", replicas = options.Replicas.Count }));
        app.MapReverseProxy(pipeline =>
        {
            FailoverMiddleware failover = pipeline.ApplicationServices.GetRequiredService<FailoverMiddleware>();
            pipeline.Use((context, next) => failover.InvokeAsync(context, () => next()));
            pipeline.UseSessionAffinity();
            pipeline.UseLoadBalancing();
            pipeline.UsePassiveHealthChecks();
        });
        return app;
    }

    private static RouteConfig Route() => new()
    {
        RouteId = "all",
        ClusterId = ClusterId,
        Match = new RouteMatch { Path = "{**catch-all}" },
    };

    private static ClusterConfig Cluster(RouterOptions options) => new()
    {
        ClusterId = ClusterId,
        LoadBalancingPolicy = ConversationLoadBalancingPolicy.PolicyName,
        Destinations = options.Replicas.Select((url, i) => (url, i)).ToDictionary(
            x => "replica-" + x.i.ToString(System.Globalization.CultureInfo.InvariantCulture),
            x => new DestinationConfig { Address = x.url }),
        HealthCheck = new HealthCheckConfig
        {
            Active = new ActiveHealthCheckConfig
            {
                Enabled = true,
                Interval = TimeSpan.FromSeconds(options.HealthIntervalSeconds),
                Timeout = TimeSpan.FromSeconds(options.HealthTimeoutSeconds),
                Policy = "ConsecutiveFailures",
                Path = options.HealthPath,
            },
            Passive = new PassiveHealthCheckConfig
            {
                Enabled = true,
                Policy = "TransportFailureRate",
                ReactivationPeriod = TimeSpan.FromSeconds(options.ReactivationSeconds),
            },
        },
        // Generation can take minutes: no proxy timeout beyond the client's own.
        HttpRequest = new Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromMinutes(10) },
    };
}
