using System.Text.Json;

namespace SpecDecode.Train.Model;

/// <summary>
/// The shape of a Llama-architecture model to train: what Hugging Face's <c>LlamaConfig</c> would hold. The embedding
/// matrix doubles as the output head (<c>tie_word_embeddings</c>), which halves the vocabulary's share of a small model.
/// </summary>
/// <param name="VocabSize">Tokens in the vocabulary (the tokenizer's size).</param>
/// <param name="HiddenSize">The residual stream's width.</param>
/// <param name="LayerCount">Decoder layers.</param>
/// <param name="HeadCount">Query heads.</param>
/// <param name="KeyValueHeadCount">Key/value heads (grouped-query attention when fewer than the query heads).</param>
/// <param name="IntermediateSize">The SwiGLU feed-forward width.</param>
/// <param name="MaxPositions">The longest sequence trained on, written as <c>max_position_embeddings</c>.</param>
/// <param name="RopeTheta">The rotary embedding base.</param>
/// <param name="RmsNormEps">The RMSNorm epsilon.</param>
public sealed record ModelShape(
    int VocabSize, int HiddenSize, int LayerCount, int HeadCount, int KeyValueHeadCount, int IntermediateSize,
    int MaxPositions, double RopeTheta = 10_000, double RmsNormEps = 1e-5)
{
    /// <summary>Dimensions per attention head.</summary>
    public int HeadDim => HiddenSize / HeadCount;

    /// <summary>The default target: 5 layers of width 512 (about 18.7 M parameters, 37 MB in bf16).</summary>
    public static ModelShape Target(int vocab, int positions) => new(vocab, 512, 5, 8, 4, 1376, positions);

    /// <summary>The default draft: 2 layers of width 256 (about 3.7 M parameters, 7 MB in bf16).</summary>
    public static ModelShape Draft(int vocab, int positions) => new(vocab, 256, 2, 4, 2, 768, positions);

    /// <summary>Looks up a named shape: <c>target</c>, <c>draft</c> or <c>tiny</c> (a test-sized model).</summary>
    /// <exception cref="ArgumentException">The name is none of those.</exception>
    public static ModelShape Named(string name, int vocab, int positions) => name switch
    {
        "target" => Target(vocab, positions),
        "draft" => Draft(vocab, positions),
        "tiny" => new ModelShape(vocab, 64, 2, 4, 2, 160, positions),
        _ => throw new ArgumentException($"unknown model shape '{name}': use target, draft or tiny."),
    };

    /// <summary>Checks that the heads divide the width and the key/value heads divide the query heads.</summary>
    /// <exception cref="ArgumentException">The shape cannot be built.</exception>
    public void Validate()
    {
        if (VocabSize <= 0 || HiddenSize <= 0 || LayerCount <= 0 || HeadCount <= 0 || KeyValueHeadCount <= 0 || IntermediateSize <= 0 || MaxPositions <= 1)
        {
            throw new ArgumentException($"every dimension of the model shape must be positive: {this}.");
        }
        if (HiddenSize % HeadCount != 0 || HeadDim % 2 != 0)
        {
            throw new ArgumentException($"hidden size {HiddenSize} must split into {HeadCount} heads of an even width.");
        }
        if (HeadCount % KeyValueHeadCount != 0)
        {
            throw new ArgumentException($"{HeadCount} query heads must be a multiple of {KeyValueHeadCount} key/value heads.");
        }
    }

    /// <summary>Parameters in the model (the tied head counted once).</summary>
    public long ParameterCount
    {
        get
        {
            long attention = 2L * HiddenSize * HiddenSize + 2L * HiddenSize * KeyValueHeadCount * HeadDim;
            long mlp = 3L * HiddenSize * IntermediateSize;
            return (long)VocabSize * HiddenSize + LayerCount * (attention + mlp + 2L * HiddenSize) + HiddenSize;
        }
    }

    /// <summary>Writes config.json as transformers' <c>LlamaConfig.save_pretrained</c> would, with the token ids of the
    /// tokenizer's special tokens.</summary>
    public void WriteConfig(string folder, int bosTokenId, int eosTokenId, string torchDType)
    {
        var config = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = bosTokenId,
            ["eos_token_id"] = eosTokenId,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["hidden_size"] = HiddenSize,
            ["initializer_range"] = 0.02,
            ["intermediate_size"] = IntermediateSize,
            ["max_position_embeddings"] = MaxPositions,
            ["mlp_bias"] = false,
            ["model_type"] = "llama",
            ["num_attention_heads"] = HeadCount,
            ["num_hidden_layers"] = LayerCount,
            ["num_key_value_heads"] = KeyValueHeadCount,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = true,
            ["torch_dtype"] = torchDType,
            ["use_cache"] = true,
            ["vocab_size"] = VocabSize,
        };
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}
