using SpecDecode.CommandLine;
using SpecDecode.Tests.Shared;
using SpecDecode.Train.Commands;

namespace SpecDecode.Train.Tests;

/// <summary>The training program follows the tools' command-line convention: a bad value is refused while parsing with
/// one line on stderr naming the option and what to give, exit 2, before any data or model is touched.</summary>
public sealed class CommandLineTests
{
    [Theory]
    [InlineData("--steps", "many", "--steps: 'many' is not a whole number; give one of 1 or more")]
    [InlineData("--lr", "0", "--lr: 0 is out of range; give a number above 0")]
    [InlineData("--max-minutes", "-5", "--max-minutes: -5 is out of range; give a number of 0 or more")]
    [InlineData("--device", "tpu", "--device: 'tpu' is not one of cpu, cuda")]
    [InlineData("--shard-mb", "0", "--shard-mb: 0 is too small")]
    public void Train_BadValues_NameTheOption(string option, string value, string message)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();

        // the required folders are named (the run never starts): only the bad value is wrong
        int code = ToolRunner.Run(TrainCommand.Build(), ["--tokenizer", "t", "--out", "o", "--checkpoint", "c", option, value], output, error);

        Assert.Equal(ToolExitCodes.Usage, code);
        ToolAssert.OneErrorLine(error.ToString(), message);
        Assert.Equal("", output.ToString());
    }
}
