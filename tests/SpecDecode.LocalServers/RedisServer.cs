namespace SpecDecode.LocalServers;

/// <summary>redis-server (Debian's 7.0) with an append-only file (fsync every second) in the data folder.</summary>
public sealed class RedisServer : LocalServer
{
    private RedisServer((string Path, string? Lib) binary) : base(binary.Path, binary.Lib, "redis") { }

    /// <summary>Finds (or fetches) redis-server and starts it on a free loopback port.</summary>
    /// <exception cref="LocalServerException">It cannot be found, fetched or started.</exception>
    public static RedisServer StartNew()
    {
        // redis-server (a link) points at redis-check-rdb of redis-tools; jemalloc and lzf are its libraries beyond the base system.
        return Started(new RedisServer(DebianBinary.Locate("redis-server", "redis-server", "redis-tools", "libjemalloc2", "liblzf1")));
    }

    /// <summary>The StackExchange.Redis configuration string, <c>127.0.0.1:PORT</c>.</summary>
    public string Configuration => $"127.0.0.1:{Port}";

    /// <inheritdoc />
    protected override IEnumerable<string> Arguments() =>
    [
        "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", DataFolder,
        "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no", "--daemonize", "no",
    ];
}
