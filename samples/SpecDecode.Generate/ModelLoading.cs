using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Hosting;
using SpecDecode.Suffix;
using SpecDecode.Tokenization;
using SpecDecode.Tree;
using Spectre.Console;
using static TorchSharp.torch;

namespace SpecDecode.Generate;

/// <summary>A loaded target: model, tokenizer and chat template.</summary>
public sealed record LoadedTarget(string Folder, TargetModel Model, Tokenizer Tokenizer, ChatTemplate? ChatTemplate) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}

/// <summary>A drafter and what it owns (disposed after the engine that uses it).</summary>
public sealed class LoadedDrafter(IDrafter? drafter, params IDisposable[] owned) : IDisposable
{
    /// <summary>The drafter for the engine; null for plain decoding.</summary>
    public IDrafter? Drafter { get; } = drafter;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (IDisposable d in owned)
        {
            d.Dispose();
        }
    }
}

/// <summary>Finds, fits and loads the checkpoint folders, the drafter and the engine for the generator (the parts the
/// hosts share live in SpecDecode.Hosting), turning each failure a new user can hit into a one-line message that says what
/// to do.</summary>
public static class ModelLoading
{
    /// <summary>Where the embedded default model lives, relative to the repository root (or the app's folder).</summary>
    public const string DefaultModelRelativePath = DefaultModel.RelativePath;

    /// <summary>Where the embedded default draft model lives, beside the default model.</summary>
    public const string DefaultDraftModelRelativePath = DefaultModel.DraftRelativePath;

    /// <summary>The dtypes <c>--dtype</c> accepts.</summary>
    public static readonly string[] DTypeNames = ["float32", "float16", "bfloat16"];

    /// <summary>Settings with the context, the draft budget and the tokens to generate fitted to the model named by
    /// <paramref name="settings"/> (read from its config.json, before any weight loads): the context must not pass the
    /// model's and, on the CPU, must fit the memory; the budget and the token count must fit the context. Values the user
    /// left out get defaults that fit.</summary>
    /// <exception cref="ToolUsageException">A value does not fit (named by its option), or the model folder or its config
    /// is unusable.</exception>
    public static GeneratorSettings FitToModel(GeneratorSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        int context = Plan(settings).Context;
        return settings with
        {
            MaxContext = context,
            Budget = ModelFit.DraftBudget(settings.Budget, context),
            MaxNewTokens = ModelFit.MaxNewTokens(settings.MaxNewTokens, context),
        };
    }

    private static ModelPlan Plan(GeneratorSettings settings)
    {
        string folder = DefaultModel.Resolve(settings.ModelFolder);
        (Device? device, ScalarType? dtype) = Placement(settings);
        return ModelLoader.Plan(folder, settings.MaxContext, slots: 1, device, dtype, settings.CudaGraphs);
    }

    /// <summary>Resolves the device (checking that CUDA is there when asked for) and the dtype.</summary>
    /// <exception cref="GeneratorException">CUDA was asked for but is not available, or libtorch does not load.</exception>
    public static (Device? Device, ScalarType? DType) Placement(GeneratorSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Device? device = null;
        if (settings.Device is not null)
        {
            Device available;
            try
            {
                available = TorchRuntime.DefaultDevice;
            }
            catch (InvalidOperationException e)
            {
                throw new GeneratorException(ToolRunner.FirstLine(e.Message), e);
            }
            if (settings.Device == "cuda" && available.type != TorchSharp.DeviceType.CUDA)
            {
                throw new GeneratorException(
                    "CUDA was requested (--device cuda) but the loaded libtorch has no CUDA device. Reference TorchSharp-cuda-linux " +
                    $"instead of TorchSharp-cpu, or set {TorchRuntime.LibTorchVariable} to the torch/lib folder of a CUDA PyTorch install " +
                    "(and check that nvidia-smi sees a GPU); or run on the CPU with --device cpu.");
            }
            device = settings.Device == "cuda" ? available : CPU;
        }
        ScalarType? dtype = settings.DType switch
        {
            null => null,
            "float32" => ScalarType.Float32,
            "float16" => ScalarType.Float16,
            "bfloat16" => ScalarType.BFloat16,
            string other => throw new GeneratorException($"--dtype {other} is not one of {string.Join(", ", DTypeNames)}."),
        };
        return (device, dtype);
    }

    /// <summary>Loads the tokenizer and chat template, then the weights under a progress spinner.</summary>
    /// <exception cref="ToolUsageException">Missing folder, no or unsupported tokenizer, bad config or weights, bad chat
    /// template, chat mode without a template, a context past the model's or the memory, or no CUDA.</exception>
    public static LoadedTarget LoadTarget(GeneratorSettings settings, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ModelPlan plan = Plan(settings);
        string folder = plan.Folder;
        Tokenizer tokenizer = ModelLoader.LoadTokenizer(folder);
        ChatTemplate? template = ModelLoader.LoadChatTemplate(folder);
        if (settings.Chat && template is null)
        {
            throw new GeneratorException(
                $"Chat mode needs the checkpoint's chat template, and {folder} has none (no chat_template.jinja, chat_template.json or " +
                "chat_template in tokenizer_config.json: a base model?). Run without --chat to continue a plain prompt, or use an " +
                "instruct checkpoint.");
        }
        TargetModel model;
        try
        {
            model = WithStatus(console, $"Loading {Describe(folder)} ...", () => ModelLoader.Load(plan));
        }
        catch (NotSupportedException e) when (plan.Options.CudaGraphs == true)
        {
            // CUDA graphs cannot work with this libtorch or model: plain steps take the usual path
            console.MarkupLine(Markup.Escape($"note: plain decoding without CUDA graphs ({e.Message})"));
            ModelPlan plain = ModelLoader.Plan(folder, plan.Context, 1, plan.Options.Device, plan.Options.DType, cudaGraphs: false);
            model = WithStatus(console, $"Loading {Describe(folder)} ...", () => ModelLoader.Load(plain));
        }
        string steps = !model.UsesCudaGraphs ? "" : model.UsesDecodeKernels ? "; plain steps as CUDA graphs of the decode-step kernels" : "; plain steps as CUDA graphs";
        console.MarkupLine(Markup.Escape($"Loaded {folder}: {model.Config.LayerCount} layers, vocabulary {model.Config.VocabSize}, context {plan.Context} tokens, on {model.Device.type.ToString().ToLowerInvariant()} as {model.DType}{steps}."));
        return new LoadedTarget(folder, model, tokenizer, template);
    }

    /// <summary>Creates the drafter <paramref name="kind"/> asks for (loading a draft model under a spinner).</summary>
    /// <exception cref="ToolUsageException">No or a missing draft model folder, or a draft model that does not load.</exception>
    public static LoadedDrafter CreateDrafter(DraftKind kind, GeneratorSettings settings, LoadedTarget target, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(target);
        switch (kind)
        {
            case DraftKind.None:
                return new LoadedDrafter(null);
            case DraftKind.Suffix:
                var suffix = new SuffixDrafter();
                return new LoadedDrafter(suffix, suffix);
            case DraftKind.PromptLookup:
                var lookup = new PromptLookupDrafter();
                return new LoadedDrafter(lookup, lookup);
        }
        string? draftFolder = settings.DraftModelFolder ?? DefaultModel.DraftFolderFor(target.Folder);
        if (draftFolder is null)
        {
            throw new GeneratorException($"--draft {settings.DraftName} needs the draft model's checkpoint folder: pass --draft-model <folder> (a small model with the target's tokenizer), or choose --draft suffix.");
        }
        string folder = Path.GetFullPath(draftFolder);
        if (!Directory.Exists(folder))
        {
            throw new GeneratorException($"The draft model folder {folder} does not exist. Pass --draft-model <folder> with an existing checkpoint folder ({DefaultModel.FolderHint}).");
        }
        var options = new DraftModelOptions
        {
            MaxRequests = 1,
            MaxContext = settings.Context + 64,
            Device = target.Model.Device,
            DType = target.Model.DType,
        };
        DraftModelDrafter model = WithStatus(console, $"Loading the draft model {Describe(folder)} ...",
            () => ModelLoader.Loading(() => DraftModelDrafter.Load(folder, options), folder));
        if (kind == DraftKind.DraftModel)
        {
            return new LoadedDrafter(model, model);
        }
        var cheap = new SuffixDrafter();
        return new LoadedDrafter(new HybridDrafter(cheap, model), cheap, model);
    }

    /// <summary>Creates the engine, measuring the verification cost first when adaptive speculation is on.</summary>
    /// <exception cref="GeneratorException">The draft model's vocabulary differs from the target's.</exception>
    public static SpeculativeEngine CreateEngine(LoadedTarget target, IDrafter? drafter, GeneratorSettings settings, IAnsiConsole console)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(settings);
        var options = new SpeculativeEngineOptions
        {
            MaxBatch = 1,
            MaxDraftTokens = drafter is null ? 0 : settings.DraftBudget,
            AdaptiveSpeculation = settings.Adaptive,
            ChatTemplate = target.ChatTemplate,
        };
        try
        {
            return drafter is not null && settings.Adaptive && settings.DraftBudget > 0
                ? WithStatus(console, "Measuring the verification cost for adaptive speculation ...", () => SpeculativeEngine.Create(target.Model, target.Tokenizer, drafter, options))
                : SpeculativeEngine.Create(target.Model, target.Tokenizer, drafter, options);
        }
        catch (VocabularyMismatchException e)
        {
            throw new GeneratorException(
                $"The draft model does not share the target's vocabulary: {e.Message} Pass a --draft-model of the same tokenizer " +
                "family as --model (e.g. Qwen2.5-0.5B for Qwen2.5-7B, Llama-3.2-1B for Llama-3.1-8B), or use --draft suffix.", e);
        }
    }

    /// <summary>Runs <paramref name="work"/> under a spinner on a terminal, after a plain line otherwise.</summary>
    public static T WithStatus<T>(IAnsiConsole console, string what, Func<T> work)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(work);
        if (console.Profile.Capabilities.Interactive)
        {
            return console.Status().Spinner(Spinner.Known.Dots).Start(Markup.Escape(what), _ => work());
        }
        console.WriteLine(what);
        return work();
    }

    private static string Describe(string folder)
    {
        long bytes = Directory.EnumerateFiles(folder, "*.safetensors").Sum(f => new FileInfo(f).Length);
        return $"{folder} ({bytes / (1024.0 * 1024.0):F1} MB of weights)";
    }
}
