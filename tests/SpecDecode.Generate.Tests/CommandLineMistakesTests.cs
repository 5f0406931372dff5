using SpecDecode.CommandLine;
using SpecDecode.Tests.Shared;

namespace SpecDecode.Generate.Tests;

/// <summary>
/// The mistakes a new user makes on the generator's command line, one test per class: each must end with exit code 2,
/// one line on stderr that starts with <c>error:</c>, names the option (or file) and says what to give, nothing on
/// stdout past what ran before the check, and no stack trace or native trace anywhere. All of them are refused before any
/// weight loads (the "Loading" line never appears), except a prompt longer than the context, which needs the tokenizer.
/// </summary>
public sealed class CommandLineMistakesTests(TinyCheckpoints checkpoints) : IClassFixture<TinyCheckpoints>
{
    private const string Prompt = "abc def abc def ghi abc def";

    /// <summary>Checks the convention and returns the error line.</summary>
    private static string AssertRefused(GeneratorOutcome outcome, params string[] mentions)
    {
        Assert.True(outcome.ExitCode == ToolExitCodes.Usage, $"exit {outcome.ExitCode}, not 2:\n{outcome.Output}\n{outcome.Error}");
        string line = ToolAssert.OneErrorLine(outcome.Error, mentions[0]);
        foreach (string mention in mentions)
        {
            Assert.Contains(mention, line);
        }
        Assert.DoesNotContain("   at ", outcome.Output + outcome.Error);         // a .NET stack trace
        Assert.DoesNotContain("frame #", outcome.Output + outcome.Error);        // a libtorch trace
        Assert.DoesNotContain("System.", line);                                  // a type name instead of words
        Assert.DoesNotContain("Loading ", outcome.Output);                       // refused before the weights load
        return line;
    }

    // ---------- values that do not parse ----------

    [Theory]
    [InlineData("-n", "abc", "--max-new-tokens: 'abc' is not a whole number; give one of 1 or more")]
    [InlineData("--budget", "abc", "--budget: 'abc' is not a whole number")]
    [InlineData("--temperature", "abc", "--temperature: 'abc' is not a number; give one of 0 or more")]
    [InlineData("--top-p", "abc", "--top-p: 'abc' is not a number; give one in (0, 1]")]
    [InlineData("--max-context", "1e9", "--max-context: '1e9' is not written as a whole number (write the digits out)")]
    [InlineData("--seed", "abc", "--seed: 'abc' is not a whole number")]
    [InlineData("--top-k", "2.5", "--top-k: '2.5' is not a whole number")]
    [InlineData("--draft", "ngram", "--draft: 'ngram' is not one of none, suffix, prompt-lookup, draft-model, hybrid")]
    [InlineData("--device", "gpu", "--device: 'gpu' is not one of cpu, cuda")]
    public async Task UnparseableValues_NameTheOptionAndWhatToGive(string option, string value, string message)
    {
        AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, option, value), message);
    }

    [Fact]
    public async Task UnknownOption_PointsToHelp()
    {
        AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, "--max-tokens", "5"),
            "'--max-tokens'", "--help");
    }

    // ---------- values out of range ----------

    [Theory]
    [InlineData("--top-p", "1.5", "--top-p: 1.5 is out of range; give a number in (0, 1]")]
    [InlineData("--temperature", "-1", "--temperature: -1 is out of range; give a number of 0 or more")]
    [InlineData("--temperature", "NaN", "--temperature: 'NaN' is not a number")]
    [InlineData("-n", "0", "--max-new-tokens: 0 is too small; give a whole number of 1 or more")]
    [InlineData("--budget", "-1", "--budget: -1 is too small")]
    [InlineData("--max-context", "8", "--max-context: 8 is too small; give a whole number of 16 or more")]
    [InlineData("--max-context", "99999999999", "--max-context: 99999999999 is too large; give a whole number from 16 to 2147483647")]
    public async Task OutOfRangeValues_AreRefusedWhileParsing(string option, string value, string message)
    {
        AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, option, value), message);
    }

    // ---------- settings past what the model allows (read from config.json before the weights load) ----------

    [Fact]
    public async Task ContextPastTheModels_IsRefusedNamingItsLimit()
    {
        string line = AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, "--max-context", "4096"),
            "--max-context 4096 is past the model's context of 512 tokens", "max_position_embeddings", "give --max-context 512 or less");
        Assert.Contains(Path.Combine(checkpoints.Target, "config.json"), line);
    }

    [Fact]
    public async Task DefaultContext_IsTheModels_WhenSmallerThan4096()
    {
        var (code, output) = await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, "-n", "4", "--draft", "none");
        Assert.True(code == 0, output);
        Assert.Contains("context 512 tokens", output);
    }

    [Theory]
    [InlineData("--budget", "100000", "--budget 100000 does not fit a context of 512 tokens (--max-context)", "give --budget 0 .. 511")]
    [InlineData("-n", "2000000000", "--max-new-tokens 2000000000 cannot fit a context of 512 tokens", "give --max-new-tokens below 512")]
    public async Task BudgetOrTokensPastTheContext_AreRefusedNamingTheOption(string option, string value, string message, string advice)
    {
        AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.Target, option, value), message, advice);
    }

    [Fact]
    public async Task TinyContext_WithoutBudgetOrTokenCount_FitsTheDefaultsAndSaysWhenTheContextFills()
    {
        // 16 tokens of context: the default budget (32) and token count (256) shrink to fit instead of naming options the
        // user never gave; the prompt below (14 tokens) leaves one token of room, so generation stops at the full context
        // and the run says so.
        var outcome = await GeneratorHarness.RunAsync("ab cd ef gh ij kl mn", "--model", checkpoints.Target, "--max-context", "16", "--no-adaptive");
        Assert.True(outcome.ExitCode == 0, outcome.Output + outcome.Error);
        Assert.Equal("", outcome.Error);
        Assert.Contains("Stopped early: the context is full", outcome.Output);
        Assert.Contains("Raise --max-context", outcome.Output);
    }

    [Fact]
    public async Task PromptLongerThanTheContext_IsRefusedWithTheContextOption()
    {
        var outcome = await GeneratorHarness.RunAsync(string.Concat(Enumerable.Repeat("abc def ", 40)), "--model", checkpoints.Target, "--max-context", "32");
        Assert.Equal(ToolExitCodes.Usage, outcome.ExitCode);
        string line = ToolAssert.OneErrorLine(outcome.Error, "The prompt has ");
        Assert.StartsWith("error: The prompt has ", line);
        Assert.Contains("--max-context sets the context: 32 tokens now", line);
    }

    // ---------- allocations too large for the machine, refused before libtorch ----------

    [Fact]
    public async Task KvCacheLargerThanTheMemory_IsRefusedBeforeLibTorchAllocates()
    {
        // the model claims 2^26 positions (the most config.json may), so only the memory check stands between this and
        // libtorch's allocator
        string line = AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", checkpoints.LongContext, "--max-context", "67108864"),
            "--max-context 67108864 needs ", "for the KV cache", "more than this machine's available memory", "give --max-context ");
        Assert.Matches(@"needs \d+(\.\d)? (GB|TB) for the KV cache", line);
    }

    // ---------- files that are empty, folders or missing ----------

    [Fact]
    public async Task PromptFile_EmptyBlankFolderOrMissing_EachGetItsOwnMessage()
    {
        string folder = Path.Combine(checkpoints.Root, "prompts");
        Directory.CreateDirectory(folder);
        string empty = Path.Combine(folder, "empty.txt");
        File.WriteAllText(empty, "");
        string blank = Path.Combine(folder, "blank.txt");
        File.WriteAllText(blank, " \n\t\n");
        string missing = Path.Combine(folder, "missing.txt");

        AssertRefused(await GeneratorHarness.RunAsync("--prompt-file", empty, "--model", checkpoints.Target), $"--prompt-file: {empty} is empty");
        AssertRefused(await GeneratorHarness.RunAsync("--prompt-file", blank, "--model", checkpoints.Target), $"--prompt-file: {blank} holds only white space");
        AssertRefused(await GeneratorHarness.RunAsync("--prompt-file", folder, "--model", checkpoints.Target), $"--prompt-file: {folder} is a folder; give a file");
        AssertRefused(await GeneratorHarness.RunAsync("--prompt-file", missing, "--model", checkpoints.Target), $"--prompt-file: {missing} does not exist");
        AssertRefused(await GeneratorHarness.RunAsync("", "--model", checkpoints.Target), "The prompt argument is empty");
    }

    [Fact]
    public async Task ModelGivenAsAFile_OrMissing_IsRefusedOnStderr()
    {
        string file = Path.Combine(checkpoints.Target, "config.json");
        AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", file), $"--model: {file} is a file; give the checkpoint's folder");
        string missing = Path.Combine(checkpoints.Root, "nowhere");
        AssertRefused(await GeneratorHarness.RunAsync(Prompt, "--model", missing), $"The model folder {missing} does not exist");
    }
}
