using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;
using Xunit.Abstractions;

namespace SpecDecode.Packaging.Tests;

/// <summary>
/// What a user gets from <c>dotnet pack -c Release</c>: the six packages with their dependencies (no native dependency
/// in Core, Suffix, Tokenization, Extensions.AI and Fleet; TorchSharp, not a libtorch, in Tree), one version, the licence expression, repository metadata, a
/// readme, XML docs, symbol packages, deterministic CI builds and Tree's buildTransitive Debian 12 fix.
/// </summary>
[Collection(PackagesCollection.Name)]
public sealed class PackageTests(PackagesFixture packages, ITestOutputHelper output)
{
    private static readonly string[] NativeTorchPrefixes = ["TorchSharp-", "libtorch"];

    public static TheoryData<string> Ids => new(PackagesFixture.PackageIds);

    [Fact]
    public void PackProducesExactlyTheLibrariesWithSymbolPackages()
    {
        output.WriteLine($"dotnet pack of the libraries took {packages.PackTime.TotalSeconds:F1} s");
        string[] files = Directory.GetFiles(packages.OutputFolder).Select(Path.GetFileName).Order().ToArray()!;
        string[] expected = PackagesFixture.PackageIds
            .SelectMany(id => new[] { $"{id}.{packages.ExpectedVersion}.nupkg", $"{id}.{packages.ExpectedVersion}.snupkg" })
            .Order().ToArray();
        Assert.Equal(expected, files);
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void MetadataComesFromOnePlace(string id)
    {
        Package package = packages.Packages[id];
        Assert.Equal(id, package.Metadata("id")?.Value);
        Assert.Equal(packages.ExpectedVersion, package.Metadata("version")?.Value);
        Assert.Matches(@"^\d+\.\d+\.\d+", packages.ExpectedVersion);
        Assert.Equal("SpecDecode contributors", package.Metadata("authors")?.Value);
        Assert.Contains("2026 SpecDecode contributors", package.Metadata("copyright")?.Value);
        Assert.Contains("speculative-decoding", package.Metadata("tags")?.Value);
        Assert.False(string.IsNullOrWhiteSpace(package.Metadata("description")?.Value));

        XElement license = package.Metadata("license") ?? throw new Xunit.Sdk.XunitException($"{id}: no <license>");
        Assert.Equal("expression", (string?)license.Attribute("type"));
        Assert.Equal("MIT", license.Value);
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void RepositoryMetadataNamesGitAndTheCommit(string id)
    {
        XElement repository = packages.Packages[id].Metadata("repository")
            ?? throw new Xunit.Sdk.XunitException($"{id}: no <repository>");
        Assert.Equal("git", (string?)repository.Attribute("type"));
        // Source Link reads the commit from .git (no network); a source tree without .git has none to give
        if (Directory.Exists(Path.Combine(packages.RepositoryRoot, ".git")) || File.Exists(Path.Combine(packages.RepositoryRoot, ".git")))
            Assert.Matches("^[0-9a-f]{40}$", (string?)repository.Attribute("commit") ?? "");
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void ReadmeIsPacked(string id)
    {
        Package package = packages.Packages[id];
        Assert.Equal("README.md", package.Metadata("readme")?.Value);
        string readme = package.Text("README.md");
        Assert.StartsWith($"# {id}", readme);
        Assert.Contains("docs/", readme);
        if (id == "SpecDecode.Tree")
        {
            Assert.Contains("TorchSharp-cpu", readme);
            Assert.Contains("TorchSharp-cuda-linux", readme);
            Assert.Contains("SPECDECODE_LIBTORCH", readme);
        }
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void AssemblyAndXmlDocsAreInLib(string id)
    {
        Package package = packages.Packages[id];
        Assert.Contains($"lib/net10.0/{id}.dll", package.Entries);
        XDocument docs = XDocument.Parse(package.Text($"lib/net10.0/{id}.xml"));
        Assert.Equal(id, docs.Root?.Element("assembly")?.Element("name")?.Value);
        Assert.True(docs.Root?.Element("members")?.Elements("member").Count() > 10, $"{id}: the XML docs are nearly empty");
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void SymbolPackageHoldsThePortablePdb(string id)
    {
        string path = Path.Combine(packages.OutputFolder, $"{id}.{packages.ExpectedVersion}.snupkg");
        using ZipArchive symbols = ZipFile.OpenRead(path);
        Assert.Contains(symbols.Entries, e => e.FullName == $"lib/net10.0/{id}.pdb");
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void AssemblyIsADeterministicCiBuild(string id)
    {
        using var pe = new PEReader(new MemoryStream(packages.Packages[id].Bytes($"lib/net10.0/{id}.dll")));
        var debug = pe.ReadDebugDirectory();
        Assert.Contains(debug, e => e.Type == DebugDirectoryEntryType.Reproducible);

        // ContinuousIntegrationBuild maps the repository's source paths to /_/: no build machine path in the symbols
        string pdbPath = Path.Combine(packages.OutputFolder, $"{id}.{packages.ExpectedVersion}.snupkg");
        using ZipArchive symbols = ZipFile.OpenRead(pdbPath);
        using var pdb = new MemoryStream();
        using (Stream stream = symbols.GetEntry($"lib/net10.0/{id}.pdb")!.Open())
            stream.CopyTo(pdb);
        pdb.Position = 0;
        using MetadataReaderProvider provider = MetadataReaderProvider.FromPortablePdbStream(pdb);
        MetadataReader reader = provider.GetMetadataReader();
        string[] documents = reader.Documents.Select(d => reader.GetString(reader.GetDocument(d).Name)).ToArray();
        Assert.Contains(documents, d => d.StartsWith($"/_/src/{id}/", StringComparison.Ordinal));
        Assert.DoesNotContain(documents, d => d.StartsWith(packages.RepositoryRoot, StringComparison.Ordinal));
    }

    [Fact]
    public void CoreHasNoDependencies()
    {
        Assert.Empty(packages.Packages["SpecDecode.Core"].Dependencies());
    }

    [Fact]
    public void SuffixDependsOnCoreOnly()
    {
        var dependencies = packages.Packages["SpecDecode.Suffix"].Dependencies();
        Assert.Equal(new Dictionary<string, string> { ["SpecDecode.Core"] = packages.ExpectedVersion }, dependencies);
    }

    [Fact]
    public void TokenizationDependsOnCoreAndTheTokenizersLibraryOnly()
    {
        var dependencies = packages.Packages["SpecDecode.Tokenization"].Dependencies();
        Assert.Equal(["Microsoft.ML.Tokenizers", "SpecDecode.Core"], dependencies.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(packages.ExpectedVersion, dependencies["SpecDecode.Core"]);
    }

    [Fact]
    public void ExtensionsAIDependsOnCoreAndTheAbstractionsOnly()
    {
        var dependencies = packages.Packages["SpecDecode.Extensions.AI"].Dependencies();
        Assert.Equal(["Microsoft.Extensions.AI.Abstractions", "SpecDecode.Core"], dependencies.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(packages.ExpectedVersion, dependencies["SpecDecode.Core"]);
    }

    [Fact]
    public void FleetDependsOnSuffixAndTheNatsClientOnly()
    {
        var dependencies = packages.Packages["SpecDecode.Fleet"].Dependencies();
        Assert.Equal(packages.ExpectedVersion, dependencies.GetValueOrDefault("SpecDecode.Suffix"));
        Assert.True(dependencies.ContainsKey("NATS.Net"), "SpecDecode.Fleet must depend on NATS.Net");
        Assert.Equal(["Microsoft.Extensions.Logging.Abstractions", "NATS.Net", "SpecDecode.Suffix"], dependencies.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void TreeDependsOnTorchSharpNotOnALibTorch()
    {
        var dependencies = packages.Packages["SpecDecode.Tree"].Dependencies();
        Assert.Equal(packages.ExpectedVersion, dependencies.GetValueOrDefault("SpecDecode.Core"));
        Assert.Equal(packages.ExpectedVersion, dependencies.GetValueOrDefault("SpecDecode.Tokenization"));
        Assert.Equal(packages.TorchSharpVersion, dependencies.GetValueOrDefault("TorchSharp"));
        Assert.DoesNotContain(dependencies.Keys, d => NativeTorchPrefixes.Any(p => d.StartsWith(p, StringComparison.OrdinalIgnoreCase)));
        // the engine needs neither the suffix drafter nor the IChatClient adapter: an app adds those it uses
        Assert.DoesNotContain(dependencies.Keys, d => d is "SpecDecode.Suffix" or "SpecDecode.Extensions.AI" or "Microsoft.Extensions.AI.Abstractions");
    }

    /// <summary>The pure packages: no TorchSharp or libtorch anywhere in their dependencies, no native files, no build
    /// steps. Their other dependencies are managed-only libraries (checked by name above).</summary>
    [Theory]
    [InlineData("SpecDecode.Core")]
    [InlineData("SpecDecode.Suffix")]
    [InlineData("SpecDecode.Tokenization")]
    [InlineData("SpecDecode.Extensions.AI")]
    [InlineData("SpecDecode.Fleet")]
    public void PureCSharpPackagesCarryNoNativeDependency(string id)
    {
        Package package = packages.Packages[id];
        Assert.DoesNotContain(package.Dependencies().Keys, d =>
            d.Contains("Torch", StringComparison.OrdinalIgnoreCase) || d.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase));
        Assert.DoesNotContain(package.Dependencies().Keys, d => d == "SpecDecode.Tree");
        Assert.DoesNotContain(package.Entries, e => e.StartsWith("build", StringComparison.Ordinal) || e.StartsWith("runtimes/", StringComparison.Ordinal));
        Assert.DoesNotContain(package.Entries, e => e.EndsWith(".so", StringComparison.Ordinal) || e.EndsWith(".dylib", StringComparison.Ordinal)
            || (e.EndsWith(".dll", StringComparison.Ordinal) && e != $"lib/net10.0/{id}.dll"));
    }

    [Fact]
    public void TreeCarriesTheDebian12FixAsBuildTransitive()
    {
        Package tree = packages.Packages["SpecDecode.Tree"];
        string targets = tree.Text("buildTransitive/SpecDecode.Tree.targets");
        Assert.Contains("WeakenLibTorchSharpGlibcxx", targets);
        Assert.Contains("$(MSBuildThisFileDirectory)ElfVersionPatch.cs", targets);
        Assert.Contains("class", tree.Text("buildTransitive/ElfVersionPatch.cs"));
        // the packed files are the repository's, unchanged
        Assert.Equal(File.ReadAllText(Path.Combine(packages.RepositoryRoot, "build", "LibTorchSharp.Glibcxx.targets")), targets);
    }
}
