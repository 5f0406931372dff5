using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Fleet;
using SpecDecode.Hosting;
using SpecDecode.Suffix;
using SpecDecode.Tokenization;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.Server;

/// <summary>
/// What the server serves: one loaded model, its tokenizer and chat template, the drafter and the engine over them, the
/// name clients address it by, and in benchmark mode the <see cref="BenchmarkMode"/> that encodes prompts and forced
/// answers. Loaded before the web host starts, so a bad option or model fails the command line with a one-line message.
/// The engine keeps no history: every call carries the whole conversation, so a later engine that reuses cached prefixes
/// (paged KV) needs no change here.
/// </summary>
public sealed class ModelHost : IDisposable
{
    private readonly IDisposable[] _owned;

    private ModelHost(SpeculativeEngine engine, string servedModelName, int capacity, BenchmarkMode? benchmark, IDrafter? drafter,
        ReplicaCache? cache, params IDisposable[] owned)
    {
        Drafter = drafter;
        Cache = cache;
        Engine = engine;
        ServedModelName = servedModelName;
        Capacity = capacity;
        Benchmark = benchmark;
        _owned = owned;
    }

    /// <summary>The engine every request goes through.</summary>
    public SpeculativeEngine Engine { get; }

    /// <summary>The drafter the engine drafts with (benchmarks teach it warm-up calls), or null for plain decoding.</summary>
    internal IDrafter? Drafter { get; }

    /// <summary>The suffix drafter's cache and its sharing with the fleet (the admin endpoints), or null when the server
    /// drafts otherwise.</summary>
    public ReplicaCache? Cache { get; }

    /// <summary>Generates the answer to an accepted request: forced by its recorded answer in benchmark mode, else as the
    /// model decodes it. The HTTP endpoints and the in-process benchmark path both come through here.</summary>
    public Task<GenerationResult> GenerateAsync(OpenAiRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.ForcedResponse is { } forced
            ? Engine.GenerateForcedAsync(request.Generation, forced, cancellationToken)
            : Engine.GenerateAsync(request.Generation, cancellationToken);
    }

    /// <summary>The model's name in requests and in <c>/v1/models</c>.</summary>
    public string ServedModelName { get; }

    /// <summary>Tokens of context per request (prompt and output).</summary>
    public int Capacity { get; }

    /// <summary>Requests decoded at once.</summary>
    public int MaxBatch => Engine.Model.MaxBatch;

    /// <summary>Benchmark mode (random weights, forced answers), or null in production.</summary>
    public BenchmarkMode? Benchmark { get; }

    /// <summary>Loads what <paramref name="settings"/> names: the checkpoint (or, in benchmark mode, a random-weight model of
    /// a config.json's shape), its tokenizer and template, the drafter, and the engine.</summary>
    /// <param name="settings">What to load and serve.</param>
    /// <param name="log">Progress lines (null: none).</param>
    /// <param name="loggers">Where the fleet's sharing logs broker failures (null: nowhere).</param>
    /// <exception cref="ToolUsageException">A setting does not fit the model or the machine, or the model does not load.</exception>
    public static ModelHost Load(ServerSettings settings, Action<string>? log = null, ILoggerFactory? loggers = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        log ??= _ => { };
        Device? device = settings.Device switch
        {
            null => null,
            "cpu" => CPU,
            _ => TorchRuntime.DefaultDevice.type == TorchSharp.DeviceType.CUDA
                ? TorchRuntime.DefaultDevice
                : throw new ToolUsageException($"--device cuda: the loaded libtorch has no CUDA device; set {TorchRuntime.LibTorchVariable} to a CUDA PyTorch's torch/lib folder, or use --device cpu."),
        };
        ScalarType? dtype = settings.DType switch
        {
            "float32" => ScalarType.Float32,
            "float16" => ScalarType.Float16,
            "bfloat16" => ScalarType.BFloat16,
            _ => null,
        };
        if (settings.BenchmarkRandomWeights is not null)
        {
            return LoadBenchmark(settings, device, dtype, log, loggers);
        }
        string folder = DefaultModel.Resolve(settings.ModelFolder);
        ModelPlan plan = ModelLoader.Plan(folder, settings.MaxContext, settings.MaxBatch, device, dtype, settings.CudaGraphs);
        int budget = ModelFit.DraftBudget(settings.Budget, plan.Context);
        Tokenizer tokenizer = ModelLoader.LoadTokenizer(folder);
        ChatTemplate? template = ModelLoader.LoadChatTemplate(folder);
        log($"loading {folder} ({plan.Config.LayerCount} layers, context {plan.Context}, {settings.MaxBatch} slots) ...");
        TargetModel model = ModelLoader.Load(plan);
        ReplicaCache? cache = null;
        try
        {
            cache = StartCache(settings, () => CheckpointIdentity.Of(folder), log, loggers);
            IDrafter? drafter = cache?.Drafter ?? NewDrafter(settings.Draft);
            SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter, new SpeculativeEngineOptions
            {
                MaxDraftTokens = drafter is null ? 0 : budget,
                AdaptiveSpeculation = settings.Adaptive,
                ChatTemplate = template,
            });
            string name = settings.ServedModelName ?? Path.GetFileName(folder.TrimEnd(Path.DirectorySeparatorChar));
            log($"serving {name}: {model.Device.type.ToString().ToLowerInvariant()} {model.DType}, drafter {settings.Draft}, chat template {(template is null ? "none (chat completions refused)" : "yes")}");
            return new ModelHost(engine, name, plan.Context, null, drafter, cache, [engine, .. Owned(drafter, cache), model]);
        }
        catch
        {
            cache?.Dispose();
            model.Dispose();
            throw;
        }
    }

    /// <summary>The suffix drafter's cache, shared with the fleet when <see cref="ServerSettings.FleetNats"/> is set; null
    /// for the other drafters.</summary>
    private static ReplicaCache? StartCache(ServerSettings settings, Func<FleetIdentity> identity, Action<string> log, ILoggerFactory? loggers)
    {
        if (settings.Draft != "suffix")
        {
            return null;
        }
        ReplicaCache cache;
        try
        {
            cache = ReplicaCache.Start(settings, identity, loggers);
        }
        catch (ArgumentException e)
        {
            throw new ToolUsageException($"The fleet settings (--fleet-nats, --replica-id, --fleet-model, --fleet-tokenizer) do not work: {ToolRunner.FirstLine(e.Message)}", e);
        }
        if (cache.Identity is { } fleet)
        {
            log(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"sharing responses as replica {cache.ReplicaId} through {cache.Broker} (model {fleet.Model}, tokenizer {fleet.Tokenizer}; identity in {cache.IdentitySeconds:F3} s); serving meanwhile if the broker is down"));
        }
        return cache;
    }

    private static ModelHost LoadBenchmark(ServerSettings settings, Device? device, ScalarType? dtype, Action<string> log, ILoggerFactory? loggers)
    {
        string config = Path.GetFullPath(settings.BenchmarkRandomWeights!);
        ModelConfig shape = ModelLoader.Loading(() => ModelConfig.Load(config), config);
        int context = ModelFit.Context(settings.MaxContext, shape.MaxPositionEmbeddings, config);
        int budget = ModelFit.DraftBudget(settings.Budget, context);
        var options = new TargetModelOptions
        {
            Device = device,
            DType = dtype ?? ScalarType.BFloat16,
            MaxBatch = settings.MaxBatch,
            MaxContext = context,
            CudaGraphs = settings.CudaGraphs && (device ?? ModelLoader.DefaultDeviceOrCpu()).type == TorchSharp.DeviceType.CUDA,
        };
        log($"BENCHMARK MODE: random weights of {config}'s shape; answers are garbage; requests may force acceptance with recorded answers.");
        TargetModel model = ModelLoader.Loading(() => TargetModel.CreateRandom(shape, options, seed: 1), config);
        var benchmark = BenchmarkMode.Create(shape.VocabSize);
        ReplicaCache? cache = StartCache(settings, () => CheckpointIdentity.OfBenchmark(config, shape.VocabSize), log, loggers);
        IDrafter? drafter = cache?.Drafter ?? NewDrafter(settings.Draft);
        SpeculativeEngine engine = SpeculativeEngine.Create(model, benchmark.Tokenizer, drafter, new SpeculativeEngineOptions
        {
            MaxDraftTokens = drafter is null ? 0 : budget,
            AdaptiveSpeculation = settings.Adaptive,
            EndOfSequenceTokenIds = [],
            SkipPrefillForBenchmark = true,   // as EngineBench: prefill cost is measured elsewhere, its values do not matter
        });
        return new ModelHost(engine, settings.ServedModelName ?? "benchmark-" + Path.GetFileNameWithoutExtension(config), context, benchmark,
            drafter, cache, [engine, .. Owned(drafter, cache), model]);
    }

    /// <summary>The drafters other than suffix (which <see cref="ReplicaCache"/> makes).</summary>
    private static IDrafter? NewDrafter(string name) => name switch
    {
        "prompt-lookup" => new PromptLookupDrafter(),
        _ => null,
    };

    /// <summary>What the host frees after the engine: the suffix cache (which flushes and stops sharing, then frees its
    /// drafter) or the other drafter.</summary>
    private static IDisposable[] Owned(IDrafter? drafter, ReplicaCache? cache) => cache is not null ? [cache] : drafter is null ? [] : [drafter];

    /// <summary>Stops the engine (requests still running fail), then frees the drafter (sending its last responses to
    /// the fleet first, when shared) and the model.</summary>
    public void Dispose()
    {
        foreach (IDisposable owned in _owned)
        {
            owned.Dispose();
        }
    }
}
