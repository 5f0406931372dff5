using Microsoft.ML.Tokenizers;
using Spectre.Console;
using SpecDecode.Suffix;
using SpecDecode.Tree;
using SpecDecode.Tokenization;
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

/// <summary>Finds and loads the checkpoint folders, the drafter and the engine, turning each failure a new user can hit
/// into a <see cref="GeneratorException"/> that says what to do.</summary>
public static class ModelLoading
{
    /// <summary>Where the embedded default model lives, relative to the repository root (or the app's folder).</summary>
    public const string DefaultModelRelativePath = "models/default";

    /// <summary>The dtypes <c>--dtype</c> accepts.</summary>
    public static readonly string[] DTypeNames = ["float32", "float16", "bfloat16"];

    private const string FolderHint = "a Hugging Face checkpoint folder holds config.json, the *.safetensors weights and tokenizer.json";

    /// <summary>The folders searched for the default model: models/default under the repository root found above the
    /// app's folder and above the working directory, then under the app's folder.</summary>
    public static IReadOnlyList<string> DefaultModelCandidates()
    {
        var candidates = new List<string>();
        foreach (string start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (DirectoryInfo? dir = new(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
                {
                    candidates.Add(Path.GetFullPath(Path.Combine(dir.FullName, DefaultModelRelativePath)));
                    break;
                }
            }
        }
        candidates.Add(Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, DefaultModelRelativePath)));
        return candidates.Distinct().ToList();
    }

    /// <summary>Where the embedded default draft model lives, beside the default model.</summary>
    public const string DefaultDraftModelRelativePath = "models/default-draft";

    /// <summary>The embedded draft model's folder when <paramref name="targetFolder"/> is the embedded default model and
    /// the draft is there; otherwise null (a draft model must then be named).</summary>
    public static string? DefaultDraftFolder(string targetFolder)
    {
        string target = Path.GetFullPath(targetFolder).TrimEnd(Path.DirectorySeparatorChar);
        if (!string.Equals(Path.GetFileName(target), Path.GetFileName(DefaultModelRelativePath), StringComparison.Ordinal) ||
            !DefaultModelCandidates().Any(c => string.Equals(Path.GetFullPath(c).TrimEnd(Path.DirectorySeparatorChar), target, StringComparison.Ordinal)))
        {
            return null;
        }
        string draft = Path.Combine(Path.GetDirectoryName(target)!, Path.GetFileName(DefaultDraftModelRelativePath));
        return Directory.Exists(draft) ? draft : null;
    }

    /// <summary>The model folder to load: <paramref name="folder"/>, or the first default candidate that exists.</summary>
    /// <exception cref="GeneratorException">The folder (or every default candidate) is missing.</exception>
    public static string ResolveModelFolder(string? folder)
    {
        if (folder is not null)
        {
            string full = Path.GetFullPath(folder);
            if (!Directory.Exists(full))
            {
                throw new GeneratorException($"The model folder {full} does not exist. Pass --model <folder> with an existing checkpoint folder ({FolderHint}).");
            }
            return full;
        }
        IReadOnlyList<string> candidates = DefaultModelCandidates();
        return candidates.FirstOrDefault(Directory.Exists)
            ?? throw new GeneratorException(
                $"No model given and the embedded default model is missing: looked for {string.Join(" and ", candidates)}. " +
                $"Pass --model <folder> with a checkpoint folder ({FolderHint}), e.g. --model ~/models/Qwen2.5-0.5B-Instruct.");
    }

    /// <summary>The device a model loads on when none is named: libtorch's default, or the CPU when libtorch does not load
    /// (loading then reports that itself).</summary>
    private static Device DefaultDeviceOrCpu()
    {
        try
        {
            return TorchRuntime.DefaultDevice;
        }
        catch (InvalidOperationException)
        {
            return CPU;
        }
    }

    /// <summary>Resolves the device (checking that CUDA is there when asked for) and the dtype.</summary>
    /// <exception cref="GeneratorException">CUDA was asked for but is not available, or libtorch does not load.</exception>
    public static (Device? Device, ScalarType? DType) Placement(GeneratorSettings settings)
    {
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
                throw new GeneratorException(e.Message, ExitCodes.Usage, e);
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
    /// <exception cref="GeneratorException">Missing folder, no or unsupported tokenizer, bad config or weights, bad chat
    /// template, chat mode without a template, or no CUDA.</exception>
    public static LoadedTarget LoadTarget(GeneratorSettings settings, IAnsiConsole console)
    {
        string folder = ResolveModelFolder(settings.ModelFolder);
        Tokenizer tokenizer = LoadTokenizer(folder, "--model");
        ChatTemplate? template;
        try
        {
            template = ChatTemplate.Load(folder);
        }
        catch (ChatTemplateException e)
        {
            throw new GeneratorException($"The chat template of {folder} does not load: {e.Message}", ExitCodes.Usage, e);
        }
        if (settings.Chat && template is null)
        {
            throw new GeneratorException(
                $"Chat mode needs the checkpoint's chat template, and {folder} has none (no chat_template.jinja, chat_template.json or " +
                "chat_template in tokenizer_config.json: a base model?). Run without --chat to continue a plain prompt, or use an " +
                "instruct checkpoint.");
        }
        (Device? device, ScalarType? dtype) = Placement(settings);
        bool graphs = settings.CudaGraphs && (device ?? DefaultDeviceOrCpu()).type == TorchSharp.DeviceType.CUDA;
        TargetModelOptions Options(bool cudaGraphs) =>
            new() { Device = device, DType = dtype, MaxBatch = 1, MaxContext = settings.MaxContext, CudaGraphs = cudaGraphs };
        TargetModel model;
        try
        {
            model = WithStatus(console, $"Loading {Describe(folder)} ...",
                () => LoadModel(() => TargetModel.Load(folder, Options(graphs)), folder));
        }
        catch (NotSupportedException e) when (graphs)
        {
            // CUDA graphs cannot work with this libtorch or model: plain steps take the usual path
            console.MarkupLine(Markup.Escape($"note: plain decoding without CUDA graphs ({e.Message})"));
            model = WithStatus(console, $"Loading {Describe(folder)} ...", () => LoadModel(() => TargetModel.Load(folder, Options(false)), folder));
        }
        string steps = !model.UsesCudaGraphs ? "" : model.UsesDecodeKernels ? "; plain steps as CUDA graphs of the decode-step kernels" : "; plain steps as CUDA graphs";
        console.MarkupLine(Markup.Escape($"Loaded {folder}: {model.Config.LayerCount} layers, vocabulary {model.Config.VocabSize}, on {model.Device.type.ToString().ToLowerInvariant()} as {model.DType}{steps}."));
        return new LoadedTarget(folder, model, tokenizer, template);
    }

    /// <summary>Creates the drafter <paramref name="kind"/> asks for (loading a draft model under a spinner).</summary>
    /// <exception cref="GeneratorException">No or a missing draft model folder, or a draft model that does not load.</exception>
    public static LoadedDrafter CreateDrafter(DraftKind kind, GeneratorSettings settings, LoadedTarget target, IAnsiConsole console)
    {
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
        string? draftFolder = settings.DraftModelFolder ?? DefaultDraftFolder(target.Folder);
        if (draftFolder is null)
        {
            throw new GeneratorException($"--draft {settings.DraftName} needs the draft model's checkpoint folder: pass --draft-model <folder> (a small model with the target's tokenizer), or choose --draft suffix.");
        }
        string folder = Path.GetFullPath(draftFolder);
        if (!Directory.Exists(folder))
        {
            throw new GeneratorException($"The draft model folder {folder} does not exist. Pass --draft-model <folder> with an existing checkpoint folder ({FolderHint}).");
        }
        var options = new DraftModelOptions
        {
            MaxRequests = 1,
            MaxContext = settings.MaxContext + 64,
            Device = target.Model.Device,
            DType = target.Model.DType,
        };
        DraftModelDrafter model = WithStatus(console, $"Loading the draft model {Describe(folder)} ...", () => LoadModel(() => DraftModelDrafter.Load(folder, options), folder));
        if (kind == DraftKind.DraftModel)
        {
            return new LoadedDrafter(model, model);
        }
        var cheap = new SuffixDrafter();
        return new LoadedDrafter(new HybridDrafter(cheap, model), cheap, model);
    }

    /// <summary>Creates the engine, measuring the verification cost first when adaptive speculation is on.</summary>
    /// <exception cref="GeneratorException">The draft model's vocabulary differs from the target's, or an option is out
    /// of range for this model.</exception>
    public static SpeculativeEngine CreateEngine(LoadedTarget target, IDrafter? drafter, GeneratorSettings settings, IAnsiConsole console)
    {
        var options = new SpeculativeEngineOptions
        {
            MaxBatch = 1,
            MaxDraftTokens = drafter is null ? 0 : settings.Budget,
            AdaptiveSpeculation = settings.Adaptive,
            ChatTemplate = target.ChatTemplate,
        };
        try
        {
            return drafter is not null && settings.Adaptive && settings.Budget > 0
                ? WithStatus(console, "Measuring the verification cost for adaptive speculation ...", () => SpeculativeEngine.Create(target.Model, target.Tokenizer, drafter, options))
                : SpeculativeEngine.Create(target.Model, target.Tokenizer, drafter, options);
        }
        catch (VocabularyMismatchException e)
        {
            throw new GeneratorException(
                $"The draft model does not share the target's vocabulary: {e.Message} Pass a --draft-model of the same tokenizer " +
                "family as --model (e.g. Qwen2.5-0.5B for Qwen2.5-7B, Llama-3.2-1B for Llama-3.1-8B), or use --draft suffix.", ExitCodes.Usage, e);
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new GeneratorException($"An option does not fit this model: {e.Message}", ExitCodes.Usage, e);
        }
    }

    private static Tokenizer LoadTokenizer(string folder, string option)
    {
        try
        {
            return CheckpointTokenizer.Load(folder);
        }
        catch (TokenizerLoadException e)
        {
            throw new GeneratorException(
                $"The tokenizer of {folder} does not load: {e.Message} Copy the checkpoint's tokenizer.json (or tokenizer.model, or " +
                $"vocab.json + merges.txt) into the folder, or pass another folder with {option}.", ExitCodes.Usage, e);
        }
    }

    private static T LoadModel<T>(Func<T> load, string folder)
    {
        try
        {
            return load();
        }
        catch (Exception e) when (e is ModelConfigException or SafeTensorsException or TokenizerLoadException)
        {
            throw new GeneratorException($"The checkpoint in {folder} does not load: {e.Message} ({FolderHint}.)", ExitCodes.Usage, e);
        }
        catch (InvalidOperationException e) when (e.Message.Contains("libtorch", StringComparison.Ordinal))
        {
            throw new GeneratorException(e.Message, ExitCodes.Usage, e);
        }
    }

    /// <summary>Runs <paramref name="work"/> under a spinner on a terminal, after a plain line otherwise.</summary>
    public static T WithStatus<T>(IAnsiConsole console, string what, Func<T> work)
    {
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
