using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace SpecDecode.Packaging.Tests;

/// <summary>
/// Every C# block of the README compiles as written, against the packed packages as a user gets them (by version from
/// the folder feed, outside the repository's build settings, warnings as errors): no variable the text does not define,
/// no namespace that moved, no API that changed. Each block becomes the body of a method (its using directives on top),
/// so several top-level snippets build in one project.
/// </summary>
[Collection(PackagesCollection.Name)]
public sealed partial class ReadmeSnippetsTests(PackagesFixture packages, ITestOutputHelper output)
{
    [Fact]
    public void EveryCSharpBlockOfTheReadmeCompiles()
    {
        string readme = File.ReadAllText(Path.Combine(packages.RepositoryRoot, "README.md"));
        string[] snippets = CSharpBlock().Matches(readme).Select(m => m.Groups[1].Value).ToArray();
        Assert.True(snippets.Length >= 4, $"the README has {snippets.Length} C# blocks; expected the drafter, verifier, app and IChatClient examples");

        string work = Path.Combine(Path.GetTempPath(), "specdecode-readme-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            File.WriteAllText(Path.Combine(work, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="specdecode-local" value="{packages.OutputFolder}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" protocolVersion="3" />
                  </packageSources>
                  <packageSourceMapping>
                    <packageSource key="specdecode-local"><package pattern="SpecDecode.*" /></packageSource>
                    <packageSource key="nuget.org"><package pattern="*" /></packageSource>
                  </packageSourceMapping>
                </configuration>
                """);
            string references = string.Concat(new[] { "SpecDecode.Core", "SpecDecode.Suffix", "SpecDecode.Tokenization", "SpecDecode.Extensions.AI", "SpecDecode.Tree" }
                .Select(id => $"""    <PackageReference Include="{id}" Version="{packages.ExpectedVersion}" />{"\n"}"""));
            File.WriteAllText(Path.Combine(work, "ReadmeSnippets.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                {references}    <PackageReference Include="TorchSharp-cpu" Version="{packages.TorchSharpVersion}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(work, "Program.cs"), "Console.WriteLine(\"the README's snippets compile\");\n");
            for (int i = 0; i < snippets.Length; i++)
            {
                File.WriteAllText(Path.Combine(work, $"Snippet{i}.cs"), AsMethod(snippets[i], i));
            }

            Stopwatch clock = Stopwatch.StartNew();
            (int exitCode, string text) = PackagesFixture.RunDotnet(
                ["build", Path.Combine(work, "ReadmeSnippets.csproj"), "-c", "Release", "--artifacts-path", Path.Combine(work, "artifacts"), "--disable-build-servers", "-nologo"],
                TimeSpan.FromMinutes(5), workingDirectory: work);
            output.WriteLine($"building the README's {snippets.Length} snippets took {clock.Elapsed.TotalSeconds:F1} s");
            Assert.True(exitCode == 0, $"the README's C# blocks do not compile:\n{string.Join('\n', text.Split('\n').Where(l => l.Contains("error", StringComparison.Ordinal)).Distinct())}\n" +
                string.Join("\n", snippets.Select((s, i) => $"--- Snippet{i}.cs ---\n{AsMethod(s, i)}")));
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); }
            catch (IOException) { }
            foreach (string id in PackagesFixture.PackageIds)
            {
                string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
                    ? configured
                    : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
                try { Directory.Delete(Path.Combine(cache, id.ToLowerInvariant(), packages.ExpectedVersion.ToLowerInvariant()), recursive: true); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }
    }

    /// <summary>A snippet as a method of its own: its using directives at the top of the file, the rest as the body of an
    /// async method taking <c>args</c> (as top-level code does).</summary>
    private static string AsMethod(string snippet, int index)
    {
        string[] lines = snippet.Replace("\r", "", StringComparison.Ordinal).Split('\n');
        bool IsDirective(string l) => l.StartsWith("using ", StringComparison.Ordinal) && !l.StartsWith("using var ", StringComparison.Ordinal)
            && !l.StartsWith("using (", StringComparison.Ordinal) && l.TrimEnd().EndsWith(';');
        var file = new StringBuilder();
        foreach (string l in lines.Where(IsDirective))
            file.AppendLine(l);
        file.AppendLine().AppendLine("namespace ReadmeSnippets;").AppendLine()
            .AppendLine($"internal static class Snippet{index}").AppendLine("{")
            .AppendLine("    public static async Task RunAsync(string[] args)").AppendLine("    {");
        foreach (string l in lines.Where(l => !IsDirective(l)))
            file.AppendLine("        " + l);
        file.AppendLine("        await Task.CompletedTask;").AppendLine("    }").AppendLine("}");
        return file.ToString();
    }

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
