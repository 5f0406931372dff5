using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit.Abstractions;

namespace SpecDecode.Packaging.Tests;

/// <summary>
/// samples/SpecDecode.HostApp as a user gets the packages: it restores SpecDecode.Tree, .Suffix, .Tokenization and
/// .Extensions.AI by version
/// from the folder feed the shared pack wrote (never by project reference, never from a cached copy: the version is
/// unique) and builds once with its own artifacts folder (nothing written into the repository). Then it runs plain and
/// suffix-speculative greedy decoding: with no argument on the embedded default model (models/default) and its example
/// conversation, and on the tiny llama-gqa checkpoint with the text prompt; both must report identical token ids with
/// accepted draft tokens. Run from outside the repository with no argument, it must say that the default model is
/// missing and exit with 2.
/// </summary>
[Collection(PackagesCollection.Name)]
public sealed class HostAppTests(PackagesFixture packages, ITestOutputHelper output)
{
    private const string HostApp = "samples/SpecDecode.HostApp";

    [Fact]
    public void HostAppRestoresAndRunsOnThePackedPackages()
    {
        // the embedded default model is committed in git: a checkout without it is broken, not a reason to skip
        string defaultModel = Path.Combine(packages.RepositoryRoot, "models", "default");
        Assert.True(File.Exists(Path.Combine(defaultModel, "config.json")),
            $"the embedded default model is missing: {Path.Combine(defaultModel, "config.json")} does not exist " +
            "(models/default is committed in git; restore it with `git checkout -- models/default`)");

        string work = Path.Combine(Path.GetTempPath(), "specdecode-hostapp-" + Guid.NewGuid().ToString("N"));
        string checkpoint = Path.Combine(work, "checkpoint");
        string artifacts = Path.Combine(work, "artifacts");
        var feed = new Dictionary<string, string> { ["SPECDECODE_FEED"] = packages.OutputFolder };
        string[] project = ["--project", HostApp, "-c", "Release", "--artifacts-path", artifacts, "-p:SpecDecodeVersion=" + packages.ExpectedVersion];
        // a developer may have run the app by hand (bin/ and obj/ are ignored); only this run must not write them
        string[] repositoryOutputs = ["obj", "bin"];
        bool[] existedBefore = repositoryOutputs.Select(d => Directory.Exists(Path.Combine(packages.RepositoryRoot, HostApp, d))).ToArray();
        try
        {
            Stopwatch clock = Stopwatch.StartNew();
            (int buildExit, string buildText) = PackagesFixture.RunDotnet(
                ["build", HostApp, "-c", "Release", "--artifacts-path", artifacts, "--disable-build-servers", "-nologo",
                 "-p:SpecDecodeVersion=" + packages.ExpectedVersion],
                TimeSpan.FromMinutes(5), feed);
            output.WriteLine($"restore and build of the host app took {clock.Elapsed.TotalSeconds:F1} s");
            Assert.True(buildExit == 0, $"the host app build exited with {buildExit}:\n{buildText}");

            // no argument, from the repository root as the README says: the embedded default model and the example conversation
            string text = Run("the embedded default model", [.. project, "--no-build"]);
            Assert.Contains($"loaded {defaultModel}: 5 layers, vocabulary 8192, on CPU as Float32", text);
            Assert.Contains("prompt:      the example conversation (2 messages", text);
            Assert.Contains("chat client: \"", text); // the IChatClient's answer, equal to plain decoding's (else exit 1)
            AssertIdenticalWithDraftsAccepted(text, maxNewTokens: 48, "the embedded default model");

            // a checkpoint folder without a chat template: the text prompt
            TinyCheckpoint.Write(packages.RepositoryRoot, checkpoint);
            text = Run("the tiny checkpoint", [.. project, "--no-build", "--", checkpoint]);
            Assert.Contains($"loaded {checkpoint}: 2 layers, vocabulary 1000", text);
            Assert.Contains("prompt:      \"abc def", text);
            AssertIdenticalWithDraftsAccepted(text, maxNewTokens: 48, "the tiny checkpoint");

            // no argument outside the repository (working directory and app folder both under the temp folder)
            string app = Directory.GetFiles(artifacts, "SpecDecode.HostApp.dll", SearchOption.AllDirectories)
                .Single(f => f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));
            clock.Restart();
            (int missingExit, string missingText) = PackagesFixture.RunDotnet(["exec", app], TimeSpan.FromMinutes(2), workingDirectory: work);
            output.WriteLine($"the host app without a model took {clock.Elapsed.TotalSeconds:F1} s:\n{missingText}");
            Assert.True(missingExit == 2, $"without a default model the host app exited with {missingExit}, not 2:\n{missingText}");
            Assert.Contains("No checkpoint folder given and the embedded default model was not found", missingText);

            // the SpecDecode packages it ran on are the packed ones, by version
            using JsonDocument assets = JsonDocument.Parse(File.ReadAllText(
                Directory.GetFiles(artifacts, "project.assets.json", SearchOption.AllDirectories).Single()));
            string[] libraries = assets.RootElement.GetProperty("libraries").EnumerateObject().Select(p => p.Name).ToArray();
            // (the host app decodes in one process: it does not use SpecDecode.Fleet)
            foreach (string id in PackagesFixture.PackageIds.Where(id => id != "SpecDecode.Fleet"))
                Assert.Contains($"{id}/{packages.ExpectedVersion}", libraries);
            Assert.DoesNotContain(libraries, l => l.StartsWith("SpecDecode.Fleet/", StringComparison.Ordinal));
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

        string Run(string what, string[] runArguments)
        {
            Stopwatch clock = Stopwatch.StartNew();
            (int exitCode, string text) = PackagesFixture.RunDotnet(["run", .. runArguments], TimeSpan.FromMinutes(5), feed);
            output.WriteLine($"the host app on {what} took {clock.Elapsed.TotalSeconds:F1} s:\n{text}");
            Assert.True(exitCode == 0, $"the host app on {what} exited with {exitCode}:\n{text}");
            return text;
        }
    }

    /// <summary>The app's own verdict (the OK line, printed only when the token ids match and drafts were accepted) and
    /// the lines behind it: as many tokens plain as speculative, in fewer speculative steps.</summary>
    private static void AssertIdenticalWithDraftsAccepted(string text, int maxNewTokens, string what)
    {
        Match ok = Regex.Match(text, @"^OK: identical token ids \((\d+) tokens\); ([1-9]\d*) draft tokens accepted\r?$", RegexOptions.Multiline);
        Assert.True(ok.Success, $"no OK line from the host app on {what}:\n{text}");
        int tokens = int.Parse(ok.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.InRange(tokens, 1, maxNewTokens);
        Match plain = Regex.Match(text, @"^plain:\s+(\d+) tokens in (\d+) steps", RegexOptions.Multiline);
        Match speculative = Regex.Match(text, @"^speculative:\s+(\d+) tokens in (\d+) steps", RegexOptions.Multiline);
        Assert.True(plain.Success && speculative.Success, $"no plain or speculative line from the host app on {what}:\n{text}");
        Assert.Equal(tokens, int.Parse(plain.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.Equal(tokens, int.Parse(speculative.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.True(int.Parse(speculative.Groups[2].Value, CultureInfo.InvariantCulture) < int.Parse(plain.Groups[2].Value, CultureInfo.InvariantCulture),
            $"accepted drafts must save steps on {what}:\n{text}");
        Assert.Matches(@"statistics:\s+drafts [1-9]\d*, draft tokens [1-9]\d*, accepted [1-9]\d*", text);
    }

    [Fact]
    public void HostAppIsNotInTheSolutionAndPinsTheRepositorysTorchSharp()
    {
        Assert.DoesNotContain("SpecDecode.HostApp", File.ReadAllText(Path.Combine(packages.RepositoryRoot, "SpecDecode.sln")));
        XDocument project = XDocument.Load(Path.Combine(packages.RepositoryRoot, HostApp, "SpecDecode.HostApp.csproj"));
        Assert.Equal(packages.TorchSharpVersion, project.Descendants("TorchSharpVersion").Single().Value);
        string[] references = project.Descendants("PackageReference").Select(e => (string)e.Attribute("Include")!).Order().ToArray();
        Assert.Equal(["SpecDecode.Extensions.AI", "SpecDecode.Suffix", "SpecDecode.Tokenization", "SpecDecode.Tree", "TorchSharp-cpu"], references);
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
