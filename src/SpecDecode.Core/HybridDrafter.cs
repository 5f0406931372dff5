namespace SpecDecode;

/// <summary>
/// Drafts each request with a cheap drafter (a suffix cache) when its draft promises more than a model drafter is
/// expected to deliver for that request, and with the model drafter otherwise: agentic repetition is caught for free,
/// novel text still gets a model draft.
/// </summary>
/// <remarks>
/// <para>The rule follows ArcticInference's hybrid of suffix decoding with a model speculator (use the suffix draft when
/// its score is high enough, else the model's). Here the threshold is not fixed: the suffix draft's
/// <see cref="DraftTree.Score"/> (its expected accepted tokens) is compared with the moving average of tokens the target
/// accepted from this request's recent model drafts (starting from the average over all requests' model drafts, at first
/// <see cref="HybridDrafterOptions.InitialModelAcceptance"/>),
/// and the model is not asked at all once that average falls below <see cref="HybridDrafterOptions.MinModelAcceptance"/>.</para>
/// <para>The model's time counts too (<see cref="HybridDrafterOptions.WeighDraftCost"/>): a step asks the model only when
/// the tokens its drafts are expected to add, over all the step's requests, outweigh the time it adds to the step, both
/// measured as the hybrid runs. So a slow draft model, or a large batch whose cheap drafts already yield many tokens, leaves
/// the cheap drafter in charge rather than slowing every step.</para>
/// <para>Both drafters see every request's whole lifecycle (start, every emitted token, end), so either can draft at any
/// step. The model drafter runs once per step for all requests that need it when it is an <see cref="IBatchDrafter"/>.
/// The hybrid does not own its drafters: dispose them yourself.</para>
/// </remarks>
public sealed class HybridDrafter : IBatchDrafter
{
    private readonly IDrafter _cheap;
    private readonly IDrafter _model;
    private readonly HybridDrafterOptions _options;
    private readonly Dictionary<RequestId, State> _requests = [];
    private readonly Lock _gate = new();
    private double _sharedModelAcceptance;
    private readonly TimeProvider _time;
    private long _lastProposal;           // timestamp of the previous ProposeBatch's start; 0 before the first
    private double _lastModelSeconds;     // the model drafter's time within the previous ProposeBatch
    private double _modelSeconds;         // moving average of a model proposal's time; 0 until measured
    private double _stepSeconds;          // moving average of a step's time outside the model drafter; 0 until measured
    private int _skippedSteps;            // consecutive steps in which the cost rule skipped the model
    private int _probeWait;               // skipped steps before the next probe (ModelProbeSteps, doubled by each failed probe)

    /// <summary>Creates the hybrid.</summary>
    /// <param name="cheap">The model-free drafter (e.g. a suffix drafter).</param>
    /// <param name="model">The model drafter (e.g. a draft-model drafter).</param>
    /// <param name="options">The rule's settings; null for the defaults.</param>
    public HybridDrafter(IDrafter cheap, IDrafter model, HybridDrafterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(cheap);
        ArgumentNullException.ThrowIfNull(model);
        _cheap = cheap;
        _model = model;
        _options = options ?? new HybridDrafterOptions();
        _options.Validate();
        _sharedModelAcceptance = _options.InitialModelAcceptance;
        _time = _options.Time;
        _probeWait = _options.ModelProbeSteps;
    }

    /// <inheritdoc />
    public string Name => $"hybrid({_cheap.Name}+{_model.Name})";

    /// <inheritdoc />
    public int MaxBudget => Math.Min(_cheap.MaxBudget, _model.MaxBudget);

    /// <summary>The model-free drafter.</summary>
    public IDrafter CheapDrafter => _cheap;

    /// <summary>The model drafter.</summary>
    public IDrafter ModelDrafter => _model;

    /// <summary>Drafts taken from the cheap drafter so far.</summary>
    public long CheapDrafts { get; private set; }

    /// <summary>Drafts taken from the model drafter so far.</summary>
    public long ModelDrafts { get; private set; }

    /// <summary>Requests whose model draft promised more accepted tokens than the cheap draft, but not enough to pay for
    /// the model drafter's time that step (<see cref="HybridDrafterOptions.WeighDraftCost"/>), so they took the cheap draft.</summary>
    public long ModelDraftsSkippedForCost { get; private set; }

    /// <summary>Steps in which the model was asked although the cost rule would have skipped it, to measure its time again
    /// (<see cref="HybridDrafterOptions.ModelProbeSteps"/>).</summary>
    public long ModelProbes { get; private set; }

    /// <summary>The moving average of one model proposal's wall time (all the step's model queries together), in seconds;
    /// 0 until the model drafter has run.</summary>
    public double ModelDraftSeconds
    {
        get
        {
            lock (_gate)
            {
                return _modelSeconds;
            }
        }
    }

    /// <summary>The moving average of a step's wall time outside the model drafter (from one proposal to the next:
    /// verification, the engine's bookkeeping, the cheap drafter), in seconds; 0 until two proposals were made.</summary>
    public double StepSeconds
    {
        get
        {
            lock (_gate)
            {
                return _stepSeconds;
            }
        }
    }

    /// <inheritdoc />
    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        lock (_gate)
        {
            if (_requests.ContainsKey(request))
            {
                throw new DuplicateRequestException(request, Name);
            }
        }
        _cheap.StartRequest(request, prompt, options);
        try
        {
            _model.StartRequest(request, prompt, options);
        }
        catch
        {
            _cheap.EndRequest(request);
            throw;
        }
        lock (_gate)
        {
            // A new request starts from what model drafts yielded lately over all requests.
            _requests[request] = new State { ModelAcceptance = _sharedModelAcceptance };
        }
    }

    /// <inheritdoc />
    public DraftTree Propose(RequestId request, int maxTokens) => ProposeBatch([new DraftQuery(request, maxTokens)])[0];

    /// <inheritdoc />
    public IReadOnlyList<DraftTree> ProposeBatch(IReadOnlyList<DraftQuery> queries)
    {
        ArgumentNullException.ThrowIfNull(queries);
        MeasureStep();
        var drafts = new DraftTree[queries.Count];
        var modelQueries = new List<DraftQuery>();
        var modelRows = new List<int>();
        var states = new State[queries.Count];
        double expectedTokens = 0, modelGain = 0; // the step's expected emitted tokens with cheap drafts; what the model adds
        var asked = new List<int>(queries.Count);
        for (int i = 0; i < queries.Count; i++)
        {
            DraftQuery q = queries[i];
            ArgumentOutOfRangeException.ThrowIfNegative(q.MaxTokens);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(q.MaxTokens, MaxBudget);
            states[i] = Get(q.Request);
            drafts[i] = DraftTree.Empty;
            if (q.MaxTokens > 0)
            {
                asked.Add(i);
            }
        }
        // every query checked before any draft: a bad one fails the call with no request drafted
        ParallelProposals.ForEach(asked, i => drafts[i] = _cheap.Propose(queries[i].Request, queries[i].MaxTokens));
        for (int i = 0; i < queries.Count; i++)
        {
            DraftQuery q = queries[i];
            expectedTokens += 1 + drafts[i].Score;
            double modelExpected = Math.Min(q.MaxTokens, states[i].ModelAcceptance);
            bool modelBetter = q.MaxTokens > 0 && states[i].ModelAcceptance >= _options.MinModelAcceptance && drafts[i].Score < modelExpected;
            states[i].LastFromModel = modelBetter;
            if (modelBetter)
            {
                modelQueries.Add(q);
                modelRows.Add(i);
                modelGain += modelExpected - drafts[i].Score;
            }
        }
        int skipped = 0;
        bool probe = false;
        if (modelQueries.Count > 0 && !ModelPays(expectedTokens, modelGain) && !(probe = ProbeDue()))
        {
            skipped = modelQueries.Count;
            foreach (int row in modelRows)
            {
                states[row].LastFromModel = false;
            }
            modelQueries.Clear();
            modelRows.Clear();
        }
        double modelSeconds = 0;
        if (modelQueries.Count > 0)
        {
            long start = _time.GetTimestamp();
            IReadOnlyList<DraftTree> modelDrafts = _model is IBatchDrafter batch
                ? batch.ProposeBatch(modelQueries)
                : modelQueries.Select(q => _model.Propose(q.Request, q.MaxTokens)).ToArray();
            modelSeconds = _time.GetElapsedTime(start).TotalSeconds;
            for (int k = 0; k < modelRows.Count; k++)
            {
                drafts[modelRows[k]] = modelDrafts[k];
            }
        }
        lock (_gate)
        {
            ModelDrafts += modelQueries.Count;
            ModelDraftsSkippedForCost += skipped;
            CheapDrafts += queries.Count(q => q.MaxTokens > 0) - modelQueries.Count;
            _lastModelSeconds = modelSeconds;
            if (probe)
            {
                // a fresh measurement after many skipped steps replaces the estimate, which may date from the model's
                // first uses (eager runs, graph captures); if it still does not pay, the next probe waits twice as long
                ModelProbes++;
                _modelSeconds = modelSeconds;
                _probeWait = (int)Math.Min(2L * _probeWait, int.MaxValue);
            }
            else if (modelQueries.Count > 0)
            {
                _modelSeconds = _modelSeconds == 0 ? modelSeconds : (1 - TimeSmoothing) * _modelSeconds + TimeSmoothing * modelSeconds;
                _skippedSteps = 0; // it paid: a later run of skips counts afresh and waits the first interval again
                _probeWait = _options.ModelProbeSteps;
            }
        }
        for (int i = 0; i < queries.Count; i++)
        {
            states[i].LastWasDraft = !drafts[i].IsEmpty;
        }
        return drafts;
    }

    /// <inheritdoc />
    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        State state = Get(request);
        if (state.LastFromModel && state.LastWasDraft && emitted.Length > 0)
        {
            // Emitted = accepted draft tokens + the bonus token.
            double rate = _options.AcceptanceSmoothing;
            state.ModelAcceptance = (1 - rate) * state.ModelAcceptance + rate * (emitted.Length - 1);
            lock (_gate)
            {
                _sharedModelAcceptance = (1 - rate / 4) * _sharedModelAcceptance + rate / 4 * (emitted.Length - 1);
            }
        }
        state.LastFromModel = state.LastWasDraft = false;
        _cheap.Observe(request, emitted);
        _model.Observe(request, emitted);
    }

    /// <inheritdoc />
    public void EndRequest(RequestId request)
    {
        lock (_gate)
        {
            if (!_requests.Remove(request))
            {
                throw new UnknownRequestException(request, Name);
            }
        }
        try
        {
            _cheap.EndRequest(request);
        }
        finally
        {
            _model.EndRequest(request);
        }
    }

    /// <summary>Does nothing: the hybrid does not own its drafters.</summary>
    public void Dispose()
    {
    }

    /// <summary>Weight of the newest sample in the moving averages of the model drafter's and the step's time.</summary>
    private const double TimeSmoothing = 0.2;

    /// <summary>A gap between proposals longer than this many times the step's average is idle time (no requests), not a
    /// step, and is not counted.</summary>
    private const double IdleGapFactor = 5;

    /// <summary>
    /// Whether asking the model drafter pays for the step: the step then emits <paramref name="expectedTokens"/> +
    /// <paramref name="modelGain"/> tokens in the step's time plus the model's, against <paramref name="expectedTokens"/>
    /// in the step's time alone, so the model pays when gain × step time &gt; tokens × model time. The model's time is
    /// taken as one proposal's, whatever the number of its queries (its forwards run per depth for all queries together,
    /// and at these sizes cost about the same for one query as for many). Before both times are measured, and with
    /// <see cref="HybridDrafterOptions.WeighDraftCost"/> off, the model is asked whenever its acceptance beats the cheap
    /// draft's.
    /// </summary>
    private bool ModelPays(double expectedTokens, double modelGain)
    {
        if (!_options.WeighDraftCost)
        {
            return true;
        }
        lock (_gate)
        {
            return _modelSeconds <= 0 || _stepSeconds <= 0 || modelGain * _stepSeconds > expectedTokens * _modelSeconds;
        }
    }

    /// <summary>Counts a step in which the cost rule skipped the model; true when that makes a probe due (the model is then
    /// asked anyway and its time measured again).</summary>
    private bool ProbeDue()
    {
        lock (_gate)
        {
            if (_options.ModelProbeSteps == 0 || ++_skippedSteps <= _probeWait)
            {
                return false;
            }
            _skippedSteps = 0;
            return true;
        }
    }

    /// <summary>Counts the time since the previous proposal, less the model drafter's share of it, as one step (an idle gap
    /// excepted).</summary>
    private void MeasureStep()
    {
        long now = _time.GetTimestamp();
        lock (_gate)
        {
            if (_lastProposal != 0)
            {
                double step = _time.GetElapsedTime(_lastProposal, now).TotalSeconds - _lastModelSeconds;
                if (step > 0 && (_stepSeconds == 0 || step <= IdleGapFactor * _stepSeconds))
                {
                    _stepSeconds = _stepSeconds == 0 ? step : (1 - TimeSmoothing) * _stepSeconds + TimeSmoothing * step;
                }
            }
            _lastProposal = now;
        }
    }

    private State Get(RequestId request)
    {
        lock (_gate)
        {
            return _requests.TryGetValue(request, out State? state) ? state : throw new UnknownRequestException(request, Name);
        }
    }

    private sealed class State
    {
        public double ModelAcceptance;
        public bool LastFromModel;
        public bool LastWasDraft;
    }
}

/// <summary>Settings of <see cref="HybridDrafter"/>.</summary>
public sealed class HybridDrafterOptions
{
    /// <summary>Expected accepted tokens of a model draft before any model draft was verified. Default 2. Later requests
    /// start from the moving average over all requests' model drafts.</summary>
    public double InitialModelAcceptance { get; init; } = 2.0;

    /// <summary>The model drafter is not asked for a request whose model drafts are expected to yield fewer accepted tokens
    /// than this (a model draft costs forwards of the draft model; a useless one only slows the step). The request's
    /// estimate then stays where it is, so a model that stopped paying is not asked again for that request. Default 0.5.</summary>
    public double MinModelAcceptance { get; init; } = 0.5;

    /// <summary>Weight of the newest model draft in the moving average of its accepted tokens. Default 0.2.</summary>
    public double AcceptanceSmoothing { get; init; } = 0.2;

    /// <summary>
    /// Weigh the model drafter's time against the step's (both measured as the hybrid runs): a step asks the model only
    /// when the extra tokens its drafts are expected to win are worth the time the model adds to the step, so the hybrid
    /// is not slower than its cheap drafter alone where the model is slow or the batch large. A step is the time from one
    /// proposal call to the next, so make one <see cref="HybridDrafter.ProposeBatch"/> call per step for all requests
    /// (the engine does); separate <see cref="HybridDrafter.Propose"/> calls for the requests of one step would look like
    /// very short steps. Default on; off asks the model whenever its expected acceptance beats the cheap draft's score.
    /// </summary>
    public bool WeighDraftCost { get; init; } = true;

    /// <summary>
    /// With <see cref="WeighDraftCost"/>: after this many consecutive steps in which the cost rule skipped the model, the
    /// model is asked once anyway and its measured time replaces the estimate. Without probes one slow proposal (a model's
    /// first, with its eager first runs and graph captures: 96 ms in an H100 run of bench/RESULTS.md) would keep the model
    /// skipped for good. A probe that finds the model still too slow doubles the wait for the next, so a model that really
    /// is slow costs a few probes over a long run. Default 64; 0 never probes.
    /// </summary>
    public int ModelProbeSteps { get; init; } = 64;

    /// <summary>The clock the hybrid measures time with (tests substitute their own).</summary>
    internal TimeProvider Time { get; init; } = TimeProvider.System;

    internal void Validate()
    {
        if (!(InitialModelAcceptance >= 0) || !double.IsFinite(InitialModelAcceptance))
        {
            throw new ArgumentOutOfRangeException(nameof(InitialModelAcceptance), InitialModelAcceptance, "Must be a finite number >= 0.");
        }
        if (!(MinModelAcceptance >= 0) || !double.IsFinite(MinModelAcceptance))
        {
            throw new ArgumentOutOfRangeException(nameof(MinModelAcceptance), MinModelAcceptance, "Must be a finite number >= 0.");
        }
        if (!(AcceptanceSmoothing > 0 && AcceptanceSmoothing <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(AcceptanceSmoothing), AcceptanceSmoothing, "Must lie in (0, 1].");
        }
        if (ModelProbeSteps < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(ModelProbeSteps), ModelProbeSteps, "Must be >= 0 (0: never probe).");
        }
    }
}
