namespace SpecDecode.Tree.Tests;

/// <summary>GenerationConfig: the end-of-sequence ids of a checkpoint folder (generation_config.json, else config.json).</summary>
public sealed class GenerationConfigTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-genconfig-" + Guid.NewGuid().ToString("N"));

    public GenerationConfigTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Folder(string name)
    {
        string folder = Path.Combine(_root, name);
        Directory.CreateDirectory(folder);
        return folder;
    }

    [Fact]
    public void EosTokenIds_OfTheTinyLlamaFixture()
    {
        Assert.Equal([2], GenerationConfig.EosTokenIds(SharedFixtures.Path("hf-tiny", "llama-gqa")));
    }

    [Fact]
    public void EosTokenIds_GenerationConfigTakesPrecedence_AndMayBeAList()
    {
        string folder = Folder("gen-list");
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"eos_token_id": 128001}""");
        File.WriteAllText(Path.Combine(folder, "generation_config.json"), """{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}""");

        Assert.Equal([128001, 128008, 128009], GenerationConfig.EosTokenIds(folder));
    }

    [Theory]
    [InlineData("""{"do_sample": true}""")]
    [InlineData("""{"eos_token_id": null}""")]
    [InlineData(null)]
    public void EosTokenIds_FallBackToConfigJson(string? generationConfig)
    {
        string folder = Folder("gen-fallback");
        File.WriteAllText(Path.Combine(folder, "config.json"), """{"eos_token_id": 151645}""");
        if (generationConfig is not null)
        {
            File.WriteAllText(Path.Combine(folder, "generation_config.json"), generationConfig);
        }

        Assert.Equal([151645], GenerationConfig.EosTokenIds(folder));
    }

    [Fact]
    public void EosTokenIds_NoneAnywhere_IsEmpty()
    {
        Assert.Empty(GenerationConfig.EosTokenIds(Folder("gen-none")));
    }

    [Theory]
    [InlineData("{\"eos_token_id\": ", "not valid JSON")]
    [InlineData("[1, 2]", "is not a JSON object")]
    [InlineData("""{"eos_token_id": "</s>"}""", "must be a token id or a list of them")]
    [InlineData("""{"eos_token_id": [1, 2.5]}""", "must be a token id or a list of them")]
    public void EosTokenIds_MalformedGenerationConfig_ThrowsModelConfigException(string json, string message)
    {
        string folder = Folder("gen-bad");
        string path = Path.Combine(folder, "generation_config.json");
        File.WriteAllText(path, json);

        var e = Assert.Throws<ModelConfigException>(() => GenerationConfig.EosTokenIds(folder));

        Assert.Equal(path, e.Path);
        Assert.Contains(message, e.Message);
    }
}
