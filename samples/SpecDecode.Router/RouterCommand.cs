using System.CommandLine;
using SpecDecode.CommandLine;

namespace SpecDecode.Router;

/// <summary>The router's command line, by the tools' convention (<see cref="ToolRunner"/>): a bad value is one line on
/// stderr naming the option, exit 2; the router serves until stopped (Ctrl+C).</summary>
public static class RouterCommand
{
    /// <summary>Parses <paramref name="args"/> and routes until stopped.</summary>
    public static Task<int> RunAsync(string[] args) => ToolRunner.RunAsync(Build(), args);

    /// <summary>The root command.</summary>
    public static RootCommand Build()
    {
        var defaults = new RouterOptions();
        var replicas = new Option<string[]>("--replica") { Description = "A replica's base URL, e.g. http://10.0.0.11:8000/; repeat for each replica (at least one).", AllowMultipleArgumentsPerToken = false };
        replicas.Validators.Add(r =>
        {
            foreach (string url in r.Tokens.Select(t => t.Value).Where(u => !RouterOptions.IsReplicaUrl(u)))
            {
                r.AddError($"--replica: '{url}' is not an absolute http(s) URL; give one such as http://127.0.0.1:8001/.");
                return;
            }
        });
        var urls = new Option<string[]>("--urls") { Description = "Where to listen (repeatable). Default: http://127.0.0.1:8080.", AllowMultipleArgumentsPerToken = false };
        var healthPath = new Option<string>("--health-path") { Description = "The replicas' health endpoint, probed by the active health checks.", DefaultValueFactory = _ => defaults.HealthPath };
        var healthInterval = ToolOptions.Double("--health-interval", "Seconds between health probes.", defaults.HealthIntervalSeconds, NumberRange.Above(0));
        var healthTimeout = ToolOptions.Double("--health-timeout", "Seconds a health probe may take.", defaults.HealthTimeoutSeconds, NumberRange.Above(0));
        var reactivation = ToolOptions.Double("--reactivation", "Seconds a replica that could not be reached stays out before requests try it again.", defaults.ReactivationSeconds, NumberRange.Above(0));
        var maxAttempts = ToolOptions.Int("--max-attempts", "Replicas tried for a request whose replica could not be reached.", defaults.MaxAttempts, 1);
        var firstMessages = ToolOptions.Int("--first-messages", "Without the conversation header, the conversation is a hash of this many first messages.", defaults.FirstMessages, 1);
        var maxBody = ToolOptions.Int("--max-body-bytes", "Largest request body read to find the first messages (larger bodies are routed without a key).", defaults.MaxBodyBytes, 1);

        var root = new RootCommand("A conversation-affine reverse proxy (YARP) in front of N SpecDecode server replicas, with health checks and failover (docs/fleet.md).")
        {
            replicas, urls, healthPath, healthInterval, healthTimeout, reactivation, maxAttempts, firstMessages, maxBody,
        };
        root.SetAction(async (p, ct) =>
        {
            var options = new RouterOptions
            {
                Replicas = [.. p.GetValue(replicas) ?? []],
                HealthPath = p.GetValue(healthPath)!,
                HealthIntervalSeconds = p.GetValue(healthInterval),
                HealthTimeoutSeconds = p.GetValue(healthTimeout),
                ReactivationSeconds = p.GetValue(reactivation),
                MaxAttempts = p.GetValue(maxAttempts),
                FirstMessages = p.GetValue(firstMessages),
                MaxBodyBytes = p.GetValue(maxBody),
            };
            string[] listen = p.GetValue(urls) is { Length: > 0 } u ? u : ["http://127.0.0.1:8080"];
            await using WebApplication app = RouterApp.Build(options, listen);
            return await ToolRunner.ServeAsync(app.StartAsync, app.StopAsync, () =>
                $"routing {string.Join(", ", app.Urls)} to {options.Replicas.Count} replica(s): {string.Join(", ", options.Replicas)}", ct).ConfigureAwait(false);
        });
        return root;
    }
}
