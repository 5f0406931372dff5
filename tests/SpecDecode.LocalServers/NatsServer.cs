namespace SpecDecode.LocalServers;

/// <summary>nats-server with JetStream (Debian's nats-server 2.9), file storage in the data folder.</summary>
public sealed class NatsServer : LocalServer
{
    private NatsServer((string Path, string? Lib) binary) : base(binary.Path, binary.Lib, "nats") { }

    /// <summary>Finds (or fetches) nats-server and starts it on a free loopback port.</summary>
    /// <exception cref="LocalServerException">It cannot be found, fetched or started.</exception>
    public static NatsServer StartNew()
    {
        return Started(new NatsServer(DebianBinary.Locate("nats-server", "nats-server")));
    }

    /// <summary>The client URL, <c>nats://127.0.0.1:PORT</c>.</summary>
    public string Url => $"nats://127.0.0.1:{Port}";

    /// <inheritdoc />
    protected override IEnumerable<string> Arguments() =>
        ["-a", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-js", "-sd", DataFolder];
}
