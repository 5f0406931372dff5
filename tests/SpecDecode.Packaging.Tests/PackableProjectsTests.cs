using System.Text.Json;
using System.Text.RegularExpressions;

namespace SpecDecode.Packaging.Tests;

/// <summary>Only the libraries under src/ are packable: tests, benchmarks and samples never become packages.</summary>
public sealed partial class PackableProjectsTests
{
    [Fact]
    public void OnlyTheSrcLibrariesArePackable()
    {
        string root = PackagesFixture.FindRepositoryRoot();
        string[] projects = ProjectPattern().Matches(File.ReadAllText(Path.Combine(root, "SpecDecode.sln")))
            .Select(m => m.Groups[1].Value.Replace('\\', '/'))
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.Contains("src/SpecDecode.Core/SpecDecode.Core.csproj", projects);

        var packable = new List<string>();
        foreach (string project in projects)
        {
            (int exitCode, string output) = PackagesFixture.RunDotnet(
                ["msbuild", project, "-getProperty:IsPackable", "-getProperty:MSBuildProjectName", "-nologo", "-nodeReuse:false"], TimeSpan.FromMinutes(2));
            Assert.True(exitCode == 0, $"evaluating {project} failed:\n{output}");
            using JsonDocument json = JsonDocument.Parse(output[output.IndexOf('{')..]);
            if (json.RootElement.GetProperty("Properties").GetProperty("IsPackable").GetString() == "true")
                packable.Add(project);
        }
        Assert.Equal(
            ["src/SpecDecode.Core/SpecDecode.Core.csproj", "src/SpecDecode.Extensions.AI/SpecDecode.Extensions.AI.csproj",
             "src/SpecDecode.Fleet/SpecDecode.Fleet.csproj", "src/SpecDecode.Suffix/SpecDecode.Suffix.csproj",
             "src/SpecDecode.Tokenization/SpecDecode.Tokenization.csproj", "src/SpecDecode.Tree/SpecDecode.Tree.csproj"],
            packable);
    }

    [GeneratedRegex(@"^Project\(""\{[^}]+\}""\) = ""[^""]+"", ""([^""]+\.csproj)""", RegexOptions.Multiline)]
    private static partial Regex ProjectPattern();
}
