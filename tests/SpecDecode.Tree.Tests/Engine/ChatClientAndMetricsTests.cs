using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using SpecDecode.Extensions.AI;
using SpecDecode.Tokenization;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The Microsoft.Extensions.AI chat client gives what the engine gives (whole and streamed), maps its options and refuses
/// what it cannot honour; the engine's metrics add up to its statistics; the engine logs start, requests, failures and
/// stop.
/// </summary>
public sealed class ChatClientAndMetricsTests
{
    private const string ChatMl = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    private static readonly ChatMessage[] Chat =
    [
        new(ChatRole.System, "be brief"),
        new(ChatRole.User, "hello hello hello, say hello hello"),
    ];

    private static readonly PromptMessage[] Prompt = [PromptMessage.System("be brief"), PromptMessage.User("hello hello hello, say hello hello")];

    private static SpeculativeEngine ChatEngine(TargetModel model, IDrafter? drafter, ILogger? logger = null) =>
        SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { ChatTemplate = ChatTemplate.Parse(ChatMl), EndOfSequenceTokenIds = [], CostModel = EngineFixture.FlatCost(model.MaxBatch), Logger = logger });

    [Fact]
    public async Task Response_AndStreamedUpdates_EqualTheEngine()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        using SpeculativeEngine engine = ChatEngine(model, drafter);
        GenerationResult expected = await engine.GenerateAsync(new GenerationRequest { Messages = Prompt, MaxNewTokens = 24 });
        List<GenerationChunk> expectedChunks = await ToList(engine.StreamAsync(new GenerationRequest { Messages = Prompt, MaxNewTokens = 24 }));
        using IChatClient client = engine.AsChatClient("tiny-llama");
        var options = new ChatOptions { MaxOutputTokens = 24, ConversationId = "c-1" };

        ChatResponse response = await client.GetResponseAsync(Chat, options);
        List<ChatResponseUpdate> updates = await ToList(client.GetStreamingResponseAsync(Chat, options));

        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(expected.TokenIds, ((GenerationResult)response.RawRepresentation!).TokenIds);
        Assert.Equal(FinishReason.Length, expected.FinishReason);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(ChatRole.Assistant, Assert.Single(response.Messages).Role);
        Assert.Equal(expected.Statistics.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(expected.Statistics.GeneratedTokens, response.Usage.OutputTokenCount);
        Assert.Equal("tiny-llama", response.ModelId);
        Assert.Null(response.ConversationId); // stateless: a returned id would tell callers the service keeps the history

        Assert.Equal(expectedChunks.Count, updates.Count);
        Assert.Equal(expected.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(expectedChunks.Select(c => c.Text), updates.Select(u => u.Text));
        Assert.All(updates, u => Assert.Null(u.ConversationId));
        Assert.All(updates[..^1], u => Assert.Null(u.FinishReason));
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        UsageContent usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>());
        Assert.Equal(expected.Statistics.GeneratedTokens, usage.Details.OutputTokenCount);
        ChatResponse combined = updates.ToChatResponse();
        Assert.Equal(expected.Text, combined.Text);
        Assert.Equal(ChatFinishReason.Length, combined.FinishReason);
    }

    [Fact]
    public async Task Options_Map_StopSequences_AndGreedyAndSeededSampling()
    {
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        // Prompt lookup drafts from the request alone, so a seed repeats its tokens (the suffix drafter's cache would
        // give later calls other drafts, hence other random draws).
        using IDrafter drafter = EngineFixture.Drafter("prompt-lookup");
        using SpeculativeEngine engine = ChatEngine(model, drafter);
        using IChatClient client = engine.AsChatClient();
        GenerationResult greedy = await engine.GenerateAsync(new GenerationRequest { Messages = Prompt, MaxNewTokens = 24 });
        Assert.True(greedy.Text.Length >= 8, $"the tiny model's reply is too short for the test: '{greedy.Text}'");

        // Temperature 0 is greedy decoding.
        ChatResponse zero = await client.GetResponseAsync(Chat, new ChatOptions { MaxOutputTokens = 24, Temperature = 0 });
        Assert.Equal(greedy.Text, zero.Text);

        // MaxOutputTokens caps the reply.
        ChatResponse shortReply = await client.GetResponseAsync(Chat, new ChatOptions { MaxOutputTokens = 5 });
        Assert.Equal(greedy.TokenIds.Take(5), ((GenerationResult)shortReply.RawRepresentation!).TokenIds);
        Assert.Equal(ChatFinishReason.Length, shortReply.FinishReason);

        // A stop sequence ends the reply just before it.
        string stop = greedy.Text.Substring(4, 3);
        ChatResponse stopped = await client.GetResponseAsync(Chat, new ChatOptions { MaxOutputTokens = 24, StopSequences = [stop] });
        Assert.Equal(greedy.Text[..greedy.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);

        // A seed gives the engine's seeded tokens, call after call.
        var seeded = new ChatOptions { MaxOutputTokens = 24, Temperature = 1.5f, TopK = 50, Seed = 7 };
        GenerationResult engineSeeded = await engine.GenerateAsync(new GenerationRequest
        {
            Messages = Prompt, MaxNewTokens = 24, Sampling = new SamplingOptions { Temperature = 1.5f, TopK = 50, Seed = 7 },
        });
        ChatResponse first = await client.GetResponseAsync(Chat, seeded);
        ChatResponse second = await client.GetResponseAsync(Chat, seeded);
        Assert.Equal(engineSeeded.TokenIds, ((GenerationResult)first.RawRepresentation!).TokenIds);
        Assert.Equal(first.Text, second.Text);
    }

    [Fact]
    public void ToRequest_MapsEveryOption()
    {
        var client = new SpeculativeChatClient(new UnusedGenerator(), "m");
        GenerationRequest plain = client.ToRequest(Chat, null);
        Assert.Equal(Prompt, plain.Messages);
        Assert.Null(plain.Sampling);
        Assert.Equal(256, plain.MaxNewTokens);
        Assert.Null(plain.ConversationId);

        GenerationRequest mapped = client.ToRequest(Chat, new ChatOptions
        {
            MaxOutputTokens = 9, StopSequences = ["\n\n", "END"], Temperature = 0.7f, TopK = 40, TopP = 0.9f, Seed = 11,
            ConversationId = "conv", ModelId = "m",
        });
        Assert.Equal(9, mapped.MaxNewTokens);
        Assert.Equal(["\n\n", "END"], mapped.StopStrings);
        Assert.Equal(0.7f, mapped.Sampling!.Temperature);
        Assert.Equal(40, mapped.Sampling.TopK);
        Assert.Equal(0.9f, mapped.Sampling.TopP);
        Assert.Equal(11, mapped.Sampling.Seed);
        Assert.Equal("conv", mapped.ConversationId);

        Assert.True(client.ToRequest(Chat, new ChatOptions { Temperature = 0 }).Sampling!.IsGreedy);
        Assert.Equal(1f, client.ToRequest(Chat, new ChatOptions { Seed = 3 }).Sampling!.Temperature);
        Assert.Equal("tool", client.ToRequest([new ChatMessage(ChatRole.Tool, "42")], null).Messages![0].Role);
        Assert.Equal("ab", client.ToRequest([new ChatMessage(ChatRole.User, [new TextContent("a"), new TextContent("b")])], null).Messages![0].Content);
    }

    [Fact]
    public async Task UnsupportedContentAndOptions_AreRefused_SayingWhatIsSupported()
    {
        IChatClient client = new SpeculativeChatClient(new UnusedGenerator(), "m");
        ChatMessage image = new(ChatRole.User, [new TextContent("what is this?"), new DataContent(new byte[] { 1, 2, 3 }, "image/png")]);
        ChatMessage call = new(ChatRole.Assistant, [new FunctionCallContent("c1", "f")]);

        var e = await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([image]));
        Assert.Contains("DataContent", e.Message);
        Assert.Contains("text only", e.Message);
        Assert.Contains("text only", Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync([call])).Message);
        Assert.Contains("tools", Assert.Throws<NotSupportedException>(() =>
            client.GetStreamingResponseAsync(Chat, new ChatOptions { Tools = [new HostedCodeInterpreterTool()] })).Message);
        Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(Chat, new ChatOptions { ResponseFormat = ChatResponseFormat.Json }));
        Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(Chat, new ChatOptions { PresencePenalty = 0.5f }));
        Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(Chat, new ChatOptions { ModelId = "other" }));
        Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => client.GetStreamingResponseAsync(Chat, new ChatOptions { MaxOutputTokens = 0 }));
    }

    [Fact]
    public void GetService_ReturnsMetadata_TheClient_AndTheGenerator()
    {
        var generator = new UnusedGenerator();
        IChatClient client = generator.AsChatClient("m");
        ChatClientMetadata metadata = client.GetService<ChatClientMetadata>()!;
        Assert.Equal("SpecDecode", metadata.ProviderName);
        Assert.Equal("m", metadata.DefaultModelId);
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Same(client, client.GetService<SpeculativeChatClient>());
        Assert.Same(generator, client.GetService<ISpeculativeGenerator>());
        Assert.Null(client.GetService<ChatClientMetadata>("key"));
        Assert.Null(client.GetService<string>());
    }

    [Fact]
    public async Task Metrics_AddUpToTheEngineStatistics()
    {
        SpeculativeEngine? engine = null;
        var sums = new Dictionary<string, long>();
        var perPosition = new Dictionary<int, long>();
        var reasons = new Dictionary<string, long>();
        var histograms = new Dictionary<string, int>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "SpecDecode")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        void Add(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (engine is null || !ReferenceEquals(instrument.Meter.Scope, engine))
            {
                return; // another test's engine
            }
            lock (sums)
            {
                string key = instrument.Name;
                if (instrument.Name.StartsWith("specdecode.step.", StringComparison.Ordinal))
                {
                    string phase = tags.Length > 0 ? $"/{tags[0].Value}" : "";
                    histograms[key + phase] = histograms.GetValueOrDefault(key + phase) + 1;
                    return;
                }
                sums[key] = sums.GetValueOrDefault(key) + value;
                foreach (KeyValuePair<string, object?> tag in tags)
                {
                    if (tag.Key == "position")
                    {
                        perPosition[(int)tag.Value!] = perPosition.GetValueOrDefault((int)tag.Value!) + value;
                    }
                    else if (tag.Key == "finish_reason")
                    {
                        reasons[(string)tag.Value!] = reasons.GetValueOrDefault((string)tag.Value!) + value;
                    }
                }
            }
        }
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
        listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i, v, tags));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, 0, tags));
        listener.Start();

        using TargetModel model = EngineFixture.LoadModel(maxBatch: 2);
        using IDrafter drafter = EngineFixture.Drafter("suffix");
        engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter,
            new SpeculativeEngineOptions { CostModel = EngineFixture.FlatCost(2), EndOfSequenceTokenIds = [] });
        Assert.Equal("SpecDecode", engine.Meter.Name);
        Assert.False(string.IsNullOrEmpty(engine.Meter.Version));
        GenerationResult[] results = await Task.WhenAll(Enumerable.Range(0, 3).Select(seed =>
            engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(seed, 48), MaxNewTokens = 40 + seed })));
        engine.Dispose(); // joins the engine thread: every step is recorded
        EngineStatistics stats = engine.Statistics;
        GenerationStatistics totals = stats.Totals;

        Assert.True(totals.Drafts > 0 && totals.AcceptedTokens > 0, "the suffix drafter should have drafted and been accepted");
        Assert.Equal(totals.Drafts, sums["specdecode.spec_decode.num_drafts"]);
        Assert.Equal(totals.DraftTokens, sums["specdecode.spec_decode.num_draft_tokens"]);
        Assert.Equal(totals.AcceptedTokens, sums["specdecode.spec_decode.num_accepted_tokens"]);
        Assert.Equal(totals.AcceptedTokens, sums["specdecode.spec_decode.num_accepted_tokens_per_pos"]);
        Assert.Equal(totals.AcceptedPerPosition, Enumerable.Range(0, perPosition.Count).Select(p => perPosition[p]));
        Assert.Equal(totals.GeneratedTokens, sums["specdecode.generation_tokens"]);
        Assert.Equal(results.Sum(r => r.Statistics.GeneratedTokens), sums["specdecode.generation_tokens"]);
        Assert.Equal(stats.Completed, sums["specdecode.requests"]);
        Assert.Equal(3, reasons["length"]);
        Assert.Equal((int)stats.Batches, histograms["specdecode.step.batch_size"]);
        Assert.Equal((int)stats.Batches, histograms["specdecode.step.duration/draft"]);
        Assert.Equal((int)stats.Batches, histograms["specdecode.step.duration/verify"]);
        Assert.Equal((int)stats.Batches, histograms["specdecode.step.duration/host"]);
        Assert.True(histograms["specdecode.step.duration/prefill"] >= 1);
    }

    [Fact]
    public async Task InjectedMeterFactory_CreatesTheMeter()
    {
        using var factory = new TestMeterFactory();
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1);
        long generated = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (factory.Meters.Contains(instrument.Meter) && instrument.Name == "specdecode.generation_tokens")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, v, _, _) => Interlocked.Add(ref generated, v));
        listener.Start();
        GenerationResult result;
        using (SpeculativeEngine engine = SpeculativeEngine.Create(model, ByteTokenizer.Instance, drafter: null,
            new SpeculativeEngineOptions { MeterFactory = factory, EndOfSequenceTokenIds = [] }))
        {
            Assert.Same(factory.Meters.Single(), engine.Meter);
            result = await engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(1, 20), MaxNewTokens = 6 });
        }
        Assert.Equal(6, result.Statistics.GeneratedTokens);
        Assert.Equal(6, Interlocked.Read(ref generated));
    }

    [Fact]
    public async Task Logger_GetsStart_Requests_Failures_AndStop()
    {
        var logger = new CapturingLogger();
        using TargetModel model = EngineFixture.LoadModel(maxBatch: 1, maxContext: 96);
        using var drafter = new FailingDrafter();
        using (SpeculativeEngine engine = ChatEngine(model, drafter, logger))
        {
            await engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(1, 20), MaxNewTokens = 4 });
            Assert.Throws<RequestRejectedException>(() =>
            {
                _ = engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(2, 200), MaxNewTokens = 4 });
            });
            drafter.Fail = true;
            await Assert.ThrowsAsync<PluginFailedException>(() =>
                engine.GenerateAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(3, 20), MaxNewTokens = 4 }));
            drafter.Fail = false;
            using var cts = new CancellationTokenSource();
            // The engine waits in the stream's second step (its first chunk written) until the reader has stopped, so the
            // request is certain to be cancelled mid-way, however slowly this thread runs.
            drafter.HoldAt = drafter.Observed + 2;
            await foreach (GenerationChunk _ in engine.StreamAsync(new GenerationRequest { PromptTokens = EngineFixture.Prompt(4, 20), MaxNewTokens = 80 }, cts.Token))
            {
                break; // stops reading: the engine cancels the request
            }
            drafter.Release.Set();
            // Disposing now would fail the request before the engine thread saw the cancellation. Up to 30 s: on a loaded
            // 2-core machine (the whole suite at once) 5 s was once not enough.
            for (int i = 0; i < 3000 && engine.Statistics.Completed < 3; i++)
            {
                await Task.Delay(10);
            }
        }

        (LogLevel Level, string Event, string Message, Exception? Error)[] entries = logger.Entries.ToArray();
        var started = Assert.Single(entries, e => e.Event == "EngineStarted");
        Assert.Equal(LogLevel.Information, started.Level);
        Assert.Contains("batch 1", started.Message);
        Assert.Contains("FailingDrafter", started.Message);
        Assert.Contains("cost model given", started.Message);
        Assert.Contains(entries, e => e.Event == "RequestCompleted" && e.Level == LogLevel.Debug && e.Message.Contains("(Length)"));
        Assert.Contains(entries, e => e.Event == "RequestRefused" && e.Level == LogLevel.Debug && e.Message.Contains("200 tokens"));
        // A drafter that throws fails its request only (issue 16): no step failed.
        Assert.DoesNotContain(entries, e => e.Event == "StepFailed");
        Assert.Contains(entries, e => e.Event == "RequestFailed" && e.Level == LogLevel.Warning
            && e.Message.Contains("drafter 'failing' failed in Propose") && e.Message.Contains("draft failed"));
        Assert.Contains(entries, e => e.Event == "RequestCancelled" && e.Level == LogLevel.Debug);
        Assert.Equal("EngineStopped", entries[^1].Event);
    }

    private static async Task<List<T>> ToList<T>(IAsyncEnumerable<T> items)
    {
        var list = new List<T>();
        await foreach (T item in items)
        {
            list.Add(item);
        }
        return list;
    }

    /// <summary>A generator that must not be called (the tests that use it check mapping and refusals only).</summary>
    private sealed class UnusedGenerator : ISpeculativeGenerator
    {
        public EngineStatistics Statistics => throw new InvalidOperationException("not called");

        public Task<GenerationResult> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
            throw new InvalidOperationException("not called");

        public IAsyncEnumerable<GenerationChunk> StreamAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
            throw new InvalidOperationException("not called");
    }

    /// <summary>Drafts nothing, or throws when <see cref="Fail"/> is set (a failed step).</summary>
    private sealed class FailingDrafter : IDrafter
    {
        public volatile bool Fail;
        private int _observed;

        /// <summary>The count of <see cref="Observe"/> calls at which the engine thread waits for <see cref="Release"/>.</summary>
        public int HoldAt { get; set; } = -1;

        public int Observed => Volatile.Read(ref _observed);

        public ManualResetEventSlim Release { get; } = new();

        public string Name => "failing";

        public int MaxBudget => 4;

        public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options) { }

        public DraftTree Propose(RequestId request, int maxTokens) =>
            Fail ? throw new InvalidOperationException("draft failed") : DraftTree.Empty;

        public void Observe(RequestId request, ReadOnlySpan<int> emitted)
        {
            if (Interlocked.Increment(ref _observed) == HoldAt)
            {
                Release.Wait(TimeSpan.FromMinutes(2));
            }
        }

        public void EndRequest(RequestId request) { }

        public void Dispose() => Release.Dispose();
    }

    private sealed class CapturingLogger : ILogger
    {
        public readonly List<(LogLevel Level, string Event, string Message, Exception? Error)> Entries = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries)
            {
                Entries.Add((logLevel, eventId.Name ?? "", formatter(state, exception), exception));
            }
        }
    }

    private sealed class TestMeterFactory : IMeterFactory
    {
        public readonly List<Meter> Meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options.Name, options.Version, options.Tags, this);
            Meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (Meter meter in Meters)
            {
                meter.Dispose();
            }
        }
    }
}
