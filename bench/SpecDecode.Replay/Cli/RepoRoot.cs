namespace SpecDecode.Replay;

/// <summary>Finds the repository root (the folder holding <c>SpecDecode.sln</c>) and the shared trace data beside it.</summary>
public static class RepoRoot
{
    /// <summary>The solution file that marks the root.</summary>
    public const string Marker = "SpecDecode.sln";

    /// <summary>The default trace file, relative to the repository root.</summary>
    public static readonly string DefaultTracesRelative =
        Path.Combine("..", "shared", "data", "swebench", "gemini3pro-minisweagent.jsonl.gz");

    /// <summary>
    /// Walks up from <paramref name="start"/> (default: the application's folder, then the current directory) to the
    /// first folder holding <see cref="Marker"/>.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No folder above holds the marker.</exception>
    public static string Find(string? start = null)
    {
        string[] starts = start is not null ? [start] : [AppContext.BaseDirectory, Directory.GetCurrentDirectory()];
        foreach (string s in starts)
        {
            for (DirectoryInfo? dir = new(Path.GetFullPath(s)); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, Marker)))
                {
                    return dir.FullName;
                }
            }
        }
        throw new DirectoryNotFoundException(
            $"No folder above {string.Join(" or ", starts)} holds {Marker}: run from inside the repository or pass --traces.");
    }

    /// <summary>The default trace file: <c>../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz</c> from the root.</summary>
    public static string DefaultTraces(string? start = null) => Path.GetFullPath(Path.Combine(Find(start), DefaultTracesRelative));
}
