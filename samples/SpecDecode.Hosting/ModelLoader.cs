using System.Runtime.InteropServices;
using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Tokenization;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.Hosting;

/// <summary>
/// Loads what a host needs from a checkpoint folder, turning every failure a user can cause into a
/// <see cref="ToolUsageException"/> whose one-line message names the folder or option and says what to do: the config
/// and the fit of the context and memory first (<see cref="Plan"/>, before any weight is read), then the tokenizer, the
/// chat template and the weights.
/// </summary>
public static class ModelLoader
{
    /// <summary>Reads config.json and fits the context and memory to the model: <paramref name="requestedContext"/> (or the
    /// model's <c>max_position_embeddings</c> capped at <see cref="ModelFit.DefaultContextCap"/>) must not pass the
    /// model's, and on the CPU the weights and the preallocated KV cache of <paramref name="slots"/> sequences must fit the
    /// memory available.</summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="requestedContext">The context asked for, or null for the model's (capped).</param>
    /// <param name="slots">Concurrent sequences (the KV cache's slots).</param>
    /// <param name="device">The device, or null for libtorch's default.</param>
    /// <param name="dtype">The dtype, or null for the default of the device.</param>
    /// <param name="cudaGraphs">TargetModelOptions.CudaGraphs (ignored off CUDA).</param>
    /// <param name="contextOption">The option that sets the context, for messages.</param>
    /// <exception cref="ToolUsageException">The config does not load, or the context or memory does not fit.</exception>
    public static ModelPlan Plan(string folder, int? requestedContext, int slots, Device? device, ScalarType? dtype, bool cudaGraphs,
        string contextOption = "--max-context")
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ModelConfig config = Loading(() => ModelConfig.Load(folder), folder, contextOption);
        int context = ModelFit.Context(requestedContext, config.MaxPositionEmbeddings, Path.Combine(folder, "config.json"), contextOption);
        Device target = device ?? DefaultDeviceOrCpu();
        TargetModelOptions Options(ScalarType? type) => new()
        {
            Device = device,
            DType = type,
            MaxBatch = slots,
            MaxContext = context,
            CudaGraphs = cudaGraphs && target.type == TorchSharp.DeviceType.CUDA,
        };
        TargetModelOptions options = Options(dtype);
        if (target.type == TorchSharp.DeviceType.CPU && ModelFit.AvailableMemoryBytes() is long available)
        {
            // on the CPU weights load as float32 unless told otherwise (MemoryEstimate assumes CUDA's half type)
            MemoryEstimate need = MemoryEstimate.For(config, Options(dtype ?? ScalarType.Float32));
            ModelFit.EnsureMemory(need.WeightBytes, need.KvBytesPerToken, slots, context, available, option: contextOption);
        }
        return new ModelPlan(folder, config, options);
    }

    /// <summary>Loads the weights of <paramref name="plan"/>.</summary>
    /// <exception cref="ToolUsageException">The checkpoint does not load, libtorch is missing, or the device ran out of
    /// memory.</exception>
    /// <exception cref="NotSupportedException">CUDA graphs were asked for and cannot work here (the caller may retry
    /// without).</exception>
    public static TargetModel Load(ModelPlan plan, string contextOption = "--max-context")
    {
        ArgumentNullException.ThrowIfNull(plan);
        return Loading(() => TargetModel.Load(plan.Folder, plan.Options), plan.Folder, contextOption);
    }

    /// <summary>The checkpoint's tokenizer.</summary>
    /// <exception cref="ToolUsageException">It does not load; the message says which files to copy.</exception>
    public static Tokenizer LoadTokenizer(string folder, string option = "--model")
    {
        try
        {
            return CheckpointTokenizer.Load(folder);
        }
        catch (TokenizerLoadException e)
        {
            throw new ToolUsageException(
                $"The tokenizer of {folder} does not load: {e.Message} Copy the checkpoint's tokenizer.json (or tokenizer.model, or " +
                $"vocab.json + merges.txt) into the folder, or pass another folder with {option}.", e);
        }
    }

    /// <summary>The checkpoint's chat template, or null when it has none.</summary>
    /// <exception cref="ToolUsageException">It exists but does not load.</exception>
    public static ChatTemplate? LoadChatTemplate(string folder)
    {
        try
        {
            return ChatTemplate.Load(folder);
        }
        catch (ChatTemplateException e)
        {
            throw new ToolUsageException($"The chat template of {folder} does not load: {e.Message}", e);
        }
    }

    /// <summary>Runs <paramref name="load"/> (a model or draft model loading from <paramref name="folder"/>) and turns its
    /// input failures into <see cref="ToolUsageException"/>s.</summary>
    public static T Loading<T>(Func<T> load, string folder, string contextOption = "--max-context")
    {
        ArgumentNullException.ThrowIfNull(load);
        try
        {
            return load();
        }
        catch (Exception e) when (e is ModelConfigException or SafeTensorsException or TokenizerLoadException)
        {
            throw new ToolUsageException($"The checkpoint in {folder} does not load: {e.Message} ({DefaultModel.FolderHint}.)", e);
        }
        catch (InvalidOperationException e) when (e.Message.Contains("libtorch", StringComparison.Ordinal))
        {
            throw new ToolUsageException(ToolRunner.FirstLine(e.Message), e);
        }
        catch (Exception e) when (e is OutOfMemoryException || (e is ExternalException && IsAllocationFailure(e.Message)))
        {
            throw new ToolUsageException(
                $"Loading {folder} ran out of memory ({ToolRunner.FirstLine(e.Message)}); give a smaller {contextOption}, fewer concurrent sequences, or a smaller dtype.", e);
        }
    }

    /// <summary>Whether a libtorch error is an allocation failure (CPU or CUDA allocator).</summary>
    public static bool IsAllocationFailure(string message) =>
        message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || message.Contains("can't allocate memory", StringComparison.OrdinalIgnoreCase)
        || message.Contains("not enough memory", StringComparison.OrdinalIgnoreCase);

    /// <summary>The device a model loads on when none is named: libtorch's default, or the CPU when libtorch does not
    /// load (loading then reports that itself).</summary>
    public static Device DefaultDeviceOrCpu()
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
}
