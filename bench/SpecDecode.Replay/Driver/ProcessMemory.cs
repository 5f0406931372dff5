using System.Diagnostics;

namespace SpecDecode.Replay;

/// <summary>Process memory figures for reports.</summary>
public static class ProcessMemory
{
    /// <summary>
    /// The process's peak resident set so far, in bytes: <c>VmHWM</c> of <c>/proc/self/status</c> on Linux, otherwise
    /// <see cref="Process.PeakWorkingSet64"/>.
    /// </summary>
    public static long PeakBytes()
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
        {
            foreach (string line in File.ReadLines(status))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length >= 2 && long.TryParse(parts[1], out long kb))
                    {
                        return kb * 1024;
                    }
                }
            }
        }
        using var process = Process.GetCurrentProcess();
        return process.PeakWorkingSet64;
    }

    /// <summary>Bytes of the managed heap still reachable after a full, compacting collection.</summary>
    public static long LiveManagedBytes()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(forceFullCollection: false);
    }
}
