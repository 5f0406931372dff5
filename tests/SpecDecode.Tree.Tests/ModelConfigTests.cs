using System.Text;

namespace SpecDecode.Tree.Tests;

/// <summary>config.json of real checkpoints (both styles) and every way one can be refused.</summary>
public sealed class ModelConfigTests
{
    [Fact]
    public void Llama31_8B_WithLlama3RopeScaling()
    {
        ModelConfig c = ModelConfig.Load(SharedFixtures.Path("configs", "llama-3.1-8b.config.json"));
        Assert.Equal(ModelArchitecture.Llama, c.Architecture);
        Assert.Equal((4096, 14336, 32, 32, 8, 128, 128256), (c.HiddenSize, c.IntermediateSize, c.LayerCount, c.HeadCount,
            c.KeyValueHeadCount, c.HeadDim, c.VocabSize));
        Assert.Equal(RopeType.Llama3, c.Rope);
        Assert.Equal((500000.0, 8.0, 1.0, 4.0, 8192), (c.RopeTheta, c.RopeFactor, c.RopeLowFreqFactor, c.RopeHighFreqFactor,
            c.RopeOriginalMaxPositions));
        Assert.False(c.TieWordEmbeddings);
        Assert.False(c.QkvBias);
        Assert.Equal("bfloat16", c.DType);
        Assert.Equal(128000, c.BosTokenId);
        Assert.Equal([128001], c.EosTokenIds);
    }

    [Fact]
    public void Llama32_1B_IsTied()
    {
        ModelConfig c = ModelConfig.Load(SharedFixtures.Path("configs", "llama-3.2-1b.config.json"));
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal(64, c.HeadDim);
        Assert.Equal(32.0, c.RopeFactor);
    }

    [Theory]
    [InlineData("qwen2.5-0.5b.config.json", 896, 14, 2, 64, 151936)]
    [InlineData("qwen2.5-7b.config.json", 3584, 28, 4, 128, 152064)]
    public void Qwen25_HasQkvBiasAndDerivedHeadSize(string file, int hidden, int heads, int kvHeads, int headDim, int vocab)
    {
        ModelConfig c = ModelConfig.Load(SharedFixtures.Path("configs", file));
        Assert.Equal(ModelArchitecture.Qwen2, c.Architecture);
        Assert.Equal((hidden, heads, kvHeads, headDim, vocab), (c.HiddenSize, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.VocabSize));
        Assert.True(c.QkvBias);
        Assert.False(c.OutputBias);
        Assert.Equal(RopeType.Default, c.Rope);
    }

    [Fact]
    public void Transformers5Style_ReadsRopeParametersAndDtype()
    {
        ModelConfig c = ModelConfig.Load(SharedFixtures.Path("hf-tiny", "llama-gqa"));
        Assert.Equal((64, 4, 2, 16, 2, 1000), (c.HiddenSize, c.HeadCount, c.KeyValueHeadCount, c.HeadDim, c.LayerCount, c.VocabSize));
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal("float32", c.DType);
        Assert.Equal([2], c.EosTokenIds);
    }

    [Fact]
    public void HubStyle_ReadsTopLevelThetaAndTorchDtype()
    {
        ModelConfig c = ModelConfig.Load(SharedFixtures.Path("hf-tiny", "qwen2-tied"));
        Assert.Equal(1000000.0, c.RopeTheta);
        Assert.Equal("float32", c.DType);
        Assert.True(c.TieWordEmbeddings);
        Assert.True(c.QkvBias);
        Assert.Empty(c.EosTokenIds);
        Assert.Null(c.BosTokenId);
    }

    [Fact]
    public void Qwen3_HasPerHeadQkNormAndExplicitHeadDim()
    {
        ModelConfig c = Parse("""{"architectures":["Qwen3ForCausalLM"],"hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":2,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,"rope_theta":1000000,"eos_token_id":[151645,151643]}""");
        Assert.True(c.QkNorm);
        Assert.Equal(128, c.HeadDim);     // not hidden / heads = 64
        Assert.Equal([151645, 151643], c.EosTokenIds);
    }

    public static TheoryData<string, string> Refusals => new()
    {
        { """{"architectures":["GPT2LMHeadModel"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}""", "GPT2LMHeadModel" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4}}""", "yarn" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"rope_scaling":{"rope_type":"llama3"}}""", "llama3 needs" },
        { """{"architectures":["LlamaForCausalLM"],"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}""", "hidden_size" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":9,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10}""", "not a multiple" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10}""", "num_key_value_heads" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"hidden_act":"gelu"}""", "gelu" },
        { """{"architectures":["MistralForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"use_sliding_window":true}""", "sliding" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"torch_dtype":"int8"}""", "int8" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":0,"num_attention_heads":2,"vocab_size":10}""", "num_hidden_layers" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,"eos_token_id":"x"}""", "eos_token_id" },
        { """{"architectures":["LlamaForCausalLM"],"hidden_size":8""", "not valid config JSON" },
    };

    /// <summary>A config with hidden_size 8, 2 heads, one layer and vocabulary 10, plus <paramref name="rest"/> (which
    /// may override any of them: the last occurrence of a key wins).</summary>
    private static string Cfg(string rest) =>
        """{"architectures":["LlamaForCausalLM"],"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":10,""" + rest + "}";

    /// <summary>Issue 16 item 8: values no decoder has reached libtorch (a native allocation failure), or loaded and failed
    /// later with a message that blamed something else. Each is refused naming the key and the value.</summary>
    public static TheoryData<string, string, string> OutOfBounds => new()
    {
        { Cfg("\"hidden_size\":2000000000"), "hidden_size", "2000000000" },
        { Cfg("\"intermediate_size\":1000000000"), "intermediate_size", "1000000000" },
        { Cfg("\"head_dim\":-64"), "head_dim", "-64" },
        { Cfg("\"head_dim\":3"), "head_dim", "3" },
        { Cfg("\"bos_token_id\":5000"), "bos_token_id", "5000" },
        { Cfg("\"eos_token_id\":[2,10]"), "eos_token_id", "10" },
        { Cfg("\"eos_token_id\":-1"), "eos_token_id", "-1" },
        { Cfg("\"num_hidden_layers\":100000"), "num_hidden_layers", "100000" },
        { Cfg("\"vocab_size\":100000000"), "vocab_size", "100000000" },
        { Cfg("\"num_key_value_heads\":-2"), "num_key_value_heads", "-2" },
        { Cfg("\"max_position_embeddings\":0"), "max_position_embeddings", "0" },
        { Cfg("\"rms_norm_eps\":-1e-6"), "rms_norm_eps", "-1E-06" },
        { Cfg("\"rope_theta\":0"), "rope_theta", "0" },
        { Cfg("\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":-8,\"original_max_position_embeddings\":8192}"), "factor", "-8" },
    };

    [Theory]
    [MemberData(nameof(OutOfBounds))]
    public void ValuesNoDecoderHas_AreRefusedNamingTheKeyAndTheValue(string json, string key, string value)
    {
        var ex = Assert.Throws<ModelConfigException>(() => Parse(json));
        Assert.Contains($"'{key}'", ex.Message);
        Assert.Contains(value, ex.Message);
        Assert.Equal("test.json", ex.Path);
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void UnusableConfigsAreRefusedWithTheReason(string json, string mentioned)
    {
        var ex = Assert.Throws<ModelConfigException>(() => Parse(json));
        Assert.Contains(mentioned, ex.Message);
        Assert.Equal("test.json", ex.Path);
    }

    [Fact]
    public void MissingFileNamesThePath()
    {
        var ex = Assert.Throws<ModelConfigException>(() => ModelConfig.Load("/nonexistent/checkpoint"));
        Assert.Contains("config.json not found", ex.Message);
    }

    private static ModelConfig Parse(string json) => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes(json)), "test.json");
}
