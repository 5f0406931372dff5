using System.CommandLine;
using SpecDecode.CommandLine;

namespace SpecDecode.Server;

/// <summary>The server's command line, by the tools' convention (<see cref="ToolRunner"/>): with no arguments it serves
/// the embedded default model on http://127.0.0.1:8000.</summary>
public static class ServerCommand
{
    /// <summary>The environment variable read for the API key when <c>--api-key</c> is not given.</summary>
    public const string ApiKeyVariable = "SPECDECODE_API_KEY";

    /// <summary>Parses <paramref name="args"/>, loads the model and serves until stopped (Ctrl+C).</summary>
    public static Task<int> RunAsync(string[] args) => ToolRunner.RunAsync(Build(), args);

    /// <summary>The root command.</summary>
    public static RootCommand Build()
    {
        var model = new Option<string?>("--model", "-m") { Description = "A Hugging Face checkpoint folder. Default: the embedded model (models/default in the repository)." };
        var name = new Option<string?>("--served-model-name") { Description = "The name clients send as 'model'. Default: the checkpoint folder's name." };
        var device = ToolOptions.Choice("--device", "cpu or cuda (default: cuda when a CUDA libtorch is loaded, else cpu).", null, ["cpu", "cuda"]);
        var dtype = ToolOptions.Choice("--dtype", "float32, float16 or bfloat16 (default: float32 on the CPU, the checkpoint's half type on CUDA).", null, ["float32", "float16", "bfloat16"]);
        var maxContext = ToolOptions.OptionalInt("--max-context", $"Tokens of context per request (prompt and answer). Default: the model's max_position_embeddings, at most {ModelFit.DefaultContextCap}.", 16);
        var maxBatch = ToolOptions.Int("--max-batch", "Requests decoded at once (KV-cache slots).", 8, 1, 1024);
        var maxWaiting = ToolOptions.Int("--max-waiting", "Requests that may wait for a slot; more are refused with 503.", 64, 0);
        var draft = ToolOptions.Choice("--draft", "The drafter: suffix (default), prompt-lookup or none.", "suffix", ["suffix", "prompt-lookup", "none"]);
        var budget = ToolOptions.OptionalInt("--budget", "Draft tokens per request per step at most (default 32, below --max-context).", 0);
        var noAdaptive = new Option<bool>("--no-adaptive") { Description = "Verify every draft as proposed (no cost model)." };
        var noCudaGraphs = new Option<bool>("--no-cuda-graphs") { Description = "On CUDA, no CUDA graphs for plain single-sequence steps." };
        var apiKey = new Option<string?>("--api-key") { Description = $"Require 'Authorization: Bearer <key>' on /v1 (default: the {ApiKeyVariable} environment variable; none: open)." };
        var urls = new Option<string[]>("--urls") { Description = "Where to listen (repeatable). Default: http://127.0.0.1:8000.", AllowMultipleArgumentsPerToken = false };
        var maxCachedTokens = ToolOptions.Long("--max-cached-tokens", "Suffix drafter: response tokens its global tree keeps, oldest evicted first (-1: all). Bound it in a fleet: every replica holds every replica's responses.", -1, -1);
        var fleetNats = new Option<string?>("--fleet-nats") { Description = "Share finished responses with the other replicas through this NATS server (JetStream on), e.g. nats://10.0.0.5:4222. Default: no sharing (docs/fleet.md)." };
        fleetNats.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && !IsNatsUrl(r.Tokens[^1].Value))
            {
                r.AddError($"--fleet-nats: '{r.Tokens[^1].Value}' is not a NATS URL; give one such as nats://127.0.0.1:4222.");
            }
        });
        var replicaId = new Option<string?>("--replica-id") { Description = "This replica's name in the fleet. Default: the machine's name and the process id." };
        var fleetModel = new Option<string?>("--fleet-model") { Description = "The model part of the fleet identity (replicas share only with the same identity). Default: a hash of config.json and the weights." };
        var fleetTokenizer = new Option<string?>("--fleet-tokenizer") { Description = "The tokenizer part of the fleet identity. Default: a hash of the tokenizer files." };
        var benchmark = ToolOptions.InputFile("--benchmark-random-weights", "BENCHMARK MODE, never for real use: build a model of this config.json's shape with random weights; requests may then force acceptance with recorded answers (docs/server.md).");

        var root = new RootCommand("An OpenAI-compatible HTTP server (chat completions, completions, models, health, Prometheus metrics) on SpecDecode's speculative engine.")
        {
            model, name, device, dtype, maxContext, maxBatch, maxWaiting, draft, budget, noAdaptive, noCudaGraphs, apiKey, urls,
            maxCachedTokens, fleetNats, replicaId, fleetModel, fleetTokenizer, benchmark,
        };
        root.Validators.Add(r =>
        {
            if (r.GetResult(benchmark) is { Implicit: false } && r.GetResult(model) is { Implicit: false })
            {
                r.AddError("--benchmark-random-weights builds its own model: leave --model out.");
            }
            if (r.GetResult(fleetNats) is { Implicit: false } && r.GetResult(draft) is { Implicit: false } && r.GetValue(draft) != "suffix")
            {
                r.AddError($"--fleet-nats shares the suffix drafter's cache: use --draft suffix (not {r.GetValue(draft)}).");
            }
            foreach (Option<string?> part in new[] { replicaId, fleetModel, fleetTokenizer })
            {
                if (r.GetResult(part) is { Implicit: false } && r.GetResult(fleetNats) is not { Implicit: false })
                {
                    r.AddError($"{part.Name} names this replica in a fleet: give --fleet-nats too.");
                }
            }
        });
        root.SetAction(async (p, ct) =>
        {
            var settings = new ServerSettings
            {
                ModelFolder = p.GetValue(model),
                ServedModelName = p.GetValue(name),
                Device = p.GetValue(device),
                DType = p.GetValue(dtype),
                MaxContext = p.GetValue(maxContext),
                MaxBatch = p.GetValue(maxBatch),
                MaxWaiting = p.GetValue(maxWaiting),
                Draft = p.GetValue(draft)!,
                Budget = p.GetValue(budget),
                Adaptive = !p.GetValue(noAdaptive),
                CudaGraphs = !p.GetValue(noCudaGraphs),
                ApiKey = p.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyVariable),
                Urls = p.GetValue(urls) is { Length: > 0 } u ? u : ["http://127.0.0.1:8000"],
                BenchmarkRandomWeights = p.GetValue(benchmark)?.FullName,
                MaxCachedTokens = p.GetValue(maxCachedTokens),
                FleetNats = p.GetValue(fleetNats),
                ReplicaId = p.GetValue(replicaId),
                FleetModel = p.GetValue(fleetModel),
                FleetTokenizer = p.GetValue(fleetTokenizer),
            };
            using ILoggerFactory loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
            using ModelHost host = ModelHost.Load(settings, Console.WriteLine, loggers);
            await using WebApplication app = ServerApp.Build(settings, host);
            return await ToolRunner.ServeAsync(app.StartAsync, app.StopAsync, () =>
                $"listening on {string.Join(", ", app.Urls)}: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics, GET /admin/cache" +
                (settings.ApiKey is null ? "" : " (API key required)"), ct).ConfigureAwait(false);
        });
        return root;
    }

    /// <summary>Whether <paramref name="url"/> is a NATS client URL (nats, tls, ws or wss, with a host).</summary>
    public static bool IsNatsUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out Uri? uri) && uri.Scheme is "nats" or "tls" or "ws" or "wss" && uri.Host.Length > 0;
}
