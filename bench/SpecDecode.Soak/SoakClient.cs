namespace SpecDecode.Soak;

/// <summary>What a client does with one request.</summary>
internal enum RequestKind
{
    /// <summary>GenerateAsync, greedy, awaited: compared with the reference.</summary>
    Greedy,

    /// <summary>StreamAsync read to the end: chunks concatenate to the result, which equals the reference.</summary>
    StreamRead,

    /// <summary>StreamAsync read for 1-3 chunks, then disposed (the engine cancels it): the chunks are a prefix of the reference.</summary>
    StreamAbandoned,

    /// <summary>StreamAsync read for one chunk and dropped without disposing: the engine finishes it unobserved.</summary>
    StreamDropped,

    /// <summary>GenerateAsync cancelled after 0-40 ms: cancelled, or served and equal to the reference.</summary>
    Cancelled,

    /// <summary>GenerateAsync with a token cancelled beforehand: a cancelled task.</summary>
    PreCancelled,

    /// <summary>Sampled at temperature 0.3-1.5 with random top-k and top-p, sometimes seeded: at most MaxNewTokens tokens.</summary>
    Sampled,

    /// <summary>Temperature 1e-30 (decodes greedily): compared with the reference.</summary>
    TinyTemperature,
}

/// <summary>One simulated client: sends its requests one after the other to whatever engine is current, in a random mix of
/// <see cref="RequestKind"/>s, and records each outcome in the tally.</summary>
internal sealed class SoakClient(int id, IReadOnlyList<SoakPrompt> prompts, Func<EngineLife> currentEngine, SoakTally tally,
    TimeSpan timeout, int seed)
{
    private static readonly (RequestKind Kind, int Weight)[] Mix =
    [
        (RequestKind.Greedy, 30), (RequestKind.StreamRead, 15), (RequestKind.StreamAbandoned, 10), (RequestKind.StreamDropped, 5),
        (RequestKind.Cancelled, 12), (RequestKind.PreCancelled, 3), (RequestKind.Sampled, 20), (RequestKind.TinyTemperature, 5),
    ];

    private readonly Random _random = new(seed);

    public int Id { get; } = id;

    /// <summary>Sends <paramref name="count"/> requests, one after the other.</summary>
    public async Task RunAsync(int count)
    {
        for (int i = 0; i < count; i++)
        {
            SoakPrompt prompt = prompts[_random.Next(prompts.Count)];
            RequestKind kind = Pick();
            EngineLife life = await CurrentEngineAsync();
            try
            {
                await (kind switch
                {
                    RequestKind.StreamRead or RequestKind.StreamAbandoned or RequestKind.StreamDropped => StreamAsync(life, prompt, kind),
                    _ => GenerateAsync(life, prompt, kind),
                });
            }
            catch (Exception e)
            {
                // The client code itself must not throw; if it does, that is a finding too.
                tally.Add(SoakOutcome.Unexpected, $"client {Id} ({kind}): {e}");
            }
        }
    }

    /// <summary>The current engine; while it is being disposed (a race the runner starts), the one that replaces it, as
    /// a client of a restarted service would retry. After a refusal the client thus waits instead of spinning.</summary>
    private async Task<EngineLife> CurrentEngineAsync()
    {
        EngineLife life = currentEngine();
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); life.Disposing && waited.Elapsed < timeout; life = currentEngine())
        {
            await Task.Delay(5);
        }
        return life;
    }

    private RequestKind Pick()
    {
        int roll = _random.Next(Mix.Sum(m => m.Weight));
        foreach ((RequestKind kind, int weight) in Mix)
        {
            if ((roll -= weight) < 0)
            {
                return kind;
            }
        }
        return RequestKind.Greedy;
    }

    private GenerationRequest Shape(SoakPrompt prompt, RequestKind kind) => kind switch
    {
        RequestKind.Sampled => prompt.Request with
        {
            Sampling = new SamplingOptions
            {
                Temperature = 0.3f + 1.2f * (float)_random.NextDouble(),
                TopK = _random.Next(3) == 0 ? _random.Next(1, 50) : 0,
                TopP = _random.Next(3) == 0 ? 0.5f + 0.5f * (float)_random.NextDouble() : 1f,
                Seed = _random.Next(2) == 0 ? _random.Next() : null,
            },
        },
        RequestKind.TinyTemperature => prompt.Request with { Sampling = new SamplingOptions { Temperature = 1e-30f } },
        _ => prompt.Request,
    };

    private async Task GenerateAsync(EngineLife life, SoakPrompt prompt, RequestKind kind)
    {
        using var cancel = new CancellationTokenSource();
        if (kind == RequestKind.PreCancelled)
        {
            cancel.Cancel();
        }
        Task<GenerationResult> task;
        try
        {
            task = life.Engine.GenerateAsync(Shape(prompt, kind), cancel.Token);
        }
        catch (ObjectDisposedException) when (life.Disposing)
        {
            tally.Add(SoakOutcome.Refused);
            return;
        }
        if (kind == RequestKind.PreCancelled)
        {
            tally.Add(task.IsCanceled ? SoakOutcome.Refused : SoakOutcome.Unexpected, $"a pre-cancelled request gave a {task.Status} task");
            return;
        }
        life.Accept();
        if (kind == RequestKind.Cancelled)
        {
            cancel.CancelAfter(_random.Next(0, 40));
        }
        GenerationResult result;
        try
        {
            result = await task.WaitAsync(timeout);
        }
        catch (Exception e)
        {
            tally.Add(Classify(e, life, cancel.IsCancellationRequested), $"{kind} on engine {life.Number}: {e.GetType().Name}: {e.Message}");
            return;
        }
        tally.Add(SoakOutcome.Served);
        Check(prompt, kind, result);
    }

    private async Task StreamAsync(EngineLife life, SoakPrompt prompt, RequestKind kind)
    {
        int stopAfter = kind switch
        {
            RequestKind.StreamAbandoned => _random.Next(1, 4),
            RequestKind.StreamDropped => 1,
            _ => int.MaxValue,
        };
        IAsyncEnumerator<GenerationChunk> chunks = life.Engine.StreamAsync(Shape(prompt, kind)).GetAsyncEnumerator();
        var tokens = new List<int>();
        var text = new System.Text.StringBuilder();
        GenerationResult? final = null;
        int read = 0;
        bool dispose = true;
        try
        {
            while (read < stopAfter)
            {
                bool more;
                try
                {
                    more = await chunks.MoveNextAsync().AsTask().WaitAsync(timeout);
                }
                catch (ObjectDisposedException e) when (read == 0 && life.Disposing && EngineLife.IsRefusal(e))
                {
                    tally.Add(SoakOutcome.Refused);
                    return;
                }
                catch (TimeoutException)
                {
                    dispose = false;   // a read is pending: the enumerator cannot be disposed
                    if (read == 0)
                    {
                        life.Accept();
                    }
                    tally.Add(SoakOutcome.Stranded, $"{kind} on engine {life.Number}: no chunk within {timeout}");
                    return;
                }
                catch (Exception e)
                {
                    if (read == 0)
                    {
                        life.Accept();
                    }
                    tally.Add(Classify(e, life, cancelled: false), $"{kind} on engine {life.Number}: {e.GetType().Name}: {e.Message}");
                    return;
                }
                if (read == 0)
                {
                    life.Accept();
                }
                if (!more)
                {
                    tally.Add(SoakOutcome.Unexpected, $"{kind} on engine {life.Number}: the stream ended without a final chunk");
                    return;
                }
                read++;
                tokens.AddRange(chunks.Current.TokenIds);
                text.Append(chunks.Current.Text);
                if (chunks.Current.Final is { } result)
                {
                    final = result;
                    break;
                }
            }
            if (final is null)
            {
                // Stopped reading early: what arrived must be the reference's beginning.
                if (!tokens.SequenceEqual(prompt.Reference.Take(tokens.Count)))
                {
                    tally.Mismatch($"prompt {prompt.Index} ({kind}): streamed tokens [{string.Join(",", tokens)}] are not a prefix of the reference");
                }
                tally.Checked();
                tally.Add(kind == RequestKind.StreamDropped ? SoakOutcome.Dropped : SoakOutcome.Cancelled);
                dispose = kind != RequestKind.StreamDropped;
                return;
            }
            tally.Add(SoakOutcome.Served);
            if (!tokens.SequenceEqual(final.TokenIds) || text.ToString() != final.Text)
            {
                tally.Mismatch($"prompt {prompt.Index} ({kind}): the chunks do not concatenate to the final result");
            }
            Check(prompt, kind, final);
        }
        finally
        {
            if (dispose)
            {
                await chunks.DisposeAsync();
            }
        }
    }

    /// <summary>Greedy results equal the reference token for token (and in text); sampled ones keep to the budget.</summary>
    private void Check(SoakPrompt prompt, RequestKind kind, GenerationResult result)
    {
        tally.AddTokens(result.TokenIds.Count);
        tally.Checked();
        if (kind == RequestKind.Sampled)
        {
            if (result.TokenIds.Count > prompt.Request.MaxNewTokens)
            {
                tally.Mismatch($"prompt {prompt.Index} (sampled): {result.TokenIds.Count} tokens for a budget of {prompt.Request.MaxNewTokens}");
            }
            return;
        }
        if (!result.TokenIds.SequenceEqual(prompt.Reference) || result.Text != prompt.ReferenceText)
        {
            tally.Mismatch($"prompt {prompt.Index} ({kind}): [{string.Join(",", result.TokenIds)}] against the solo greedy [{string.Join(",", prompt.Reference)}]");
        }
    }

    private static SoakOutcome Classify(Exception e, EngineLife life, bool cancelled) => e switch
    {
        TimeoutException => SoakOutcome.Stranded,
        OperationCanceledException when cancelled => SoakOutcome.Cancelled,
        PluginFailedException p when IsInjected(p) => SoakOutcome.FailedByInjectedFault,
        ObjectDisposedException when life.Disposing => SoakOutcome.EndedByDisposal,
        _ => SoakOutcome.Unexpected,
    };

    /// <summary>A plug-in failure the soak caused: an injected exception, or the out-of-vocabulary draft it injects.</summary>
    private static bool IsInjected(PluginFailedException e) =>
        e.InnerException is InjectedFaultException || e.Message.Contains("outside the target's vocabulary", StringComparison.Ordinal);
}
