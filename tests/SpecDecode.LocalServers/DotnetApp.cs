using System.Reflection;

namespace SpecDecode.LocalServers;

/// <summary>
/// One of the repository's ASP.NET Core programs (the router, a replica) as its own process on a free loopback port:
/// <c>dotnet &lt;bin&gt;/&lt;Name&gt;.dll --urls http://127.0.0.1:PORT …</c>, from the project's own build output.
/// </summary>
public sealed class DotnetApp : LocalServer
{
    private readonly string _dll;
    private readonly string[] _arguments;

    private DotnetApp(string dll, string name, string[] arguments) : base("dotnet", null, name)
    {
        _dll = dll;
        _arguments = arguments;
    }

    /// <summary>The app's base URL, <c>http://127.0.0.1:PORT</c>.</summary>
    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Starts the program built from <paramref name="projectFolder"/> (relative to the repository root).</summary>
    /// <param name="projectFolder">E.g. <c>samples/SpecDecode.Router</c>; its assembly is named after the folder.</param>
    /// <param name="arguments">Extra command-line arguments (such as the router's <c>--replica http://…</c>).</param>
    /// <exception cref="LocalServerException">The program is not built, or did not start listening.</exception>
    public static DotnetApp StartNew(string projectFolder, params string[] arguments)
    {
        string name = Path.GetFileName(projectFolder.TrimEnd('/'));
        string dll = Path.Combine(RepositoryRoot(), projectFolder, "bin", Configuration(), "net10.0", name + ".dll");
        if (!File.Exists(dll))
        {
            throw new LocalServerException($"{dll} is not built: build the solution (dotnet build SpecDecode.sln -c {Configuration()}) first.");
        }
        return Started(new DotnetApp(dll, name, arguments), TimeSpan.FromSeconds(60));
    }

    /// <inheritdoc />
    protected override IEnumerable<string> Arguments() =>
        [_dll, "--urls", Url, .. _arguments];

    /// <summary>The build configuration of this assembly, which the tests that use it share (Release or Debug).</summary>
    private static string Configuration() =>
        typeof(DotnetApp).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    private static string RepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
            {
                return dir.FullName;
            }
        }
        throw new LocalServerException($"No folder above {AppContext.BaseDirectory} holds SpecDecode.sln.");
    }
}
