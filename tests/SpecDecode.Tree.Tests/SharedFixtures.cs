using System.Runtime.InteropServices;
using System.Text.Json;

namespace SpecDecode.Tree.Tests;

/// <summary>Finds the repository root and ../shared fixtures; a missing fixture fails the test with a message.</summary>
internal static class SharedFixtures
{
    /// <summary>The folder holding SpecDecode.sln, found by walking up from the test assembly.</summary>
    public static string RepoRoot
    {
        get
        {
            DirectoryInfo? dir = new(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "SpecDecode.sln")))
            {
                dir = dir.Parent;
            }
            Assert.True(dir is not null, "repository root (SpecDecode.sln) not found above " + AppContext.BaseDirectory);
            return dir!.FullName;
        }
    }

    /// <summary>A file or folder under ../shared/fixtures.</summary>
    public static string Path(params string[] parts)
    {
        string path = System.IO.Path.Combine([RepoRoot, "..", "shared", "fixtures", .. parts]);
        Assert.True(File.Exists(path) || Directory.Exists(path), "fixture missing: " + path + " (../shared must lie beside the repository)");
        return path;
    }

    /// <summary>A tiny checkpoint folder with its expected.json.</summary>
    public static string TinyCheckpoint(string name)
    {
        string folder = Path("hf-tiny", name);
        Assert.True(File.Exists(System.IO.Path.Combine(folder, "expected.json")), "fixture missing: expected.json in " + folder);
        return folder;
    }

    /// <summary>The checkpoint's expected.json.</summary>
    public static JsonDocument Expected(string folder) => JsonDocument.Parse(File.ReadAllBytes(System.IO.Path.Combine(folder, "expected.json")));

    /// <summary>An integer list of expected.json.</summary>
    public static long[] Ids(JsonDocument expected, string field) =>
        expected.RootElement.GetProperty(field).EnumerateArray().Select(e => e.GetInt64()).ToArray();

    /// <summary>A float32 tensor of expected.safetensors, flattened, with its shape.</summary>
    public static (float[] Values, long[] Shape) ExpectedTensor(string folder, string name)
    {
        using var file = SafeTensorsFile.Open(System.IO.Path.Combine(folder, "expected.safetensors"));
        SafeTensorInfo info = file.Get(name);
        var bytes = new byte[info.Length];
        file.CopyTo(name, bytes);
        return (MemoryMarshal.Cast<byte, float>(bytes).ToArray(), info.Shape);
    }

    /// <summary>Asserts max |ours - theirs| / max |theirs| below the fixtures' tolerance of 1e-4.</summary>
    public static void AssertClose(float[] theirs, float[] ours, string what)
    {
        Assert.Equal(theirs.Length, ours.Length);
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < theirs.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - theirs[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(theirs[i]));
        }
        Assert.True(maxDiff / maxAbs < 1e-4, $"{what}: relative error {maxDiff / maxAbs:E2}");
    }
}
