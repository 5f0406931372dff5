namespace SpecDecode.LocalServers;

/// <summary>nats-server with JetStream (Debian's nats-server 2.9), file storage in the data folder.</summary>
public sealed class NatsServer : LocalServer
{
    private readonly int? _maxPayload;

    private NatsServer((string Path, string? Lib) binary, int? maxPayload) : base(binary.Path, binary.Lib, "nats") => _maxPayload = maxPayload;

    /// <summary>Finds (or fetches) nats-server and starts it on a free loopback port.</summary>
    /// <param name="maxPayload">The largest message it takes, in bytes (its own default, 1 MB, when null).</param>
    /// <exception cref="LocalServerException">It cannot be found, fetched or started.</exception>
    public static NatsServer StartNew(int? maxPayload = null)
    {
        return Started(new NatsServer(DebianBinary.Locate("nats-server", "nats-server"), maxPayload));
    }

    /// <summary>The client URL, <c>nats://127.0.0.1:PORT</c>.</summary>
    public string Url => $"nats://127.0.0.1:{Port}";

    /// <inheritdoc />
    protected override IEnumerable<string> Arguments()
    {
        string[] common = ["-a", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-js", "-sd", DataFolder];
        if (_maxPayload is not int bytes)
        {
            return common;
        }
        // max_payload has no command-line flag
        string config = Path.Combine(DataFolder, "limits.conf");
        File.WriteAllText(config, $"max_payload: {bytes.ToString(System.Globalization.CultureInfo.InvariantCulture)}\n");
        return [.. common, "-c", config];
    }
}
