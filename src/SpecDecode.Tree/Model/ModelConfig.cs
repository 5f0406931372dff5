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
public sealed class ModelConfigException : SpecDecodeException
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
public sealed class ModelConfig
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
        int hidden = Bounded(Required(raw.HiddenSize, "hidden_size", name), "hidden_size", 1, ConfigBounds.MaxHiddenSize, name);
        int heads = Bounded(Required(raw.NumAttentionHeads, "num_attention_heads", name), "num_attention_heads", 1, ConfigBounds.MaxHeads, name);
        int kvHeads = raw.NumKeyValueHeads is int kv ? Bounded(kv, "num_key_value_heads", 1, ConfigBounds.MaxHeads, name) : heads;
        int layers = Bounded(Required(raw.NumHiddenLayers, "num_hidden_layers", name), "num_hidden_layers", 1, ConfigBounds.MaxLayers, name);
        int intermediate = Bounded(Required(raw.IntermediateSize, "intermediate_size", name), "intermediate_size", 1, ConfigBounds.MaxIntermediateSize, name);
        int vocab = Bounded(Required(raw.VocabSize, "vocab_size", name), "vocab_size", 1, ConfigBounds.MaxVocabSize, name);
        int headDim;
        if (raw.HeadDim is int given)
        {
            headDim = Bounded(given, "head_dim", 2, ConfigBounds.MaxHeadDim, name);
        }
        else if (hidden % heads == 0)
        {
            headDim = Bounded(hidden / heads, "head_dim", 2, ConfigBounds.MaxHeadDim, name, " (hidden_size / num_attention_heads, as head_dim is not given)");
        }
        else
        {
            throw new ModelConfigException(name, $"hidden_size {hidden} is not a multiple of num_attention_heads {heads} and head_dim is not given.");
        }
        if (headDim % 2 != 0)
        {
            throw new ModelConfigException(name, $"'head_dim' is {headDim}: rotary position embeddings rotate pairs of dimensions, so it must be even. {ConfigBounds.Advice}");
        }
        if (heads % kvHeads != 0)
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
        int maxPositions = raw.MaxPositionEmbeddings is int positions
            ? Bounded(positions, "max_position_embeddings", 1, ConfigBounds.MaxPositions, name)
            : 2048;
        double eps = raw.RmsNormEps is double e ? Between(e, "rms_norm_eps", 0, 1, name) : 1e-6;

        RawRopeParameters? rope = raw.RopeParameters ?? raw.RopeScaling;
        string thetaKey = raw.RopeParameters?.RopeTheta is not null ? "rope_parameters.rope_theta" : "rope_theta";
        double theta = Between(raw.RopeParameters?.RopeTheta ?? raw.RopeTheta ?? 10000.0, thetaKey, 0, double.MaxValue, name);
        string ropeType = rope?.RopeType ?? rope?.LegacyType ?? "default";
        RopeType ropeKind = ropeType switch
        {
            "default" => RopeType.Default,
            "llama3" => RopeType.Llama3,
            _ => throw new ModelConfigException(name, $"rope type '{ropeType}' is not implemented (default or llama3)."),
        };
        double ropeFactor = 1, lowFreq = rope?.LowFreqFactor ?? 1, highFreq = rope?.HighFreqFactor ?? 4;
        int originalPositions = rope?.OriginalMaxPositionEmbeddings ?? raw.MaxPositionEmbeddings ?? 2048;
        if (ropeKind == RopeType.Llama3)
        {
            if (rope!.Factor is null || rope.OriginalMaxPositionEmbeddings is null)
            {
                throw new ModelConfigException(name, "rope type llama3 needs factor and original_max_position_embeddings.");
            }
            ropeFactor = Between(rope.Factor.Value, "factor", 0, double.MaxValue, name);
            lowFreq = Between(lowFreq, "low_freq_factor", 0, double.MaxValue, name);
            highFreq = Between(highFreq, "high_freq_factor", 0, double.MaxValue, name);
            originalPositions = Bounded(originalPositions, "original_max_position_embeddings", 1, ConfigBounds.MaxPositions, name);
            if (highFreq <= lowFreq)
            {
                throw new ModelConfigException(name,
                    $"'high_freq_factor' ({F(highFreq)}) must exceed 'low_freq_factor' ({F(lowFreq)}): llama3 scaling divides by their difference. {ConfigBounds.Advice}");
            }
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
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            LayerCount = layers,
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            VocabSize = vocab,
            MaxPositionEmbeddings = maxPositions,
            RmsNormEps = eps,
            RopeTheta = theta,
            Rope = ropeKind,
            RopeFactor = ropeFactor,
            RopeLowFreqFactor = lowFreq,
            RopeHighFreqFactor = highFreq,
            RopeOriginalMaxPositions = originalPositions,
            TieWordEmbeddings = raw.TieWordEmbeddings ?? false,
            QkvBias = architecture == ModelArchitecture.Qwen2 || attentionBias,
            OutputBias = architecture != ModelArchitecture.Qwen2 && attentionBias,
            MlpBias = raw.MlpBias ?? false,
            QkNorm = architecture == ModelArchitecture.Qwen3,
            DType = dtype,
            BosTokenId = TokenIds(raw.BosTokenId, "bos_token_id", vocab, name) is [int bos, ..] ? bos : null,
            EosTokenIds = TokenIds(raw.EosTokenId, "eos_token_id", vocab, name),
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

    /// <summary><paramref name="value"/> when it lies in [<paramref name="min"/>, <paramref name="max"/>]; otherwise a
    /// refusal naming the key, the value and the bounds (see <see cref="ConfigBounds"/>).</summary>
    private static int Bounded(int value, string key, int min, int max, string name, string derived = "") =>
        value >= min && value <= max
            ? value
            : throw new ModelConfigException(name, $"'{key}'{derived} is {value}, outside {min} .. {max}. {ConfigBounds.Advice}");

    /// <summary><paramref name="value"/> when it is finite and lies in the open interval (<paramref name="above"/>,
    /// <paramref name="below"/>) (below <see cref="double.MaxValue"/> means any finite value); otherwise a refusal.</summary>
    private static double Between(double value, string key, double above, double below, string name) =>
        double.IsFinite(value) && value > above && (value < below || below == double.MaxValue)
            ? value
            : throw new ModelConfigException(name, below == double.MaxValue
                ? $"'{key}' is {F(value)}; it must be a finite number above {F(above)}. {ConfigBounds.Advice}"
                : $"'{key}' is {F(value)}; it must lie strictly between {F(above)} and {F(below)}. {ConfigBounds.Advice}");

    private static string F(double value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The token ids of a <c>bos_token_id</c> or <c>eos_token_id</c> field (one id or a list), each inside the
    /// vocabulary when its size is known (else non-negative).</summary>
    internal static int[] TokenIds(JsonElement? element, string field, int? vocab, string name)
    {
        if (element is not { } e || e.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        IEnumerable<JsonElement> items = e.ValueKind == JsonValueKind.Array ? e.EnumerateArray() : [e];
        var ids = new List<int>();
        foreach (JsonElement item in items)
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int id) || (vocab is null && id < 0))
            {
                throw new ModelConfigException(name, $"'{field}' must be a token id or a list of them, not {Shorten(e.GetRawText())}.");
            }
            if (id < 0 || id >= vocab)
            {
                throw new ModelConfigException(name,
                    $"'{field}' {id} is outside the vocabulary (0 .. {vocab - 1}; config.json's vocab_size is {vocab}): a token the model can never read or emit. {ConfigBounds.Advice}");
            }
            ids.Add(id);
        }
        return [.. ids];
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..57] + "...";
}

/// <summary>
/// The largest values config.json may hold, about four times what the largest released decoders use (Llama 3.1 405B:
/// hidden 16,384, MLP 53,248, 126 layers, 128 heads; vocabularies up to 262,144; Llama 4 Scout: 10 M positions). A value
/// beyond them is a corrupt or foreign file, refused before it sizes a libtorch allocation (a hidden_size of 2e9 came
/// back from libtorch as a native allocation failure with a stack trace).
/// </summary>
internal static class ConfigBounds
{
    public const int MaxHiddenSize = 1 << 16;
    public const int MaxIntermediateSize = 1 << 18;
    public const int MaxLayers = 1024;
    public const int MaxHeads = 1024;
    public const int MaxHeadDim = 1024;
    public const int MaxVocabSize = 1 << 22;
    public const int MaxPositions = 1 << 26;

    /// <summary>What every refusal of a value ends with.</summary>
    public const string Advice = "The file is corrupt or not a decoder's config.json: restore the checkpoint's original file.";
}
