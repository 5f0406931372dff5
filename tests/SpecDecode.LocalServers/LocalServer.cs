using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace SpecDecode.LocalServers;

/// <summary>
/// A server process on a loopback port, with its data in a temporary folder: started, killed (SIGKILL, as a crash),
/// restarted on the same port and data, and ended with <see cref="Dispose"/>, which also deletes the data.
/// </summary>
public abstract class LocalServer : IDisposable
{
    private readonly StringBuilder _log = new();
    private Process? _process;
    private bool _disposed;

    /// <summary>Sets the server up (not started).</summary>
    protected LocalServer(string executable, string? libraryFolder, string name)
    {
        Executable = executable;
        LibraryFolder = libraryFolder;
        Port = FreePort();
        DataFolder = Directory.CreateTempSubdirectory($"specdecode-{name}-").FullName;
    }

    /// <summary>The server's executable.</summary>
    public string Executable { get; }

    /// <summary>Unpacked libraries the executable needs (LD_LIBRARY_PATH), or null.</summary>
    public string? LibraryFolder { get; }

    /// <summary>The loopback port it listens on.</summary>
    public int Port { get; }

    /// <summary>Its data folder (deleted by <see cref="Dispose"/>).</summary>
    public string DataFolder { get; }

    /// <summary>True while the process runs.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The process id while it runs.</summary>
    public int? ProcessId => IsRunning ? _process!.Id : null;

    /// <summary>What the server printed so far (for failure messages).</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>The command-line arguments.</summary>
    protected abstract IEnumerable<string> Arguments();

    /// <summary>Starts the process and waits until its port accepts connections.</summary>
    /// <exception cref="LocalServerException">It exited or did not listen within the time limit.</exception>
    public void Start(TimeSpan? timeout = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (IsRunning)
        {
            return;
        }
        var info = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = DataFolder,
        };
        foreach (string a in Arguments())
        {
            info.ArgumentList.Add(a);
        }
        if (LibraryFolder is not null)
        {
            info.Environment["LD_LIBRARY_PATH"] = LibraryFolder;
        }
        Process p = Process.Start(info) ?? throw new LocalServerException($"{Executable} did not start.");
        p.OutputDataReceived += (_, e) => Append(e.Data);
        p.ErrorDataReceived += (_, e) => Append(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        DateTime deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (DateTime.UtcNow < deadline)
        {
            if (p.HasExited)
            {
                throw new LocalServerException($"{Path.GetFileName(Executable)} exited with {p.ExitCode} at start: {Log}");
            }
            if (Accepts())
            {
                return;
            }
            Thread.Sleep(25);
        }
        Kill();
        throw new LocalServerException($"{Path.GetFileName(Executable)} did not listen on 127.0.0.1:{Port} in time: {Log}");
    }

    /// <summary>Kills the process at once (SIGKILL: no shutdown, like a crash) and waits for it to go.</summary>
    public void Kill()
    {
        if (_process is { } p)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                }
                p.WaitForExit(10_000);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
            p.Dispose();
            _process = null;
        }
    }

    /// <summary>Stops the process where it stands (SIGSTOP): its sockets stay open and nothing it was sent is
    /// answered until <see cref="Thaw"/>, like a broker that hangs or a network that drops its replies.</summary>
    public void Freeze() => Signal(19);

    /// <summary>Lets a frozen process run on (SIGCONT).</summary>
    public void Thaw() => Signal(18);

    private void Signal(int signal)
    {
        if (_process is not { HasExited: false } p)
        {
            throw new InvalidOperationException($"{Path.GetFileName(Executable)} is not running.");
        }
        if (SendSignal(p.Id, signal) != 0)
        {
            throw new LocalServerException($"kill({p.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    /// <summary>Kills and starts it again on the same port and data folder.</summary>
    public void Restart()
    {
        Kill();
        Start();
    }

    /// <summary>The server's resident memory in bytes (VmRSS), or -1 when it does not run.</summary>
    public long ResidentBytes()
    {
        if (ProcessId is not int pid)
        {
            return -1;
        }
        foreach (string line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }
        return -1;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        Kill();
        try
        {
            Directory.Delete(DataFolder, recursive: true);
        }
        catch (IOException)
        {
            // a file still held: leave the temporary folder
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>Starts <paramref name="server"/> and returns it, or disposes it (and its data) when it does not start.</summary>
    protected static T Started<T>(T server, TimeSpan? timeout = null) where T : LocalServer
    {
        try
        {
            server.Start(timeout);
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>A TCP port on 127.0.0.1 that nothing listens on now.</summary>
    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private bool Accepts()
    {
        try
        {
            using var client = new TcpClient();
            client.Connect(IPAddress.Loopback, Port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            if (_log.Length < 64 * 1024)
            {
                _log.AppendLine(line);
            }
        }
    }
}
