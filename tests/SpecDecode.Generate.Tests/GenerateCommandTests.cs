using SpecDecode.CommandLine;
using SpecDecode.Hosting;

namespace SpecDecode.Generate.Tests;

/// <summary>The console generator end to end, in-process, on the tiny llama-gqa checkpoint (random weights) with a
/// synthetic tokenizer; never the embedded default model.</summary>
public sealed class GenerateCommandTests(TinyCheckpoints checkpoints) : IClassFixture<TinyCheckpoints>
{
    // Repeated segments, so the suffix and prompt-lookup drafters find matches.
    private const string Prompt = "abc def abc def ghi abc def abc def ghi abc def";

    private static string[] Common(string model, int maxNewTokens = 32) => ["--model", model, "--max-new-tokens", maxNewTokens.ToString(System.Globalization.CultureInfo.InvariantCulture), "--max-context", "160"];

    [Fact]
    public async Task Compare_GreedyOutputsAreIdentical()
    {
        var (code, output) = await GeneratorHarness.RunAsync([Prompt, .. Common(checkpoints.Target), "--compare", "--budget", "8"]);

        Assert.True(code == 0, output);
        Assert.Contains("Plain decoding", output);
        Assert.Contains("Speculative decoding (suffix)", output);
        Assert.Contains("Speedup", output);
        Assert.Matches(@"Outputs\s+identical \(32 tokens and the same finish: --max-new-tokens reached; greedy", output);
        Assert.Matches(@"Plain\s+\d+\.\d\d s, 32 tokens", output);   // one count in the timing and the verdict
    }

    [Fact]
    public async Task Generate_PrintsSummaryWithStepsAcceptanceAndChart()
    {
        var (code, output) = await GeneratorHarness.RunAsync([Prompt, .. Common(checkpoints.Target), "--draft", "prompt-lookup", "--no-adaptive"]);

        Assert.True(code == 0, output);
        Assert.Contains("Loading " + checkpoints.Target, output);
        Assert.Matches(@"Generated tokens\s+3[23]", output);   // 32, plus a final stop token if the model emits one
        Assert.Matches(@"Steps\s+\d+", output);
        Assert.Matches(@"Tokens per step\s+\d+\.\d\d", output);
        Assert.Matches(@"Acceptance rate\s+\d+(\.\d)?\s?% \(\d+ of \d+ draft tokens accepted\)", output);
        Assert.Contains("Acceptance by position", output);
        Assert.Matches(@"\d+ tokens in \d+\.\d\d s: \d+\.\d tokens/s", output);
    }

    /// <summary>CUDA graphs (and the decode-step kernels) are on by default only on CUDA: on the CPU the run neither
    /// uses nor mentions them, with or without --no-cuda-graphs.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CudaGraphs_OnTheCpu_AreNeitherUsedNorMentioned(bool optOut)
    {
        string[] args = [Prompt, .. Common(checkpoints.Target, 4), "--draft", "none"];
        var (code, output) = await GeneratorHarness.RunAsync(optOut ? [.. args, "--no-cuda-graphs"] : args);
        Assert.True(code == 0, output);
        Assert.Contains("on cpu as", output);
        Assert.DoesNotContain("CUDA graphs", output);
    }

    [Fact]
    public async Task DraftModel_SameCheckpointAsDraft_MatchesPlainAndIsAccepted()
    {
        var (code, output) = await GeneratorHarness.RunAsync([Prompt, .. Common(checkpoints.Target), "--compare", "--draft", "draft-model",
            "--draft-model", checkpoints.Target, "--no-adaptive", "--budget", "6"]);

        Assert.True(code == 0, output);
        Assert.Contains("Loading the draft model " + checkpoints.Target, output);
        Assert.Matches(@"Outputs\s+identical", output);
        // The draft is the target itself: (nearly) every drafted token is accepted, so there are far fewer steps than tokens.
        Assert.Matches(@"Tokens per step\s+([2-9]|\d\d)\.\d\d", output);
        Assert.Contains("d=1", output);
    }

    [Fact]
    public async Task Hybrid_Runs()
    {
        var (code, output) = await GeneratorHarness.RunAsync([Prompt, .. Common(checkpoints.Target), "--draft", "hybrid",
            "--draft-model", checkpoints.Target, "--temperature", "0.8", "--seed", "7", "--top-k", "50", "--stop", "zzz"]);

        Assert.True(code == 0, output);
        Assert.Contains("Drafter", output);
        Assert.Contains("hybrid", output);
    }

    [Fact]
    public async Task MissingModelFolder_SaysWhichFolderAndHowToPassOne()
    {
        string missing = Path.Combine(checkpoints.Root, "does-not-exist");

        var (code, output) = await GeneratorHarness.RunAsync("hello", "--model", missing);

        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains($"The model folder {missing} does not exist", output);
        Assert.Contains("--model <folder>", output);
    }

    [Fact]
    public void DefaultModel_IsLookedForUnderModelsDefault()
    {
        Assert.All(DefaultModel.Candidates(), c => Assert.EndsWith(Path.Combine("models", "default"), c));
    }

    [Fact]
    public async Task FolderWithoutTokenizer_IsRefusedWithWhatToCopy()
    {
        var (code, output) = await GeneratorHarness.RunAsync("hello", "--model", checkpoints.NoTokenizer);

        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains("tokenizer", output);
        Assert.Contains("tokenizer.json", output);
    }

    [Fact]
    public async Task ChatWithoutTemplate_IsRefused()
    {
        var (code, output) = await GeneratorHarness.RunWithInputAsync("hi\n", "--chat", "--model", checkpoints.Target);

        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains("Chat mode needs the checkpoint's chat template", output);
        Assert.Contains("Run without --chat", output);
    }

    [Fact]
    public async Task Chat_WithTemplate_AnswersEachLineWithHistory()
    {
        var (code, output) = await GeneratorHarness.RunWithInputAsync("hello there\nand again\n/exit\n",
            ["--chat", .. Common(checkpoints.Chat, maxNewTokens: 8)]);

        Assert.True(code == 0, output);
        Assert.Equal(2, output.Split("assistant>").Length - 1);
        Assert.Contains("Chat session", output);
        Assert.Matches(@"Prompt tokens\s+\d+", output);
    }

    [Fact]
    public async Task DraftWithAnotherVocabulary_IsRefused()
    {
        var (code, output) = await GeneratorHarness.RunAsync([Prompt, .. Common(checkpoints.Target), "--draft", "draft-model",
            "--draft-model", checkpoints.OtherVocabulary]);

        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains("The draft model does not share the target's vocabulary", output);
        Assert.Contains("--draft suffix", output);
    }

    [Fact]
    public async Task CudaWithoutCuda_IsRefused()
    {
        var (code, output) = await GeneratorHarness.RunAsync("hello", "--model", checkpoints.Target, "--device", "cuda");

        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains("CUDA was requested", output);
        Assert.Contains("--device cpu", output);
    }

    [Fact]
    public async Task NoPromptWithoutChatTemplate_AndDraftModelWithoutFolder_AreRefused()
    {
        var (code, output) = await GeneratorHarness.RunAsync("--model", checkpoints.Target);
        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains("No prompt given, and the demo conversation needs a chat template", output);

        (code, output) = await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, "--draft", "draft-model");
        Assert.Equal(ToolExitCodes.Usage, code);
        Assert.Contains("needs the draft model's checkpoint folder: pass --draft-model <folder>", output);
    }

    [Fact]
    public async Task EmbeddedDefault_NoArguments_ContinuesTheDemoFasterOrNot_ButIdenticalToPlain()
    {
        RequireEmbeddedModels();
        var (code, output) = await GeneratorHarness.RunAsync();
        Assert.True(code == ToolExitCodes.Ok, output);
        Assert.Contains("No prompt given: continuing the demo conversation", output);
        Assert.Contains("Speculative decoding (suffix)", output);
        Assert.Matches(@"Outputs\s+identical \(\d+ tokens and the same finish: [^;]+; greedy", output);
    }

    [Fact]
    public async Task EmbeddedDefault_HybridUsesTheEmbeddedDraft_AndMatchesPlain()
    {
        RequireEmbeddedModels();
        var (code, output) = await GeneratorHarness.RunAsync("<|im_start|>user\nShow me the failing test<|im_end|>\n<|im_start|>assistant\n",
            "--compare", "--draft", "hybrid", "-n", "48");
        Assert.True(code == ToolExitCodes.Ok, output);
        Assert.Contains(Path.Combine("models", "default-draft"), output);
        Assert.Matches(@"Outputs\s+identical \(\d+ tokens and the same finish: [^;]+; greedy", output);
    }

    /// <summary>The embedded default pair ships with the repository (models/); a checkout without it fails here with the reason.</summary>
    private static void RequireEmbeddedModels()
    {
        string? target = DefaultModel.Candidates().FirstOrDefault(Directory.Exists);
        Assert.True(target is not null, $"the embedded default model is missing: looked for {string.Join(", ", DefaultModel.Candidates())} (it is committed under models/default).");
        Assert.True(DefaultModel.DraftFolderFor(target!) is not null, $"the embedded draft model is missing beside {target} (models/default-draft).");
    }
}
