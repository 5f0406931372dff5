using System.Diagnostics;
using System.Text.Json;
using System.Xml.Linq;
using Xunit.Abstractions;

namespace SpecDecode.Packaging.Tests;

/// <summary>
/// samples/SpecDecode.HostApp as a user gets the packages: it restores SpecDecode.Tree and SpecDecode.Suffix by version
/// from the folder feed the shared pack wrote (never by project reference, never from a cached copy: the version is
/// unique), builds with its own artifacts folder (nothing written into the repository), runs plain and suffix-speculative
/// greedy decoding on the tiny llama-gqa checkpoint and must report identical token ids with accepted draft tokens.
/// </summary>
[Collection(PackagesCollection.Name)]
public sealed class HostAppTests(PackagesFixture packages, ITestOutputHelper output)
{
    private const string HostApp = "samples/SpecDecode.HostApp";

    [Fact]
    public void HostAppRestoresAndRunsOnThePackedPackages()
    {
        string work = Path.Combine(Path.GetTempPath(), "specdecode-hostapp-" + Guid.NewGuid().ToString("N"));
        string checkpoint = Path.Combine(work, "checkpoint");
        string artifacts = Path.Combine(work, "artifacts");
        // a developer may have run the app by hand (bin/ and obj/ are ignored); only this run must not write them
        string[] repositoryOutputs = ["obj", "bin"];
        bool[] existedBefore = repositoryOutputs.Select(d => Directory.Exists(Path.Combine(packages.RepositoryRoot, HostApp, d))).ToArray();
        try
        {
            TinyCheckpoint.Write(packages.RepositoryRoot, checkpoint);
            Stopwatch clock = Stopwatch.StartNew();
            (int exitCode, string text) = PackagesFixture.RunDotnet(
                ["run", "--project", HostApp, "-c", "Release", "--artifacts-path", artifacts, "--disable-build-servers",
                 "-p:SpecDecodeVersion=" + packages.ExpectedVersion, "--", checkpoint],
                TimeSpan.FromMinutes(5),
                new Dictionary<string, string> { ["SPECDECODE_FEED"] = packages.OutputFolder });
            output.WriteLine($"restore, build and run of the host app took {clock.Elapsed.TotalSeconds:F1} s:\n{text}");

            Assert.True(exitCode == 0, $"the host app exited with {exitCode}:\n{text}");
            Assert.Matches(@"plain:\s+32 tokens in 32 steps", text);
            Assert.Matches(@"speculative:\s+32 tokens in \d+ steps", text);
            Assert.Matches(@"statistics:\s+drafts [1-9]\d*, draft tokens [1-9]\d*, accepted [1-9]\d*", text);
            Assert.Contains("OK: identical token ids (32 tokens)", text);

            // the SpecDecode packages it ran on are the packed ones, by version
            using JsonDocument assets = JsonDocument.Parse(File.ReadAllText(
                Directory.GetFiles(artifacts, "project.assets.json", SearchOption.AllDirectories).Single()));
            string[] libraries = assets.RootElement.GetProperty("libraries").EnumerateObject().Select(p => p.Name).ToArray();
            foreach (string id in PackagesFixture.PackageIds)
                Assert.Contains($"{id}/{packages.ExpectedVersion}", libraries);
            Assert.Contains($"TorchSharp-cpu/{packages.TorchSharpVersion}", libraries);

            // --artifacts-path kept the build out of the repository
            for (int i = 0; i < repositoryOutputs.Length; i++)
                Assert.False(!existedBefore[i] && Directory.Exists(Path.Combine(packages.RepositoryRoot, HostApp, repositoryOutputs[i])),
                    $"the host app build wrote {repositoryOutputs[i]}/ into the repository");
        }
        finally
        {
            TryDelete(work);
            // the unique ci version is of no use to anyone later: keep the global NuGet cache from growing run by run
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } configured
                ? configured
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (string id in PackagesFixture.PackageIds)
                TryDelete(Path.Combine(cache, id.ToLowerInvariant(), packages.ExpectedVersion.ToLowerInvariant()));
        }
    }

    [Fact]
    public void HostAppIsNotInTheSolutionAndPinsTheRepositorysTorchSharp()
    {
        Assert.DoesNotContain("SpecDecode.HostApp", File.ReadAllText(Path.Combine(packages.RepositoryRoot, "SpecDecode.sln")));
        XDocument project = XDocument.Load(Path.Combine(packages.RepositoryRoot, HostApp, "SpecDecode.HostApp.csproj"));
        Assert.Equal(packages.TorchSharpVersion, project.Descendants("TorchSharpVersion").Single().Value);
        string[] references = project.Descendants("PackageReference").Select(e => (string)e.Attribute("Include")!).Order().ToArray();
        Assert.Equal(["SpecDecode.Suffix", "SpecDecode.Tree", "TorchSharp-cpu"], references);
        Assert.Empty(project.Descendants("ProjectReference"));
    }

    private static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
