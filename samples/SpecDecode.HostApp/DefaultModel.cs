namespace SpecDecode.HostApp;

/// <summary>
/// Finds the repository's embedded default model (<c>models/default</c>, a Hugging Face folder) for a run without a
/// checkpoint argument: under the folder holding <c>SpecDecode.sln</c>, searched upwards from the working directory and
/// from the app's folder. A stand-alone app cannot use the generator sample's lookup, so it has these few lines of its own.
/// </summary>
internal static class DefaultModel
{
    /// <summary>Where the embedded default model lives, relative to the repository root.</summary>
    public const string RelativePath = "models/default";

    /// <summary>The folders searched, in order: models/default under the repository root above the working directory,
    /// then under the one above the app's folder (distinct, full paths).</summary>
    public static IReadOnlyList<string> Candidates()
    {
        var candidates = new List<string>();
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (DirectoryInfo? dir = new(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
                {
                    candidates.Add(Path.GetFullPath(Path.Combine(dir.FullName, RelativePath)));
                    break;
                }
            }
        }
        return candidates.Distinct().ToList();
    }

    /// <summary>The first candidate that holds a checkpoint (config.json), or null.</summary>
    public static string? Find() => Candidates().FirstOrDefault(c => File.Exists(Path.Combine(c, "config.json")));
}
