using System.Reflection;
using TorchSharp;

namespace SpecDecode.Tree.Tests;

/// <summary>Where the tests find libLibTorchSharp.so: the pristine one in the NuGet cache and the build's copy.</summary>
internal static class TestFiles
{
    private static string Metadata(string key) =>
        typeof(TestFiles).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == key).Value
        ?? throw new InvalidOperationException("no assembly metadata " + key);

    /// <summary>The NuGet cache's libLibTorchSharp.so: never written, only copied.</summary>
    public static string PristineLibTorchSharp
    {
        get
        {
            string path = Path.Combine(Metadata("NuGetPackageRoot"), "torchsharp", Metadata("TorchSharpVersion"),
                "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
            Assert.True(File.Exists(path), "pristine libLibTorchSharp.so not found at " + path);
            return path;
        }
    }

    /// <summary>The copy the build put next to the test assembly (portable or RID-specific layout).</summary>
    public static string OutputLibTorchSharp
    {
        get
        {
            string[] candidates =
            {
                Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so"),
                Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so"),
            };
            return candidates.FirstOrDefault(File.Exists)
                ?? throw new FileNotFoundException("libLibTorchSharp.so not in the test output: " + string.Join(", ", candidates));
        }
    }

    /// <summary>A fresh temporary folder, deleted on dispose.</summary>
    public sealed class TempDir : IDisposable
    {
        public TempDir() => Directory.CreateDirectory(Path);

        public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "specdecode-elf-" + Guid.NewGuid().ToString("N"));

        public string File(string name) => System.IO.Path.Combine(Path, name);

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }

    /// <summary>Forces the torch type initializer, so a failed native load surfaces in the test that needs it.</summary>
    public static void TouchTorch() => _ = torch.__version__;
}
