using SpecDecode.Fuzz;
using SpecDecode.Soak;
using Xunit.Abstractions;

namespace SpecDecode.Reliability.Tests;

/// <summary>
/// The CI slices of the two reliability benches (issue 16): a short soak of the engine with faults injected (8 clients,
/// 3 rounds, an engine disposal race and a model disposal at the end), and a few hundred seeded corruptions per file
/// parser. The full runs are bench commands; their figures are in bench/RESULTS.md.
/// </summary>
public sealed class ReliabilitySliceTests(ITestOutputHelper output)
{
    [Fact]
    public void SoakSlice_ServesEveryRequestOnce_WithNoMismatchEscapeOrStrandedRequest()
    {
        var log = new StringWriter();
        SoakReport report = SoakRunner.Run(SoakSettings.Quick, log);
        output.WriteLine(log.ToString());
        output.WriteLine(report.ToString());
        Assert.True(report.Passed, report.ToString());
        Assert.True(report.Served > 0 && report.DrafterFaults > 0, "the slice must serve requests and inject drafter faults");
    }

    public static TheoryData<string> Targets => new(FuzzRunner.TargetNames);

    [Theory]
    [MemberData(nameof(Targets))]
    public void FuzzSlice_EveryCorruptionLoadsOrIsRefusedTypedNamingTheFile(string target)
    {
        var log = new StringWriter();
        (IReadOnlyList<FuzzTargetResult> results, IReadOnlyList<FuzzFailure> failures) = new FuzzRunner().Run([target], cases: 300, runSeed: 16, log);
        output.WriteLine(log.ToString());
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(5)));
        FuzzTargetResult result = Assert.Single(results);
        Assert.Equal(300, result.Cases);
        // Both outcomes occur, or the corruptions tell nothing: some still load, most are refused.
        Assert.True(result.Outcomes[FuzzOutcome.Accepted] > 0, $"{target}: no corrupted file loaded");
        Assert.True(result.Outcomes[FuzzOutcome.Refused] > 100, $"{target}: only {result.Outcomes[FuzzOutcome.Refused]} corruptions were refused");
    }
}
