using System.Diagnostics;

namespace SpecDecode.LocalServers;

/// <summary>
/// Finds a server binary: on <c>PATH</c> (or the standard sbin folders), else in Debian's package unpacked under the
/// repository's git-ignored <c>.brokers/</c> folder, fetched there on first use with <c>apt-get download</c> and
/// <c>dpkg-deb -x</c> (no install, no root needed unless the package lists are missing and must be updated).
/// </summary>
/// <remarks>
/// Written by hand because no NuGet package ships these servers for Linux, and a test run must not depend on a
/// system service: CI runs exactly <c>dotnet test</c> on a fresh Debian 12 machine. Unpacking is guarded by a file
/// lock, so test assemblies running at once fetch a package once.
/// </remarks>
public static class DebianBinary
{
    /// <summary>Environment variable naming the folder to unpack packages into (default: <c>.brokers/</c> at the repository root).</summary>
    public const string CacheVariable = "SPECDECODE_BROKERS_DIR";

    private static readonly string[] SystemFolders = ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"];

    /// <summary>
    /// The path of <paramref name="binary"/>, fetching <paramref name="packages"/> (the first holds the binary, the
    /// others its libraries) when it is not installed.
    /// </summary>
    /// <param name="binary">The executable's name, e.g. <c>nats-server</c>.</param>
    /// <param name="packages">Debian packages to unpack, e.g. <c>redis-tools, libjemalloc2, liblzf1</c>.</param>
    /// <returns>The executable and the folder of unpacked libraries (null when the system's binary is used).</returns>
    /// <exception cref="LocalServerException">The binary is not installed and the package cannot be fetched.</exception>
    public static (string Path, string? LibraryFolder) Locate(string binary, params string[] packages)
    {
        ArgumentException.ThrowIfNullOrEmpty(binary);
        string? onPath = FindOnPath(binary);
        if (onPath is not null)
        {
            return (onPath, null);
        }
        string root = Path.Combine(CacheFolder(), string.Join("+", packages));
        string? unpacked = FindUnder(root, binary);
        if (unpacked is null)
        {
            Directory.CreateDirectory(CacheFolder());
            using (FileLock(Path.Combine(CacheFolder(), ".lock")))
            {
                unpacked = FindUnder(root, binary) ?? Fetch(root, binary, packages);
            }
        }
        string lib = Path.Combine(root, "usr", "lib", "x86_64-linux-gnu");
        return (unpacked, Directory.Exists(lib) ? lib : null);
    }

    /// <summary>The folder packages are unpacked into.</summary>
    public static string CacheFolder()
    {
        string? configured = Environment.GetEnvironmentVariable(CacheVariable);
        if (!string.IsNullOrEmpty(configured))
        {
            return Path.GetFullPath(configured);
        }
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
            {
                return Path.Combine(dir.FullName, ".brokers");
            }
        }
        return Path.Combine(Path.GetTempPath(), "specdecode-brokers");
    }

    private static string? FindOnPath(string binary)
    {
        IEnumerable<string> folders = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries).Concat(SystemFolders);
        return folders.Select(f => Path.Combine(f, binary)).FirstOrDefault(File.Exists);
    }

    private static string? FindUnder(string root, string binary)
    {
        foreach (string sub in new[] { "usr/sbin", "usr/bin" })
        {
            string candidate = Path.Combine(root, sub, binary);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    private static string Fetch(string root, string binary, string[] packages)
    {
        string download = Path.Combine(CacheFolder(), ".download-" + Environment.ProcessId);
        Directory.CreateDirectory(download);
        try
        {
            (int code, string output) = Run("apt-get", download, ["download", .. packages]);
            if (code != 0 && Environment.UserName == "root")
            {
                // A fresh machine may have no package lists yet.
                Run("apt-get", download, ["update", "-qq"]);
                (code, output) = Run("apt-get", download, ["download", .. packages]);
            }
            if (code != 0)
            {
                throw new LocalServerException(
                    $"{binary} is not installed and 'apt-get download {string.Join(' ', packages)}' failed ({code}): {output.Trim()}. " +
                    $"Install it (apt-get install {packages[0]}) or put {binary} on PATH.");
            }
            string staging = root + ".staging-" + Environment.ProcessId;
            Directory.CreateDirectory(staging);
            foreach (string deb in Directory.GetFiles(download, "*.deb"))
            {
                (int x, string xout) = Run("dpkg-deb", download, ["-x", deb, staging]);
                if (x != 0)
                {
                    throw new LocalServerException($"dpkg-deb -x {Path.GetFileName(deb)} failed ({x}): {xout.Trim()}");
                }
            }
            if (Directory.Exists(root))
            {
                Directory.Delete(root, recursive: true);
            }
            Directory.Move(staging, root);
            return FindUnder(root, binary)
                ?? throw new LocalServerException($"The packages {string.Join(", ", packages)} hold no {binary} under usr/sbin or usr/bin.");
        }
        finally
        {
            Directory.Delete(download, recursive: true);
        }
    }

    private static (int Code, string Output) Run(string file, string workingDirectory, string[] args)
    {
        var info = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
        {
            info.ArgumentList.Add(a);
        }
        try
        {
            using Process p = Process.Start(info)!;
            Task<string> stdout = p.StandardOutput.ReadToEndAsync();
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(3)))
            {
                p.Kill(entireProcessTree: true);
                return (-1, $"{file} timed out after 3 minutes");
            }
            return (p.ExitCode, stdout.Result + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (-1, $"{file} could not be started: {ex.Message}");
        }
    }

    private static FileStream FileLock(string path)
    {
        DateTime deadline = DateTime.UtcNow.AddMinutes(5);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200);
            }
        }
    }
}

/// <summary>A local server could not be found, fetched or started; the message says what to do.</summary>
public sealed class LocalServerException(string message, Exception? inner = null) : Exception(message, inner);
