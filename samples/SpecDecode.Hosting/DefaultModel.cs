using SpecDecode.CommandLine;

namespace SpecDecode.Hosting;

/// <summary>The embedded default model pair (models/default and models/default-draft in the repository): where hosts look
/// for it when no model is named.</summary>
public static class DefaultModel
{
    /// <summary>Where the embedded default model lives, relative to the repository root (or the app's folder).</summary>
    public const string RelativePath = "models/default";

    /// <summary>Where the embedded default draft model lives, beside the default model.</summary>
    public const string DraftRelativePath = "models/default-draft";

    /// <summary>What a checkpoint folder holds, for messages.</summary>
    public const string FolderHint = "a Hugging Face checkpoint folder holds config.json, the *.safetensors weights and tokenizer.json";

    /// <summary>The folders searched for the default model: models/default under the repository root found above the
    /// app's folder and above the working directory, then under the app's folder.</summary>
    public static IReadOnlyList<string> Candidates()
    {
        var candidates = new List<string>();
        foreach (string start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
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
        candidates.Add(Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, RelativePath)));
        return candidates.Distinct().ToList();
    }

    /// <summary>The embedded draft model's folder when <paramref name="targetFolder"/> is the embedded default model and
    /// the draft is there; otherwise null (a draft model must then be named).</summary>
    public static string? DraftFolderFor(string targetFolder)
    {
        ArgumentNullException.ThrowIfNull(targetFolder);
        string target = Path.GetFullPath(targetFolder).TrimEnd(Path.DirectorySeparatorChar);
        if (!string.Equals(Path.GetFileName(target), Path.GetFileName(RelativePath), StringComparison.Ordinal) ||
            !Candidates().Any(c => string.Equals(Path.GetFullPath(c).TrimEnd(Path.DirectorySeparatorChar), target, StringComparison.Ordinal)))
        {
            return null;
        }
        string draft = Path.Combine(Path.GetDirectoryName(target)!, Path.GetFileName(DraftRelativePath));
        return Directory.Exists(draft) ? draft : null;
    }

    /// <summary>The model folder to load: <paramref name="folder"/>, or the first default candidate that exists.</summary>
    /// <param name="folder">The folder the user named, or null for the embedded default.</param>
    /// <param name="option">The option that names it, for messages.</param>
    /// <exception cref="ToolUsageException">The folder (or every default candidate) is missing, or is a file.</exception>
    public static string Resolve(string? folder, string option = "--model")
    {
        if (folder is not null)
        {
            string full = Path.GetFullPath(folder);
            if (File.Exists(full))
            {
                throw new ToolUsageException($"{option}: {full} is a file; give the checkpoint's folder ({FolderHint}).");
            }
            if (!Directory.Exists(full))
            {
                throw new ToolUsageException($"The model folder {full} does not exist. Pass {option} <folder> with an existing checkpoint folder ({FolderHint}).");
            }
            return full;
        }
        IReadOnlyList<string> candidates = Candidates();
        return candidates.FirstOrDefault(Directory.Exists)
            ?? throw new ToolUsageException(
                $"No model given and the embedded default model is missing: looked for {string.Join(" and ", candidates)}. " +
                $"Pass {option} <folder> with a checkpoint folder ({FolderHint}), e.g. {option} ~/models/Qwen2.5-0.5B-Instruct.");
    }
}
