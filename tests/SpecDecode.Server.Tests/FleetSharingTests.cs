using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using SpecDecode.Fleet;
using SpecDecode.LocalServers;
using SpecDecode.Tests.Shared;

namespace SpecDecode.Server.Tests;

/// <summary>
/// The server as a replica of a fleet (docs/fleet.md): its fleet options follow the tools' convention, its identity
/// follows the checkpoint's files, its admin routes report and check the suffix cache behind the API key, two servers
/// share finished responses through a real nats-server, and a server whose broker is down serves and publishes once the
/// broker returns. Each test loads its own servers on the embedded model (CPU).
/// </summary>
[Collection(FleetSharingCollection.Name)]
public sealed class FleetSharingTests : IAsyncLifetime
{
    private const string Key = "sk-fleet-test";
    private readonly List<WebApplication> _apps = [];
    private readonly List<ModelHost> _hosts = [];
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromMinutes(2) };

    private static readonly object[] Messages =
    [
        new { role = "system", content = "You are a helpful assistant that can interact with a computer shell." },
        new { role = "user", content = "The test tests/test_parsing.py fails. Find out why." },
    ];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (WebApplication app in _apps)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
        foreach (ModelHost host in _hosts)
        {
            host.Dispose();
        }
        _http.Dispose();
    }

    [Theory]
    [InlineData(new[] { "--fleet-nats", "localhost:4222" }, "--fleet-nats: 'localhost:4222' is not a NATS URL")]
    [InlineData(new[] { "--fleet-nats", "nats://127.0.0.1:4222", "--draft", "prompt-lookup" }, "--fleet-nats shares the suffix drafter's cache: use --draft suffix")]
    [InlineData(new[] { "--replica-id", "r1" }, "--replica-id names this replica in a fleet: give --fleet-nats too")]
    [InlineData(new[] { "--fleet-model", "m" }, "--fleet-model names this replica in a fleet: give --fleet-nats too")]
    [InlineData(new[] { "--max-cached-tokens", "-2" }, "--max-cached-tokens: -2 is too small")]
    public void Fleet_options_are_checked_while_parsing(string[] args, string message) =>
        ToolAssert.Refused(ServerCommand.Build(), args, message);

    [Fact]
    public void The_identity_follows_the_checkpoints_files_not_its_folder()
    {
        string original = Hosting.DefaultModel.Resolve(null);
        string work = Directory.CreateTempSubdirectory("fleet-identity-").FullName;
        try
        {
            string a = Copy(original, Path.Combine(work, "a")), b = Copy(original, Path.Combine(work, "b"));
            FleetIdentity identity = CheckpointIdentity.Of(original);
            Assert.Matches("^weights-xxh128:[0-9a-f]{32}$", identity.Model);
            Assert.Matches("^tokenizer-xxh128:[0-9a-f]{32}$", identity.Tokenizer);
            Assert.Equal(identity, CheckpointIdentity.Of(a));

            // one weight byte changed: another model, the same tokenizer
            string shard = Directory.GetFiles(b, "*.safetensors").Order(StringComparer.Ordinal).Last();
            using (var stream = new FileStream(shard, FileMode.Open, FileAccess.ReadWrite))
            {
                stream.Seek(-1, SeekOrigin.End);
                int last = stream.ReadByte();
                stream.Seek(-1, SeekOrigin.End);
                stream.WriteByte((byte)(last ^ 1));
            }
            FleetIdentity changedWeights = CheckpointIdentity.Of(b);
            Assert.NotEqual(identity.Model, changedWeights.Model);
            Assert.Equal(identity.Tokenizer, changedWeights.Tokenizer);

            // the tokenizer file changed: another tokenizer
            File.AppendAllText(Path.Combine(a, "tokenizer.json"), "\n");
            Assert.NotEqual(identity.Tokenizer, CheckpointIdentity.Of(a).Tokenizer);
            Assert.Equal(identity.Model, CheckpointIdentity.Of(a).Model);

            // the chat template is not part of it: it does not change token ids
            File.AppendAllText(Path.Combine(b, "tokenizer_config.json"), "\n");
            Assert.Equal(changedWeights, CheckpointIdentity.Of(b));

            foreach (string weights in Directory.GetFiles(b, "*.safetensors"))
            {
                File.Delete(weights);
            }
            Assert.Contains("safetensors", Assert.Throws<FileNotFoundException>(() => CheckpointIdentity.Of(b)).Message);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    [Fact]
    public async Task The_admin_routes_report_and_check_the_cache_behind_the_api_key()
    {
        Uri server = await StartAsync(new ServerSettings { MaxContext = 1024, MaxBatch = 2, Draft = "suffix", Adaptive = false, MaxCachedTokens = 5000, ApiKey = Key });

        using (HttpResponseMessage refused = await _http.GetAsync(new Uri(server, "admin/cache")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }
        using (HttpResponseMessage refused = await _http.PostAsync(new Uri(server, "admin/cache/check"), null))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }
        JsonElement before = await ReportAsync(server, Key);
        Assert.Equal("suffix", before.GetProperty("drafter").GetString());
        Assert.Equal(5000, before.GetProperty("max_cached_tokens").GetInt64());
        Assert.Equal(0, before.GetProperty("cache").GetProperty("cached_responses").GetInt32());
        Assert.Equal(JsonValueKind.Null, before.GetProperty("sharing").ValueKind);
        Assert.Equal(JsonValueKind.Null, before.GetProperty("fleet").ValueKind);

        JsonElement usage = (await ChatAsync(server, "conv-1", Key)).GetProperty("usage");
        JsonElement after = await ReportAsync(server, Key);
        Assert.Equal(1, after.GetProperty("cache").GetProperty("cached_responses").GetInt32());
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt64(), after.GetProperty("cache").GetProperty("cached_response_tokens").GetInt64());

        JsonElement check = await CheckAsync(server, Key);
        Assert.True(check.GetProperty("ok").GetBoolean());
        Assert.Equal(JsonValueKind.Null, check.GetProperty("error").ValueKind);
    }

    [Fact]
    public async Task A_server_without_a_suffix_cache_answers_404_on_the_admin_routes()
    {
        Uri server = await StartAsync(new ServerSettings { MaxContext = 256, MaxBatch = 1, Draft = "prompt-lookup", Adaptive = false });
        using HttpResponseMessage response = await _http.GetAsync(new Uri(server, "admin/cache"));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("without a suffix cache", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Two_servers_share_answers_and_the_second_drafts_the_firsts()
    {
        using NatsServer nats = NatsServer.StartNew();
        ServerSettings Replica(string id) => new()
        {
            MaxContext = 1024, MaxBatch = 2, Draft = "suffix", Adaptive = false, MaxCachedTokens = 20_000, FleetNats = nats.Url, ReplicaId = id,
        };
        Uri a = await StartAsync(Replica("a"));
        Uri b = await StartAsync(Replica("b"));
        JsonElement fleet = (await ReportAsync(b)).GetProperty("fleet");
        Assert.Equal(CheckpointIdentity.Of(Hosting.DefaultModel.Resolve(null)).Model, fleet.GetProperty("model").GetString());
        Assert.Equal(nats.Url, fleet.GetProperty("broker").GetString());

        JsonElement first = await ChatAsync(a, "conversation-on-a");
        long tokens = first.GetProperty("usage").GetProperty("completion_tokens").GetInt64();
        JsonElement reportB = await UntilAsync(b, r => r.GetProperty("sharing").GetProperty("ingested").GetInt64() == 1, "B to ingest A's answer");
        Assert.Equal(1, reportB.GetProperty("cache").GetProperty("cached_responses").GetInt32());
        Assert.Equal(tokens, reportB.GetProperty("cache").GetProperty("cached_response_tokens").GetInt64());

        // B answers the same messages in another conversation: greedy, so the same text, and A's answer in B's global
        // tree drafts it, so B needs fewer verification steps than A did with only the prompt to draft from.
        JsonElement second = await ChatAsync(b, "conversation-on-b");
        Assert.Equal(Text(first), Text(second));
        long stepsA = Steps(first), stepsB = Steps(second);
        Assert.True(stepsB < stepsA, $"B took {stepsB} steps with A's answer in its cache, A {stepsA} without");

        // A gets B's answer too, and its own back from the stream as a duplicate, never ingested twice
        JsonElement reportA = await UntilAsync(a, r => r.GetProperty("sharing").GetProperty("ingested").GetInt64() == 1
            && r.GetProperty("sharing").GetProperty("duplicates").GetInt64() == 1, "A to ingest B's answer and skip its own");
        Assert.Equal(2, reportA.GetProperty("cache").GetProperty("cached_responses").GetInt32());
        Assert.Equal(1, reportA.GetProperty("sharing").GetProperty("published").GetInt64());
        Assert.True((await CheckAsync(a)).GetProperty("ok").GetBoolean());
        Assert.True((await CheckAsync(b)).GetProperty("ok").GetBoolean());
    }

    [Fact]
    public async Task With_the_broker_down_a_server_serves_and_publishes_when_it_returns()
    {
        using NatsServer nats = NatsServer.StartNew();
        nats.Kill();
        Uri server = await StartAsync(new ServerSettings
        {
            MaxContext = 1024, MaxBatch = 1, Draft = "suffix", Adaptive = false, FleetNats = nats.Url, ReplicaId = "alone",
        });

        JsonElement answer = await ChatAsync(server, "while-the-broker-is-down");
        Assert.True(answer.GetProperty("usage").GetProperty("completion_tokens").GetInt64() > 0);
        JsonElement down = await ReportAsync(server);
        Assert.False(down.GetProperty("sharing").GetProperty("connected").GetBoolean());
        Assert.Equal(0, down.GetProperty("sharing").GetProperty("published").GetInt64());
        Assert.Equal(1, down.GetProperty("cache").GetProperty("cached_responses").GetInt32());

        nats.Start();
        JsonElement up = await UntilAsync(server, r => r.GetProperty("sharing").GetProperty("published").GetInt64() == 1, "the queued answer to be published");
        Assert.Equal(0, up.GetProperty("sharing").GetProperty("publish_dropped").GetInt64());
        Assert.Equal(1, up.GetProperty("cache").GetProperty("cached_responses").GetInt32());   // its own answer, not again from the stream
    }

    private async Task<Uri> StartAsync(ServerSettings settings)
    {
        ModelHost host = ModelHost.Load(settings);
        _hosts.Add(host);
        WebApplication app = ServerApp.Build(settings with { Urls = ["http://127.0.0.1:0"] }, host);
        await app.StartAsync();
        _apps.Add(app);
        return new Uri(app.BoundAddress().TrimEnd('/') + "/");
    }

    private async Task<JsonElement> ChatAsync(Uri server, string conversation, string? key = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server, "v1/chat/completions"))
        {
            Content = JsonContent.Create(new { model = ServerFixture.Model, messages = Messages, temperature = 0, max_tokens = 48 }),
        };
        request.Headers.Add(OpenAiRequest.ConversationHeader, conversation);
        return await SendAsync(request, key);
    }

    private async Task<JsonElement> ReportAsync(Uri server, string? key = null) =>
        await SendAsync(new HttpRequestMessage(HttpMethod.Get, new Uri(server, "admin/cache")), key);

    private async Task<JsonElement> CheckAsync(Uri server, string? key = null) =>
        await SendAsync(new HttpRequestMessage(HttpMethod.Post, new Uri(server, "admin/cache/check")), key);

    private async Task<JsonElement> UntilAsync(Uri server, Func<JsonElement, bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            JsonElement report = await ReportAsync(server);
            if (condition(report))
            {
                return report;
            }
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}: {report}");
            await Task.Delay(50);
        }
    }

    private async Task<JsonElement> SendAsync(HttpRequestMessage request, string? key)
    {
        using (request)
        {
            if (key is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
            }
            using HttpResponseMessage response = await _http.SendAsync(request);
            string text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode} from {request.RequestUri}: {text}");
            return JsonDocument.Parse(text).RootElement.Clone();
        }
    }

    private static string Text(JsonElement completion) =>
        completion.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;

    private static long Steps(JsonElement completion) =>
        completion.GetProperty("usage").GetProperty("speculative").GetProperty("steps").GetInt64();

    private static string Copy(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from))
        {
            File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        }
        return to;
    }
}

/// <summary>The fleet tests load servers of their own and start brokers: they run apart from the shared server fixture.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FleetSharingCollection
{
    public const string Name = "fleet sharing servers";
}
