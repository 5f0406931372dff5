using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tree;

/// <summary>
/// Speculative generation for many concurrent requests on one <see cref="TargetModel"/>: each step drafts for every
/// active request, verifies all their trees in one batched forward, and streams what was accepted. Requests join and
/// leave between steps (continuous batching); greedy output is token for token what plain greedy decoding gives, and
/// sampled output follows the target's distribution exactly.
/// </summary>
/// <remarks>
/// <para>One engine thread owns the model and the drafter: it admits waiting requests into free cache slots (their prompts
/// prefilled together), drafts (one <see cref="IBatchDrafter.ProposeBatch"/> call, or <see cref="IDrafter.Propose"/> per
/// request), lets <see cref="AdaptiveSpeculation"/> cut the batch's drafts to what pays under the measured cost model,
/// verifies (greedy acceptance on the device when every request is greedy, multi-step speculative sampling otherwise),
/// and hands each request its tokens. Tokenization of prompts happens on the submitting thread; detokenization and stop
/// strings on the engine thread.</para>
/// <para>Memory is the model's preallocated KV cache: one slot of <see cref="TargetModel.Capacity"/> tokens per concurrent
/// request. A request waits until a slot is free; one whose prompt can never fit is refused with
/// <see cref="RequestRejectedException"/>. Generation that fills the context ends with <see cref="FinishReason.ContextFull"/>.</para>
/// <para>The engine does not own the model, the tokenizer or the drafter: dispose them after the engine.</para>
/// </remarks>
public sealed partial class SpeculativeEngine : ISpeculativeGenerator, IDisposable
{
    private readonly TargetModel _model;
    private readonly Tokenizer _tokenizer;
    private readonly IDrafter? _drafter;
    private readonly SpeculativeEngineOptions _options;
    private readonly int _maxBatch;
    private readonly int[] _defaultStopIds;
    private readonly AdaptiveSpeculation? _adaptive;
    private readonly ConcurrentQueue<EngineRequest> _submitted = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly LinkedList<EngineRequest> _waiting = new();
    // Admitted requests whose prompts are being prefilled, a chunk per step, and running requests.
    private readonly List<EngineRequest> _prefilling = [];
    private readonly List<EngineRequest> _active = [];
    // Rows the last verification step computed (batch × widest tree): the prefill chunks get the rest of the step's budget.
    private int _lastStepRows;
    private readonly Stack<int> _freeSlots = new();
    private readonly Thread _thread;
    private readonly EngineCounters _counters;
    private readonly EngineMetrics _metrics;
    private readonly GuardedLogger _logger;
    private readonly string _drafterName;
    // Submit enqueues and Stop sets _stopping under this gate: a request is either refused or reaches the engine thread.
    private readonly Lock _submitGate = new();
    private long _nextId;
    // Moving average of accepted tokens per draft over all requests (optimistic start, so drafting gets tried).
    private double _recentAccepted = 4.0;
    private volatile bool _stopping;
    private Exception? _stopReason;
    private int _metricsFailed;

    private SpeculativeEngine(TargetModel model, Tokenizer tokenizer, IDrafter? drafter, SpeculativeEngineOptions options)
    {
        _model = model;
        _tokenizer = tokenizer;
        _drafter = drafter;
        _options = options;
        _maxBatch = options.MaxBatch ?? model.MaxBatch;
        _defaultStopIds = [.. options.EndOfSequenceTokenIds ?? model.EndOfSequenceTokenIds];
        _logger = new GuardedLogger(options.Logger ?? NullLogger.Instance);
        _drafterName = drafter is null ? "none" : PluginName(drafter);
        model.AttachEngine(this);
        try
        {
            VerificationCostModel? cost = null;
            if (options.AdaptiveSpeculation && drafter is not null && options.MaxDraftTokens > 0)
            {
                cost = options.CostModel ?? VerificationCostModel.Measure(model,
                    options.CostModelContext ?? Math.Min(2048, model.Capacity / 4), maxWidth: Math.Min(64, options.MaxDraftTokens + 1));
            }
            // steps the tree kernels take are ragged (docs/target-model.md, "Batched tree kernels")
            _adaptive = cost is null ? null : AdaptiveSpeculation.For(cost, model.UsesTreeKernels);
            _metrics = new EngineMetrics(options.MeterFactory, this, MetricsListenerFailed);
            _counters = new EngineCounters(_metrics);
            EngineLog.EngineStarted(_logger, model.Config.Architecture.ToString(), model.Config.LayerCount, model.Config.HiddenSize,
                model.Config.VocabSize, model.Capacity, _maxBatch, drafter?.GetType().Name ?? "none", options.MaxDraftTokens,
                cost is null ? "off" : options.CostModel is null ? "measured" : "given");
            for (int slot = _maxBatch - 1; slot >= 0; slot--)
            {
                _freeSlots.Push(slot);
            }
            _thread = new Thread(Run) { IsBackground = true, Name = "SpecDecode engine" };
            _thread.Start();
        }
        catch
        {
            model.DetachEngine(this);
            _metrics?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Creates an engine over a loaded target model, which it owns until it is disposed. With
    /// <see cref="SpeculativeEngineOptions.AdaptiveSpeculation"/> and no <see cref="SpeculativeEngineOptions.CostModel"/>,
    /// measures the model's verification cost first (every slot must be empty).
    /// </summary>
    /// <param name="model">The target; its cache slots must be empty and no other engine may serve it.</param>
    /// <param name="tokenizer">The target's tokenizer (e.g. <see cref="Tokenization.CheckpointTokenizer.Load"/>).</param>
    /// <param name="drafter">The drafter for every request; null for plain decoding (one token per step).</param>
    /// <param name="options">Scheduling and speculation options; null for the defaults.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="InvalidOperationException">A cache slot is in use.</exception>
    /// <exception cref="ModelInUseException">Another engine, not yet disposed, serves <paramref name="model"/>.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="model"/> is disposed.</exception>
    /// <exception cref="VocabularyMismatchException">A draft model's vocabulary differs from the target's.</exception>
    /// <exception cref="ArgumentException">A draft model has fewer request slots than the engine's batch.</exception>
    public static SpeculativeEngine Create(TargetModel model, Tokenizer tokenizer, IDrafter? drafter, SpeculativeEngineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new SpeculativeEngineOptions();
        options.Validate(model);
        for (int slot = 0; slot < model.MaxBatch; slot++)
        {
            if (model.CachedLength(slot) != 0)
            {
                throw new InvalidOperationException($"Slot {slot} of the model caches {model.CachedLength(slot)} tokens; give the engine a model with empty slots (Truncate(slot, 0)).");
            }
        }
        ValidateDrafter(model, tokenizer, drafter, options.MaxBatch ?? model.MaxBatch);
        return new SpeculativeEngine(model, tokenizer, drafter, options);
    }

    /// <summary>"drafter 'name'" for messages; the name is read once, and a drafter whose <c>Name</c> throws is named by its type.</summary>
    private static string PluginName(IDrafter drafter)
    {
        string name;
        try
        {
            name = drafter.Name;
        }
        catch (Exception)
        {
            name = drafter.GetType().Name;
        }
        return $"drafter '{name}'";
    }

    private void MetricsListenerFailed(Exception error)
    {
        if (Interlocked.Exchange(ref _metricsFailed, 1) == 0)
        {
            EngineLog.MetricsListenerFailed(_logger, error);
        }
    }

    /// <summary>Checks draft models inside <paramref name="drafter"/> (directly or in a <see cref="HybridDrafter"/>): the
    /// same vocabulary as the target, and a slot for every request the engine serves at once.</summary>
    private static void ValidateDrafter(TargetModel model, Tokenizer tokenizer, IDrafter? drafter, int maxBatch)
    {
        switch (drafter)
        {
            case HybridDrafter hybrid:
                ValidateDrafter(model, tokenizer, hybrid.CheapDrafter, maxBatch);
                ValidateDrafter(model, tokenizer, hybrid.ModelDrafter, maxBatch);
                break;
            case DraftModelDrafter draft:
                draft.EnsureSameVocabulary(model.Config, tokenizer);
                if (draft.Options.MaxRequests < maxBatch)
                {
                    throw new ArgumentException(
                        $"The draft model has {draft.Options.MaxRequests} request slots but the engine serves {maxBatch} requests at once; set DraftModelOptions.MaxRequests to at least {maxBatch}.",
                        nameof(drafter));
                }
                break;
        }
    }

    /// <summary>The target model.</summary>
    public TargetModel Model => _model;

    /// <summary>The cost model adaptive speculation uses (null when it is off).</summary>
    public VerificationCostModel? CostModel => _adaptive?.Cost;

    /// <summary>The meter the engine records its metrics on (named <c>SpecDecode</c>; see
    /// <see cref="SpeculativeEngineOptions.MeterFactory"/>).</summary>
    public System.Diagnostics.Metrics.Meter Meter => _metrics.Meter;

    /// <inheritdoc />
    public EngineStatistics Statistics => _counters.Snapshot(_active.Count + _prefilling.Count, _waiting.Count + _submitted.Count);

    /// <inheritdoc />
    /// <remarks>An already-cancelled <paramref name="cancellationToken"/> gives a cancelled task. Malformed and refused
    /// requests, and requests submitted after <see cref="Dispose"/>, throw at once.</remarks>
    /// <exception cref="ObjectDisposedException">The engine (or its model) is disposed.</exception>
    /// <exception cref="PluginFailedException">The tokenizer threw while encoding the prompt.</exception>
    public Task<GenerationResult> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<GenerationResult>(cancellationToken);
        }
        EngineRequest r = Submit(request, stream: false, forced: null, cancellationToken);
        return r.Completion.Task;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<GenerationChunk> StreamAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        EngineRequest r = Submit(request, stream: true, forced: null, cancellationToken);
        try
        {
            await foreach (GenerationChunk chunk in r.Stream!.Reader.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
            {
                yield return chunk;
            }
        }
        finally
        {
            if (!r.Completion.Task.IsCompleted)
            {
                // The caller stopped reading: free the request's slot.
                r.CancelRequested = true;
                Wake();
            }
        }
    }

    /// <summary>Generates with recorded response tokens deciding acceptance in place of the target (see
    /// <see cref="TargetModel.VerifyForced"/>): benchmarks of real traces on models with random weights. A sampled request
    /// runs the speculative sampling as usual and then takes the recorded path (<see cref="TargetModel.VerifySampledForced"/>),
    /// so sampled and greedy requests are timed at the same acceptance. It stops after <paramref name="forcedResponse"/>'s
    /// length unless it sets a smaller budget.</summary>
    internal Task<GenerationResult> GenerateForcedAsync(GenerationRequest request, int[] forcedResponse, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(forcedResponse);
        return Submit(request, stream: false, forcedResponse, cancellationToken).Completion.Task;
    }

    private EngineRequest Submit(GenerationRequest request, bool stream, int[]? forced, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ThrowIfStopped();
        request.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        int[] prompt = PromptTokens(request);
        if (prompt.Length == 0)
        {
            throw new ArgumentException("The prompt encodes to no tokens; give at least one token (e.g. the BOS token).", nameof(request));
        }
        int vocab = _model.Config.VocabSize;
        if (prompt.Any(t => t >= vocab))
        {
            throw new ArgumentException($"A prompt token is outside the model's vocabulary (0 .. {vocab - 1}); were the ids made by another tokenizer?", nameof(request));
        }
        if (prompt.Length > _model.Capacity)
        {
            var rejected = new RequestRejectedException(
                $"The prompt has {prompt.Length} tokens but the model's context holds {_model.Capacity} (TargetModelOptions.MaxContext); shorten the prompt or load the model with a larger MaxContext.");
            EngineLog.RequestRefused(_logger, rejected.Message);
            throw rejected;
        }
        SamplingOptions? sampling = request.Sampling is null ? null : new SamplingOptions
        {
            Temperature = request.Sampling.Temperature,
            TopK = request.Sampling.TopK,
            TopP = request.Sampling.TopP,
            Seed = request.Sampling.Seed,
        };
        HashSet<int> stopIds = [.. request.StopTokenIds ?? _defaultStopIds];
        var r = new EngineRequest(new RequestId(Interlocked.Increment(ref _nextId)), prompt, request, sampling, stopIds,
            new TextAssembler(_tokenizer, request.StopStrings),
            stream ? Channel.CreateUnbounded<GenerationChunk>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true }) : null,
            forced);
        r.CancellationToken = cancellationToken;
        if (cancellationToken.CanBeCanceled)
        {
            r.Registration = cancellationToken.Register(static state =>
            {
                var (engine, req) = ((SpeculativeEngine, EngineRequest))state!;
                req.CancelRequested = true;
                engine.Wake();
            }, (this, r));
        }
        lock (_submitGate)
        {
            if (_stopping)
            {
                // Stopped while the prompt was tokenized: refused here, so the engine thread's last drain cannot miss it.
                r.Registration.Dispose();
                ThrowIfStopped();
            }
            _submitted.Enqueue(r);
        }
        Wake();
        return r;
    }

    private void ThrowIfStopped()
    {
        if (_stopping)
        {
            throw new ObjectDisposedException(nameof(SpeculativeEngine),
                _stopReason is ObjectDisposedException { ObjectName: nameof(TargetModel) }
                    ? "The engine stopped because its target model was disposed; load the model again and create a new engine."
                    : "The engine is disposed; create a new one.");
        }
    }

    private int[] PromptTokens(GenerationRequest request)
    {
        if (request.PromptTokens is not null)
        {
            return [.. request.PromptTokens];
        }
        if (request.Messages is not null)
        {
            Tokenization.ChatTemplate template = _options.ChatTemplate
                ?? throw new ArgumentException("This engine has no chat template (SpeculativeEngineOptions.ChatTemplate, e.g. ChatTemplate.Load(checkpointFolder)): pass Prompt or PromptTokens instead, or give the engine the checkpoint's template.", nameof(request));
            return Encode(template.Render(request.Messages, addGenerationPrompt: true));
        }
        int[] ids = Encode(request.Prompt!);
        if (_options.PrependBosToText && _model.Config.BosTokenId is int bos && (ids.Length == 0 || ids[0] != bos))
        {
            ids = [bos, .. ids];
        }
        return ids;
    }

    private int[] Encode(string text)
    {
        try
        {
            return [.. _tokenizer.EncodeToIds(text)];
        }
        catch (Exception e)
        {
            throw new PluginFailedException("tokenizer", "EncodeToIds", RequestId.Invalid, null, e);
        }
    }

    /// <summary>Wakes the engine thread; a no-op once the engine is disposed (a late cancellation must not throw in the
    /// caller's <c>Cancel</c>).</summary>
    private void Wake()
    {
        try
        {
            _wake.Release();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Stops the engine: the step in flight ends, then requests still waiting or running fail with
    /// <see cref="ObjectDisposedException"/> (cancelled ones are cancelled), and the model is free for another engine.
    /// Safe to call more than once and from several threads.</summary>
    public void Dispose() =>
        Stop(new ObjectDisposedException(nameof(SpeculativeEngine), "The engine was disposed before the request finished."));

    /// <summary>Stops the engine with <paramref name="reason"/> as the error of the requests it still holds, and waits for
    /// its thread to end (unless called on that thread, e.g. by a plug-in).</summary>
    internal void Stop(Exception reason)
    {
        lock (_submitGate)
        {
            if (!_stopping)
            {
                _stopReason = reason;
                _stopping = true;
            }
        }
        Wake();
        if (Thread.CurrentThread != _thread)
        {
            _thread.Join();
        }
    }
}
