using System.Net.Http.Json;
using SpecDecode.LocalServers;

namespace SpecDecode.Router.Tests;

/// <summary>The router as its own process in front of stand-in replicas on loopback.</summary>
public sealed class RouterProcessTests : IAsyncLifetime
{
    private readonly List<StandInBackend> _backends = [];
    private DotnetApp? _router;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };

    public async Task InitializeAsync()
    {
        for (int i = 0; i < 3; i++)
        {
            _backends.Add(await StandInBackend.StartAsync("replica-" + i));
        }
        var args = new List<string>();
        for (int i = 0; i < _backends.Count; i++)
        {
            args.AddRange(["--replica", _backends[i].Url]);
        }
        // probes may take 2 s: with 0.5 s this test failed once on a loaded 2-core machine (a live replica lost its conversations)
        args.AddRange(["--health-interval", "0.3", "--health-timeout", "2", "--reactivation", "1"]);
        _router = DotnetApp.StartNew("samples/SpecDecode.Router", [.. args]);
    }

    public async Task DisposeAsync()
    {
        _router?.Dispose();
        foreach (StandInBackend b in _backends)
        {
            await b.DisposeAsync();
        }
        _http.Dispose();
    }

    private async Task<string> Call(string? conversation, object? body = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _router!.Url + "/v1/chat/completions")
        {
            Content = JsonContent.Create(body ?? new { model = "m", messages = new[] { new { role = "user", content = "hi" } } }),
        };
        if (conversation is not null)
        {
            request.Headers.Add("X-SpecDecode-Conversation", conversation);
        }
        using HttpResponseMessage response = await _http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {text} {_router.Log}");
        string replica = text.Split(':')[0];
        Assert.Equal(replica, response.Headers.GetValues("X-SpecDecode-Replica").Single());
        return replica;
    }

    [Fact]
    public async Task A_conversation_stays_on_one_replica_and_conversations_spread()
    {
        var homes = new Dictionary<string, string>();
        for (int c = 0; c < 30; c++)
        {
            homes["task-" + c] = await Call("task-" + c);
        }
        for (int round = 0; round < 3; round++)
        {
            foreach ((string conversation, string home) in homes)
            {
                Assert.Equal(home, await Call(conversation));
            }
        }
        Assert.Equal(3, homes.Values.Distinct().Count());

        // Without the header, the first messages name the conversation: a later call with more messages goes home too.
        var first = new { model = "m", messages = new[] { new { role = "system", content = "agent" }, new { role = "user", content = "task 7" } } };
        var later = new { model = "m", messages = new[] { new { role = "system", content = "agent" }, new { role = "user", content = "task 7" }, new { role = "assistant", content = "ls" } } };
        string home7 = await Call(null, first);
        Assert.Equal(home7, await Call(null, later));
        Assert.Equal(home7, await Call(null, later));
    }

    [Fact]
    public async Task A_dead_replicas_conversations_go_elsewhere_at_once_and_come_back_when_it_returns()
    {
        var homes = new Dictionary<string, string>();
        for (int c = 0; c < 30; c++)
        {
            homes["conv-" + c] = await Call("conv-" + c);
        }
        StandInBackend victim = _backends[1];
        await victim.StopAsync();

        // Every request still succeeds; only the dead replica's conversations move.
        foreach ((string conversation, string home) in homes)
        {
            string now = await Call(conversation);
            if (home == victim.Name)
            {
                Assert.NotEqual(victim.Name, now);
            }
            else
            {
                Assert.Equal(home, now);
            }
        }

        await victim.StartAsync();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        string back = homes.First(h => h.Value == victim.Name).Key;
        while (await Call(back) != victim.Name)
        {
            Assert.True(DateTime.UtcNow < deadline, "the replica's conversations did not come back after it returned: " + _router!.Log);
            await Task.Delay(100);
        }
        foreach ((string conversation, string home) in homes)
        {
            Assert.Equal(home, await Call(conversation));
        }
    }

    [Fact]
    public async Task With_every_replica_gone_the_client_gets_an_error_not_a_hang()
    {
        foreach (StandInBackend b in _backends)
        {
            await b.StopAsync();
        }
        using var request = new HttpRequestMessage(HttpMethod.Post, _router!.Url + "/v1/chat/completions") { Content = JsonContent.Create(new { x = 1 }) };
        request.Headers.Add("X-SpecDecode-Conversation", "c");
        using HttpResponseMessage response = await _http.SendAsync(request);
        Assert.True((int)response.StatusCode is 502 or 503, $"status {(int)response.StatusCode}");
    }
}
