using System.Text.Json;

namespace SpecDecode.Tree;

/// <summary>The decoder architectures the target model implements.</summary>
public enum ModelArchitecture
{
    /// <summary>Llama 2, 3, 3.1 and 3.2 (<c>LlamaForCausalLM</c>).</summary>
    Llama,

    /// <summary>Mistral (<c>MistralForCausalLM</c>), without sliding-window attention.</summary>
    Mistral,

    /// <summary>Qwen2 and Qwen2.5 (<c>Qwen2ForCausalLM</c>): bias on the q, k and v projections.</summary>
    Qwen2,

    /// <summary>Qwen3 (<c>Qwen3ForCausalLM</c>): RMSNorm on each head of q and k, explicit head size.</summary>
    Qwen3,
}

/// <summary>How rotary position embeddings are computed.</summary>
public enum RopeType
{
    /// <summary>Plain RoPE with base <see cref="ModelConfig.RopeTheta"/>.</summary>
    Default,

    /// <summary>Llama 3.1's frequency-dependent scaling (<c>rope_type: llama3</c>).</summary>
    Llama3,
}

/// <summary>Thrown when a checkpoint's config.json cannot be used: missing, malformed, inconsistent, or describing an
/// architecture or setting this library does not implement (never run wrong).</summary>
public sealed class ModelConfigException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public ModelConfigException(string path, string message, Exception? inner = null)
        : base($"{path}: {message}", inner)
    {
        Path = path;
    }

    /// <summary>The config file.</summary>
    public string Path { get; }
}

/// <summary>
/// A validated Llama-family configuration read from a Hugging Face <c>config.json</c>, with defaults resolved
/// (key/value heads, head size, q/k/v bias) and both config styles read: the hub style (<c>rope_theta</c> and
/// <c>rope_scaling</c> at the top level, <c>torch_dtype</c>) and the transformers-5 style (<c>rope_parameters</c>,
/// <c>dtype</c>).
/// </summary>
public sealed partial class ModelConfig
{
    private ModelConfig() { }

    /// <summary>The architecture.</summary>
    public ModelArchitecture Architecture { get; private init; }

    /// <summary>Model width (<c>hidden_size</c>).</summary>
    public int HiddenSize { get; private init; }

    /// <summary>MLP width (<c>intermediate_size</c>).</summary>
    public int IntermediateSize { get; private init; }

    /// <summary>Decoder layers.</summary>
    public int LayerCount { get; private init; }

    /// <summary>Query heads.</summary>
    public int HeadCount { get; private init; }

    /// <summary>Key/value heads (grouped-query attention when fewer than <see cref="HeadCount"/>).</summary>
    public int KeyValueHeadCount { get; private init; }

    /// <summary>Size of one head (<c>head_dim</c>, else hidden size / heads).</summary>
    public int HeadDim { get; private init; }

    /// <summary>Rows of the embedding table.</summary>
    public int VocabSize { get; private init; }

    /// <summary>Longest context the model was trained for.</summary>
    public int MaxPositionEmbeddings { get; private init; }

    /// <summary>Epsilon of every RMSNorm.</summary>
    public double RmsNormEps { get; private init; }

    /// <summary>RoPE base.</summary>
    public double RopeTheta { get; private init; }

    /// <summary>RoPE variant.</summary>
    public RopeType Rope { get; private init; }

    /// <summary>Llama 3 scaling: factor (1 for <see cref="RopeType.Default"/>).</summary>
    public double RopeFactor { get; private init; } = 1;

    /// <summary>Llama 3 scaling: low-frequency factor.</summary>
    public double RopeLowFreqFactor { get; private init; } = 1;

    /// <summary>Llama 3 scaling: high-frequency factor.</summary>
    public double RopeHighFreqFactor { get; private init; } = 1;

    /// <summary>Llama 3 scaling: the context length before scaling.</summary>
    public int RopeOriginalMaxPositions { get; private init; }

    /// <summary>Whether the output projection shares the embedding table.</summary>
    public bool TieWordEmbeddings { get; private init; }

    /// <summary>Bias on the q, k and v projections (always for Qwen2, else <c>attention_bias</c>).</summary>
    public bool QkvBias { get; private init; }

    /// <summary>Bias on the attention output projection (<c>attention_bias</c> for Llama-style models).</summary>
    public bool OutputBias { get; private init; }

    /// <summary>Bias on the MLP projections.</summary>
    public bool MlpBias { get; private init; }

    /// <summary>Per-head RMSNorm on q and k (Qwen3).</summary>
    public bool QkNorm { get; private init; }

    /// <summary>The weights' dtype as the checkpoint states it (<c>float32</c>, <c>float16</c>, <c>bfloat16</c>), or null.</summary>
    public string? DType { get; private init; }

    /// <summary>Beginning-of-sequence token, if the config names one.</summary>
    public int? BosTokenId { get; private init; }

    /// <summary>End-of-sequence tokens named by the config (one or several; empty when none).</summary>
    public IReadOnlyList<int> EosTokenIds { get; private init; } = [];

    /// <summary>Reads and validates <c>config.json</c> (a file, or a checkpoint folder holding one).</summary>
    /// <exception cref="ModelConfigException">The file is missing or malformed, a required field is missing, the shapes
    /// are inconsistent, or the architecture, activation or RoPE type is not implemented.</exception>
    public static ModelConfig Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string file = Directory.Exists(path) ? System.IO.Path.Combine(path, "config.json") : path;
        if (!File.Exists(file))
        {
            throw new ModelConfigException(file, "config.json not found: pass a Hugging Face checkpoint folder or its config.json.");
        }
        using FileStream stream = File.OpenRead(file);
        return Parse(stream, file);
    }

    /// <summary>Reads and validates a config from a stream; <paramref name="name"/> appears in error messages.</summary>
    /// <exception cref="ModelConfigException">As for <see cref="Load"/>.</exception>
    public static ModelConfig Parse(Stream json, string name)
    {
        ArgumentNullException.ThrowIfNull(json);
        RawModelConfig raw;
        try
        {
            raw = JsonSerializer.Deserialize<RawModelConfig>(json) ?? throw new JsonException("the file holds null");
        }
        catch (JsonException ex)
        {
            throw new ModelConfigException(name, $"not valid config JSON ({ex.Message}).", ex);
        }
        return Resolve(raw, name);
    }

    private static ModelConfig Resolve(RawModelConfig raw, string name)
    {
        ModelArchitecture architecture = ArchitectureOf(raw, name);
        int hidden = Required(raw.HiddenSize, "hidden_size", name);
        int heads = Required(raw.NumAttentionHeads, "num_attention_heads", name);
        int kvHeads = raw.NumKeyValueHeads ?? heads;
        int headDim = raw.HeadDim ?? (heads > 0 && hidden % heads == 0 ? hidden / heads : 0);
        int layers = Required(raw.NumHiddenLayers, "num_hidden_layers", name);
        int intermediate = Required(raw.IntermediateSize, "intermediate_size", name);
        int vocab = Required(raw.VocabSize, "vocab_size", name);
        if (headDim <= 0)
        {
            throw new ModelConfigException(name, $"hidden_size {hidden} is not a multiple of num_attention_heads {heads} and head_dim is not given.");
        }
        if (kvHeads <= 0 || heads % kvHeads != 0)
        {
            throw new ModelConfigException(name, $"num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}.");
        }
        if (raw.HiddenAct is { } act && act != "silu")
        {
            throw new ModelConfigException(name, $"hidden_act '{act}' is not implemented (only silu).");
        }
        if (raw.UseSlidingWindow == true)
        {
            throw new ModelConfigException(name, "use_sliding_window is true: sliding-window attention is not implemented.");
        }

        RawRopeParameters? rope = raw.RopeParameters ?? raw.RopeScaling;
        double theta = raw.RopeParameters?.RopeTheta ?? raw.RopeTheta ?? 10000.0;
        string ropeType = rope?.RopeType ?? rope?.LegacyType ?? "default";
        RopeType ropeKind = ropeType switch
        {
            "default" => RopeType.Default,
            "llama3" => RopeType.Llama3,
            _ => throw new ModelConfigException(name, $"rope type '{ropeType}' is not implemented (default or llama3)."),
        };
        if (ropeKind == RopeType.Llama3 && (rope!.Factor is null || rope.OriginalMaxPositionEmbeddings is null))
        {
            throw new ModelConfigException(name, "rope type llama3 needs factor and original_max_position_embeddings.");
        }

        string? dtype = raw.Dtype ?? raw.TorchDtype;
        if (dtype is not null && dtype is not ("float32" or "float16" or "bfloat16"))
        {
            throw new ModelConfigException(name, $"dtype '{dtype}' is not supported (float32, float16 or bfloat16).");
        }
        bool attentionBias = raw.AttentionBias ?? false;
        return new ModelConfig
        {
            Architecture = architecture,
            HiddenSize = Positive(hidden, "hidden_size", name),
            IntermediateSize = Positive(intermediate, "intermediate_size", name),
            LayerCount = Positive(layers, "num_hidden_layers", name),
            HeadCount = Positive(heads, "num_attention_heads", name),
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            VocabSize = Positive(vocab, "vocab_size", name),
            MaxPositionEmbeddings = raw.MaxPositionEmbeddings ?? 2048,
            RmsNormEps = raw.RmsNormEps ?? 1e-6,
            RopeTheta = theta,
            Rope = ropeKind,
            RopeFactor = ropeKind == RopeType.Llama3 ? rope!.Factor!.Value : 1,
            RopeLowFreqFactor = rope?.LowFreqFactor ?? 1,
            RopeHighFreqFactor = rope?.HighFreqFactor ?? 4,
            RopeOriginalMaxPositions = rope?.OriginalMaxPositionEmbeddings ?? raw.MaxPositionEmbeddings ?? 2048,
            TieWordEmbeddings = raw.TieWordEmbeddings ?? false,
            QkvBias = architecture == ModelArchitecture.Qwen2 || attentionBias,
            OutputBias = architecture != ModelArchitecture.Qwen2 && attentionBias,
            MlpBias = raw.MlpBias ?? false,
            QkNorm = architecture == ModelArchitecture.Qwen3,
            DType = dtype,
            BosTokenId = TokenIds(raw.BosTokenId, "bos_token_id", name) is [int bos, ..] ? bos : null,
            EosTokenIds = TokenIds(raw.EosTokenId, "eos_token_id", name),
        };
    }

    private static ModelArchitecture ArchitectureOf(RawModelConfig raw, string name)
    {
        string? declared = raw.Architectures is { Length: > 0 } a ? a[0] : null;
        return (declared, raw.ModelType) switch
        {
            ("LlamaForCausalLM", _) or (null, "llama") => ModelArchitecture.Llama,
            ("MistralForCausalLM", _) or (null, "mistral") => ModelArchitecture.Mistral,
            ("Qwen2ForCausalLM", _) or (null, "qwen2") => ModelArchitecture.Qwen2,
            ("Qwen3ForCausalLM", _) or (null, "qwen3") => ModelArchitecture.Qwen3,
            _ => throw new ModelConfigException(name,
                $"architecture '{declared ?? raw.ModelType ?? "(none)"}' is not implemented: Llama, Mistral, Qwen2 and Qwen3 are."),
        };
    }

    private static int Required(int? value, string field, string name) =>
        value ?? throw new ModelConfigException(name, $"required field '{field}' is missing.");

    private static int Positive(int value, string field, string name) =>
        value > 0 ? value : throw new ModelConfigException(name, $"'{field}' must be positive, not {value}.");

    private static int[] TokenIds(JsonElement? element, string field, string name)
    {
        if (element is not { } e || e.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        try
        {
            return e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().Select(x => x.GetInt32()).ToArray() : [e.GetInt32()];
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            throw new ModelConfigException(name, $"'{field}' must be a token id or a list of them.", ex);
        }
    }
}
