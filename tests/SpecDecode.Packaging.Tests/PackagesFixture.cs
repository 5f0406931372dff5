using System.Diagnostics;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;

namespace SpecDecode.Packaging.Tests;

/// <summary>
/// Packs the six libraries (SpecDecode.Core, .Suffix, .Tokenization, .Extensions.AI, .Fleet and .Tree) once, as a user or a release job would
/// (<c>dotnet pack -c Release</c> with <c>ContinuousIntegrationBuild=true</c>), into a temporary folder, and opens the
/// packages. The pack uses its own artifacts folder (<c>--artifacts-path</c>): it restores from the local NuGet cache and
/// never writes into the repository's bin/ and obj/ folders, so it cannot disturb the solution build around it. The version
/// is the repository's VersionPrefix with a unique suffix (<c>ci.&lt;ticks&gt;</c>), so a restore of these packages (the
/// host app test) can never be served a stale copy from the global NuGet cache. Shared by the test classes of the
/// <see cref="PackagesCollection"/>: one pack for all of them.
/// </summary>
public sealed class PackagesFixture : IDisposable
{
    /// <summary>The packable libraries, in dependency order.</summary>
    public static readonly string[] PackageIds =
        ["SpecDecode.Core", "SpecDecode.Suffix", "SpecDecode.Tokenization", "SpecDecode.Extensions.AI", "SpecDecode.Fleet", "SpecDecode.Tree"];

    private readonly string _work;

    /// <summary>Packs the libraries; throws with the pack's output when it fails.</summary>
    public PackagesFixture()
    {
        RepositoryRoot = FindRepositoryRoot();
        VersionSuffix = "ci." + DateTime.UtcNow.Ticks.ToString(System.Globalization.CultureInfo.InvariantCulture);
        ExpectedVersion = Metadata("SpecDecodeVersionPrefix") + "-" + VersionSuffix;
        TorchSharpVersion = Metadata("TorchSharpVersion");
        _work = Path.Combine(Path.GetTempPath(), "specdecode-pack-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_work);

        // a solution filter: one `dotnet pack` for all the projects (dotnet pack takes a single project or solution)
        string filter = Path.Combine(_work, "packages.slnf");
        File.WriteAllText(filter, JsonSerializer.Serialize(new
        {
            solution = new
            {
                path = Path.Combine(RepositoryRoot, "SpecDecode.sln"),
                projects = PackageIds.Select(id => $"src/{id}/{id}.csproj").ToArray(),
            },
        }));

        Stopwatch clock = Stopwatch.StartNew();
        (int exitCode, string output) = RunDotnet(
            ["pack", filter, "-c", "Release", "--artifacts-path", Path.Combine(_work, "artifacts"),
             "-o", Path.Combine(_work, "out"), "-p:ContinuousIntegrationBuild=true", "-p:VersionSuffix=" + VersionSuffix, "--disable-build-servers", "-nologo"],
            TimeSpan.FromMinutes(8));
        PackTime = clock.Elapsed;
        PackOutput = output;
        if (exitCode != 0)
            throw new InvalidOperationException($"dotnet pack exited with {exitCode}:\n{output}");

        OutputFolder = Path.Combine(_work, "out");
        foreach (string id in PackageIds)
        {
            string path = Path.Combine(OutputFolder, $"{id}.{ExpectedVersion}.nupkg");
            if (!File.Exists(path))
                throw new InvalidOperationException($"{path} was not produced; the folder has: " +
                    string.Join(", ", Directory.GetFiles(OutputFolder).Select(Path.GetFileName)) + "\n" + output);
            Packages[id] = Package.Read(path, id);
        }
    }

    /// <summary>The folder holding SpecDecode.sln.</summary>
    public string RepositoryRoot { get; }

    /// <summary>The version the packages must have: Directory.Build.props' VersionPrefix (as the test project saw it)
    /// and <see cref="VersionSuffix"/>.</summary>
    public string ExpectedVersion { get; }

    /// <summary>The unique version suffix this pack used (<c>ci.&lt;ticks&gt;</c>).</summary>
    public string VersionSuffix { get; }

    /// <summary>The TorchSharp version of Directory.Packages.props.</summary>
    public string TorchSharpVersion { get; }

    /// <summary>Where the .nupkg and .snupkg files are.</summary>
    public string OutputFolder { get; } = "";

    /// <summary>The packages by id.</summary>
    public Dictionary<string, Package> Packages { get; } = [];

    /// <summary>How long the pack took.</summary>
    public TimeSpan PackTime { get; }

    /// <summary>The pack's console output.</summary>
    public string PackOutput { get; }

    /// <inheritdoc/>
    public void Dispose()
    {
        try { Directory.Delete(_work, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    private static string Metadata(string key) =>
        typeof(PackagesFixture).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == key).Value is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException($"assembly metadata {key} is empty");

    internal static string FindRepositoryRoot()
    {
        DirectoryInfo? dir = new(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
            dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException(
            "repository root (SpecDecode.sln) not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Runs dotnet with <paramref name="arguments"/> in <paramref name="workingDirectory"/> (the repository root
    /// when null) and returns its exit code and its output (stdout and stderr interleaved).</summary>
    /// <exception cref="TimeoutException">It ran past <paramref name="timeout"/> (it is then killed).</exception>
    internal static (int ExitCode, string Output) RunDotnet(IEnumerable<string> arguments, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)
            ? host
            : "dotnet";
        var start = new ProcessStartInfo(dotnet)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? FindRepositoryRoot(),
        };
        foreach (string argument in arguments)
            start.ArgumentList.Add(argument);
        // the test host inherits the outer build's MSBuild settings; a nested dotnet must pick its own
        foreach (string name in new[] { "MSBuildExtensionsPath", "MSBUILD_EXE_PATH", "MSBuildSDKsPath",
                     "MSBuildLoadMicrosoftTargetsReadOnly", "MSBUILDNOINPROCNODE" })
            start.Environment.Remove(name);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach ((string name, string value) in environment ?? new Dictionary<string, string>())
            start.Environment[name] = value;

        using Process process = Process.Start(start) ?? throw new InvalidOperationException("could not start " + dotnet);
        var output = new StringBuilder();
        var gate = new Lock();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (gate) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (gate) output.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', arguments)} ran past {timeout}:\n{output}");
        }
        process.WaitForExit();
        lock (gate)
            return (process.ExitCode, output.ToString());
    }
}

/// <summary>The test classes that share one pack (<see cref="PackagesFixture"/>).</summary>
[CollectionDefinition(Name)]
public sealed class PackagesCollection : ICollectionFixture<PackagesFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Packed libraries";
}

/// <summary>One .nupkg, read into memory: its entry names, its nuspec and the text of chosen entries.</summary>
public sealed class Package
{
    private readonly Dictionary<string, byte[]> _entries;

    private Package(string path, string id, Dictionary<string, byte[]> entries, XDocument nuspec)
    {
        Path = path;
        Id = id;
        _entries = entries;
        Nuspec = nuspec;
    }

    /// <summary>The .nupkg file.</summary>
    public string Path { get; }

    /// <summary>The package id.</summary>
    public string Id { get; }

    /// <summary>The package's nuspec.</summary>
    public XDocument Nuspec { get; }

    /// <summary>Entry names, '/'-separated as in the zip.</summary>
    public IReadOnlyCollection<string> Entries => _entries.Keys;

    /// <summary>The bytes of an entry.</summary>
    public byte[] Bytes(string entry) =>
        _entries.TryGetValue(entry, out byte[]? bytes) ? bytes : throw new KeyNotFoundException($"{Id}: no entry {entry}");

    /// <summary>The text of an entry (UTF-8).</summary>
    public string Text(string entry) => Encoding.UTF8.GetString(Bytes(entry));

    /// <summary>The metadata element of that local name (nuspec namespaces vary by schema version).</summary>
    public XElement? Metadata(string name) =>
        Nuspec.Root!.Elements().Single(e => e.Name.LocalName == "metadata").Elements()
            .SingleOrDefault(e => e.Name.LocalName == name);

    /// <summary>The dependencies of every target-framework group: id to version.</summary>
    public Dictionary<string, string> Dependencies() =>
        Nuspec.Descendants().Where(e => e.Name.LocalName == "dependency")
            .ToDictionary(e => (string)e.Attribute("id")!, e => (string)e.Attribute("version")!);

    /// <summary>Reads a package.</summary>
    public static Package Read(string path, string id)
    {
        using ZipArchive zip = ZipFile.OpenRead(path);
        var entries = new Dictionary<string, byte[]>();
        foreach (ZipArchiveEntry entry in zip.Entries)
        {
            using Stream stream = entry.Open();
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            entries[entry.FullName] = copy.ToArray();
        }
        XDocument nuspec = XDocument.Parse(Encoding.UTF8.GetString(entries[$"{id}.nuspec"]).TrimStart('\uFEFF'));
        return new Package(path, id, entries, nuspec);
    }
}
