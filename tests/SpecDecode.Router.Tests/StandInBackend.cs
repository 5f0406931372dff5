using SpecDecode.LocalServers;

namespace SpecDecode.Router.Tests;

/// <summary>A stand-in replica in the test process: answers every request with its name, and <c>/health</c>.</summary>
internal sealed class StandInBackend : IAsyncDisposable
{
    private WebApplication? _app;
    private int _requests;

    private StandInBackend(string name, int port)
    {
        Name = name;
        Port = port;
    }

    public string Name { get; }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}/";

    public int Requests => Volatile.Read(ref _requests);

    public static async Task<StandInBackend> StartAsync(string name)
    {
        var backend = new StandInBackend(name, LocalServer.FreePort());
        await backend.StartAsync();
        return backend;
    }

    /// <summary>Starts (again) on the same port.</summary>
    public async Task StartAsync()
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        WebApplication app = builder.Build();
        app.Urls.Add($"http://127.0.0.1:{Port}");
        app.MapGet("/health", () => Results.Ok());
        app.Map("/{**path}", async (HttpContext context) =>
        {
            Interlocked.Increment(ref _requests);
            using var reader = new StreamReader(context.Request.Body);
            string body = await reader.ReadToEndAsync();
            return Results.Text($"{Name}:{body.Length}");
        });
        await app.StartAsync();
        _app = app;
    }

    /// <summary>Stops listening (the replica is gone: connections are refused).</summary>
    public async Task StopAsync()
    {
        if (_app is { } app)
        {
            _app = null;
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
