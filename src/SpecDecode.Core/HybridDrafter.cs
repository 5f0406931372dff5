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
        var drafts = new DraftTree[queries.Count];
        var modelQueries = new List<DraftQuery>();
        var modelRows = new List<int>();
        var states = new State[queries.Count];
        for (int i = 0; i < queries.Count; i++)
        {
            DraftQuery q = queries[i];
            ArgumentOutOfRangeException.ThrowIfNegative(q.MaxTokens);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(q.MaxTokens, MaxBudget);
            states[i] = Get(q.Request);
            drafts[i] = q.MaxTokens == 0 ? DraftTree.Empty : _cheap.Propose(q.Request, q.MaxTokens);
            bool modelBetter = q.MaxTokens > 0 && states[i].ModelAcceptance >= _options.MinModelAcceptance
                && drafts[i].Score < Math.Min(q.MaxTokens, states[i].ModelAcceptance);
            states[i].LastFromModel = modelBetter;
            if (modelBetter)
            {
                modelQueries.Add(q);
                modelRows.Add(i);
            }
        }
        if (modelQueries.Count > 0)
        {
            IReadOnlyList<DraftTree> modelDrafts = _model is IBatchDrafter batch
                ? batch.ProposeBatch(modelQueries)
                : modelQueries.Select(q => _model.Propose(q.Request, q.MaxTokens)).ToArray();
            for (int k = 0; k < modelRows.Count; k++)
            {
                drafts[modelRows[k]] = modelDrafts[k];
            }
        }
        lock (_gate)
        {
            ModelDrafts += modelQueries.Count;
            CheapDrafts += queries.Count(q => q.MaxTokens > 0) - modelQueries.Count;
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
    }
}
