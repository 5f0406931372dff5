using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpecDecode.Tree;

/// <summary>config.json as written by Hugging Face transformers (both the hub style and the transformers-5 style).
/// Every field carries its JSON name: a field without one is a setting that silently never loads.</summary>
internal sealed class RawModelConfig
{
    [JsonPropertyName("architectures")] public string[]? Architectures { get; init; }
    [JsonPropertyName("model_type")] public string? ModelType { get; init; }
    [JsonPropertyName("hidden_size")] public int? HiddenSize { get; init; }
    [JsonPropertyName("intermediate_size")] public int? IntermediateSize { get; init; }
    [JsonPropertyName("num_hidden_layers")] public int? NumHiddenLayers { get; init; }
    [JsonPropertyName("num_attention_heads")] public int? NumAttentionHeads { get; init; }
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; init; }
    [JsonPropertyName("head_dim")] public int? HeadDim { get; init; }
    [JsonPropertyName("vocab_size")] public int? VocabSize { get; init; }
    [JsonPropertyName("max_position_embeddings")] public int? MaxPositionEmbeddings { get; init; }
    [JsonPropertyName("rms_norm_eps")] public double? RmsNormEps { get; init; }
    [JsonPropertyName("rope_theta")] public double? RopeTheta { get; init; }
    [JsonPropertyName("rope_scaling")] public RawRopeParameters? RopeScaling { get; init; }
    [JsonPropertyName("rope_parameters")] public RawRopeParameters? RopeParameters { get; init; }
    [JsonPropertyName("tie_word_embeddings")] public bool? TieWordEmbeddings { get; init; }
    [JsonPropertyName("attention_bias")] public bool? AttentionBias { get; init; }
    [JsonPropertyName("mlp_bias")] public bool? MlpBias { get; init; }
    [JsonPropertyName("hidden_act")] public string? HiddenAct { get; init; }
    [JsonPropertyName("torch_dtype")] public string? TorchDtype { get; init; }
    [JsonPropertyName("dtype")] public string? Dtype { get; init; }
    [JsonPropertyName("bos_token_id")] public JsonElement? BosTokenId { get; init; }
    [JsonPropertyName("eos_token_id")] public JsonElement? EosTokenId { get; init; }
    [JsonPropertyName("use_sliding_window")] public bool? UseSlidingWindow { get; init; }
}

/// <summary><c>rope_scaling</c> (older style) or <c>rope_parameters</c> (transformers 5, which also holds the theta).</summary>
internal sealed class RawRopeParameters
{
    [JsonPropertyName("rope_type")] public string? RopeType { get; init; }
    [JsonPropertyName("type")] public string? LegacyType { get; init; }
    [JsonPropertyName("rope_theta")] public double? RopeTheta { get; init; }
    [JsonPropertyName("factor")] public double? Factor { get; init; }
    [JsonPropertyName("low_freq_factor")] public double? LowFreqFactor { get; init; }
    [JsonPropertyName("high_freq_factor")] public double? HighFreqFactor { get; init; }
    [JsonPropertyName("original_max_position_embeddings")] public int? OriginalMaxPositionEmbeddings { get; init; }
}
