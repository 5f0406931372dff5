using System.ClientModel;
using System.ClientModel.Primitives;
using Microsoft.AspNetCore.Builder;
using OpenAI;

namespace SpecDecode.Server.Tests;

/// <summary>
/// The server on the embedded default model (models/default, CPU, float32), on real Kestrel ports on the loopback, as a
/// client sees it:
/// <list type="bullet">
/// <item><see cref="Open"/>: 16 slots, prompt-lookup drafts (they depend on the request alone, so seeded sampling repeats
/// exactly), no API key;</item>
/// <item><see cref="Keyed"/>: the same engine behind the API key <see cref="ApiKey"/>;</item>
/// <item><see cref="Tight"/>: a second engine with one slot, the suffix drafter and no waiting room, for disconnects and
/// 503.</item>
/// </list>
/// Adaptive speculation is off (no cost model to measure on a shared CPU); greedy outputs do not depend on it.
/// </summary>
public sealed class ServerFixture : IAsyncLifetime
{
    /// <summary>The key of <see cref="Keyed"/>.</summary>
    public const string ApiKey = "sk-specdecode-test";

    /// <summary>The model name the server serves (the embedded folder's name).</summary>
    public const string Model = "default";

    private readonly List<IAsyncDisposable> _apps = [];

    public ModelHost Host { get; private set; } = null!;

    public ModelHost TightHost { get; private set; } = null!;

    public Uri Open { get; private set; } = null!;

    public Uri Keyed { get; private set; } = null!;

    public Uri Tight { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Host = ModelHost.Load(new ServerSettings { MaxContext = 1024, MaxBatch = 16, Draft = "prompt-lookup", Adaptive = false });
        TightHost = ModelHost.Load(new ServerSettings { MaxContext = 2048, MaxBatch = 1, Draft = "suffix", Adaptive = false });
        Open = await StartAsync(new ServerSettings { MaxWaiting = 64 }, Host);
        Keyed = await StartAsync(new ServerSettings { ApiKey = ApiKey }, Host);
        Tight = await StartAsync(new ServerSettings { MaxWaiting = 0 }, TightHost);
    }

    private async Task<Uri> StartAsync(ServerSettings settings, ModelHost host)
    {
        WebApplication app = ServerApp.Build(settings with { Urls = ["http://127.0.0.1:0"] }, host);
        await app.StartAsync();
        _apps.Add(app);
        string address = app.BoundAddress();
        return new Uri(address.TrimEnd('/') + "/v1");
    }

    /// <summary>A file of ../shared (beside the repository); a missing one fails the test with its path.</summary>
    public static string SharedFile(params string[] parts)
    {
        DirectoryInfo? dir = new(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "SpecDecode.sln")))
        {
            dir = dir.Parent;
        }
        Assert.True(dir is not null, "repository root (SpecDecode.sln) not found above " + AppContext.BaseDirectory);
        string path = Path.GetFullPath(Path.Combine([dir!.FullName, "..", "shared", .. parts]));
        Assert.True(File.Exists(path), "file missing from ../shared: " + path);
        return path;
    }

    /// <summary>The official OpenAI client for <paramref name="endpoint"/>, with no retries (a 503 must reach the test)
    /// and, when given, a header on every request.</summary>
    public static OpenAIClient Client(Uri endpoint, string apiKey = "unused", (string Name, string Value)? header = null)
    {
        var options = new OpenAIClientOptions { Endpoint = endpoint, RetryPolicy = new ClientRetryPolicy(maxRetries: 0), NetworkTimeout = TimeSpan.FromMinutes(5) };
        if (header is { } h)
        {
            options.AddPolicy(new HeaderPolicy(h.Name, h.Value), PipelinePosition.PerCall);
        }
        return new OpenAIClient(new ApiKeyCredential(apiKey), options);
    }

    public async Task DisposeAsync()
    {
        foreach (IAsyncDisposable app in _apps)
        {
            await app.DisposeAsync();
        }
        Host?.Dispose();
        TightHost?.Dispose();
    }

    /// <summary>Adds a header to every request (how a client names its conversation).</summary>
    private sealed class HeaderPolicy(string name, string value) : PipelinePolicy
    {
        public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            message.Request.Headers.Set(name, value);
            ProcessNext(message, pipeline, currentIndex);
        }

        public override ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            message.Request.Headers.Set(name, value);
            return ProcessNextAsync(message, pipeline, currentIndex);
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<ServerFixture>
{
    public const string Name = "Server on the embedded model";
}
