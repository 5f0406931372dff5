using SpecDecode.Check;
using Spectre.Console;
using TorchSharp;

namespace SpecDecode.Tree.Tests;

/// <summary>The checkpoint checker (bench/SpecDecode.Check) passes the fixtures, fails a corrupted reference and reports
/// bad input as exit code 2.</summary>
public sealed class CheckCommandTests
{
    [Theory]
    [InlineData("llama-gqa")]
    [InlineData("qwen2-tied")]
    public void BothFixturesPassInFloat32(string name)
    {
        CheckReport report = CheckpointChecker.Run(new CheckSettings { Folder = SharedFixtures.TinyCheckpoint(name), Device = DeviceType.CPU });

        Assert.True(report.Passed, Describe(report));
        Assert.Equal(CheckpointChecker.Float32Tolerance, report.Tolerance);
        Assert.All(report.Logits, l => Assert.True(l.RelativeError < 1e-4, l.Name));
        // float32 leaves no room for near ties: every run reproduces its reference token for token.
        Assert.All(report.Generation, g => Assert.Equal(-1, g.FirstMismatch));
        Assert.Contains(report.Generation, g => g.AcceptedDraftTokens > 0);
    }

    [Fact]
    public void OneChangedReferenceLogitFailsTheTreeCheckAndExitsWithOne()
    {
        using var copy = new TestFiles.TempDir();
        string source = SharedFixtures.TinyCheckpoint("llama-gqa");
        foreach (string file in Directory.GetFiles(source))
        {
            // Read and write rather than File.Copy, which would keep the fixtures' read-only mode.
            File.WriteAllBytes(copy.File(Path.GetFileName(file)), File.ReadAllBytes(file));
        }
        string tensors = copy.File("expected.safetensors");
        long offset;
        using (SafeTensorsFile file = SafeTensorsFile.Open(tensors))
        {
            offset = file.Get("tree_logits").Offset + 5 * sizeof(float) * 1000 + 17 * sizeof(float);
        }
        using (var stream = new FileStream(tensors, FileMode.Open, FileAccess.ReadWrite))
        {
            var value = new byte[sizeof(float)];
            stream.Position = offset;
            stream.ReadExactly(value);
            BitConverter.GetBytes(BitConverter.ToSingle(value) + 0.01f).CopyTo(value, 0);
            stream.Position = offset;
            stream.Write(value);
        }

        var settings = new CheckSettings { Folder = copy.Path, Device = DeviceType.CPU };
        CheckReport report = CheckpointChecker.Run(settings);

        Assert.False(report.Passed);
        Assert.Equal(["tree_logits"], report.Logits.Where(l => !l.Passed).Select(l => l.Name));
        Assert.All(report.Generation, g => Assert.True(g.Passed, g.Name));
        Assert.Equal(CheckCommand.Failed, CheckCommand.Execute(settings, null, QuietConsole()));
    }

    [Fact]
    public void MissingFolderOrReferenceFileIsBadInput()
    {
        using var empty = new TestFiles.TempDir();

        (int code, string error) = RunCheck(empty.File("absent"));
        Assert.Equal(CheckCommand.BadInput, code);
        Assert.Contains("no such folder", error, StringComparison.Ordinal);

        File.WriteAllText(empty.File("config.json"), "{}");
        File.WriteAllText(empty.File("expected.json"), "{}");
        (code, error) = RunCheck(empty.Path);
        Assert.Equal(CheckCommand.BadInput, code);
        Assert.Contains("expected.safetensors: missing", error, StringComparison.Ordinal);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
        Assert.Throws<CheckInputException>(() => CheckCommand.Execute(new CheckSettings { Folder = empty.Path }, null, QuietConsole()));
    }

    /// <summary>The tools' convention on the checker's command line: one error line naming the option, exit 2.</summary>
    [Theory]
    [InlineData(new string[0], "Required argument 'folder' missing")]
    [InlineData(new[] { "folder", "--dtype", "int8" }, "--dtype: 'int8' is not one of float32, bfloat16, float16")]
    [InlineData(new[] { "folder", "--device", "tpu" }, "--device: 'tpu' is not one of cpu, cuda")]
    [InlineData(new[] { "folder", "--tolerance", "0" }, "--tolerance: 0 is out of range; give a number above 0")]
    [InlineData(new[] { "folder", "--tolerance", "tight" }, "--tolerance: 'tight' is not a number")]
    [InlineData(new[] { "folder", "--seed", "x" }, "--seed: 'x' is not a whole number")]
    public void CommandLineErrorsAreBadInput(string[] args, string message)
    {
        using var error = new StringWriter();
        Assert.Equal(CheckCommand.BadInput, CheckCommand.Run(args, TextWriter.Null, error));
        SpecDecode.Tests.Shared.ToolAssert.OneErrorLine(error.ToString(), message);
    }

    private static (int Code, string Error) RunCheck(string folder)
    {
        using var error = new StringWriter();
        int code = CheckCommand.Run([folder, "--device", "cpu"], TextWriter.Null, error);
        return (code, error.ToString());
    }

    private static IAnsiConsole QuietConsole(TextWriter? writer = null)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer ?? TextWriter.Null), Ansi = AnsiSupport.No });
        console.Profile.Width = 1000; // one line per message, so that the assertions find whole phrases
        return console;
    }

    private static string Describe(CheckReport report) =>
        string.Join("; ", report.Logits.Select(l => $"{l.Name} {l.RelativeError:E2}")
            .Concat(report.Generation.Select(g => $"{g.Name} mismatch {g.FirstMismatch}")));
}
