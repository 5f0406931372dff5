using System.Diagnostics;
using Microsoft.ML.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Drafts with a small language model of the target's tokenizer (for example Qwen2.5-0.5B for Qwen2.5-7B, or
/// Llama-3.2-1B for Llama-3.1-8B), run through <see cref="TargetModel"/>'s batched tree forward and KV cache, one cache
/// slot per request. Greedy requests get a dynamic draft tree, sampled requests a chain drawn from the draft
/// distribution, whose distributions the sampling verifier then reads.
/// </summary>
/// <remarks>
/// <para><b>Context.</b> A request's slot caches its context except the tokens not yet fed (<em>pending</em>): the
/// prompt at <see cref="StartRequest"/>, then what <see cref="Observe"/> appends, after the last token of the previous
/// proposal. The first forward of the next proposal feeds the pending tokens as a chain (positions right after the
/// cached prefix) and reads the draft's prediction at the last of them; the chain's keys and values then sit at their
/// final positions, so the drafter commits all but the last by moving the slot's length: no separate catch-up forward.
/// The last context token stays pending, as <see cref="TargetModel"/> keeps its root out of the cache, so a second
/// proposal without new tokens drafts again (the same tree, for a greedy request). A pending stretch longer than 64
/// tokens (a new prompt) is first cached in chunks of <see cref="DraftModelOptions.PrefillChunk"/> with
/// <see cref="TargetModel.Prefill"/>, the stretches of all requests of the batch in the same forwards.</para>
/// <para><b>Greedy requests</b> (<see cref="DraftRequestOptions.Sampling"/> null or temperature 0) get EAGLE-2's
/// dynamic tree (Li et al., 2024, "EAGLE-2: Faster Inference of Language Models with Dynamic Draft Trees"): depth by
/// depth, the <see cref="DraftModelOptions.Beam"/> candidates of the deepest level with the highest cumulative draft
/// probability (the product of the draft's softmax probabilities along the path) are fed to the draft model, each gets
/// its <see cref="DraftModelOptions.TopK"/> most probable next tokens as children, and finally the budget's most probable
/// candidates are kept, grown best-first from the root so the tree is closed under ancestors (parents precede children,
/// <see cref="DraftTree.Probabilities"/> = cumulative draft probability). With
/// <see cref="DraftModelOptions.KeepGreedyPath"/> the draft's own argmax path always stays in.</para>
/// <para><b>Sampled requests</b> (temperature &gt; 0) get a chain of up to min(budget, <see cref="DraftModelOptions.MaxDepth"/>)
/// tokens, each drawn from the draft's distribution after the request's temperature, top-k and top-p (transformers'
/// order), by inverse-CDF sampling on the device with one uniform per token from the request's own generator: seeded
/// by <see cref="SamplingOptions.Seed"/> (reproducible: the same context gives the same draft on any device and in any
/// batch) or randomly. The distributions are registered for the verifier (see <see cref="DraftDistributions"/>).</para>
/// <para><b>Cost per proposal.</b> One draft forward per depth for all queried requests together (ragged prefixes and
/// trees in one batch); each forward projects only the rows that are expanded onto the vocabulary; logits stay on the
/// device and each forward copies one small [rows, 2 × TopK] table (top-k probabilities and ids, or the sampled token
/// and its probability) to the host.</para>
/// <para><b>Vocabulary.</b> Proposed ids are always below <see cref="TargetVocabSize"/>. Call
/// <see cref="EnsureSameVocabulary"/> with the target's configuration before the first proposal; it checks the
/// vocabularies and binds the target's vocabulary size.</para>
/// <para><b>Threading.</b> Every call takes one lock, so calls from several threads are safe but run one at a time
/// (the <see cref="IDrafter"/> contract holds); an engine calls it from its step thread and batches through
/// <see cref="ProposeBatch"/>.</para>
/// </remarks>
[DebuggerDisplay("draft-model {_requests.Count}/{Options.MaxRequests} requests, top-{Options.TopK} beam {Options.Beam} depth {Options.MaxDepth}")]
public sealed class DraftModelDrafter : IBatchDrafter
{
    /// <summary>Pending tokens beyond this many are cached by a chunked prefill before the proposal's first forward
    /// instead of being fed as its chain.</summary>
    internal const int ChainFeedLimit = 64;

    private readonly TargetModel _model;
    private readonly object _gate = new();
    private readonly Dictionary<RequestId, RequestState> _requests = new();
    private readonly SortedSet<int> _freeSlots;
    private readonly int _maxBudget;
    private Tokenizer? _ownTokenizer;
    private int _targetVocab;
    private bool _disposed;

    private DraftModelDrafter(TargetModel model, DraftModelOptions options)
    {
        _model = model;
        Options = options;
        _freeSlots = new SortedSet<int>(Enumerable.Range(0, options.MaxRequests));
        _maxBudget = options.CandidateBound();
        _targetVocab = model.Config.VocabSize;
    }

    /// <summary>Loads the draft model from a Hugging Face checkpoint folder (as <see cref="TargetModel.Load"/> does).</summary>
    /// <param name="folder">The checkpoint folder: config.json and safetensors weights.</param>
    /// <param name="options">Slots, context, placement and tree shape.</param>
    /// <exception cref="ArgumentException"><paramref name="folder"/> is null or empty.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="ModelConfigException">config.json is missing, malformed or unsupported.</exception>
    /// <exception cref="SafeTensorsException">A weights file is missing or corrupt.</exception>
    /// <exception cref="Tokenization.TokenizerLoadException">The folder has tokenizer files that do not load.</exception>
    public static DraftModelDrafter Load(string folder, DraftModelOptions options)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Tokenizer? tokenizer = HasTokenizerFiles(folder) ? Tokenization.CheckpointTokenizer.Load(folder) : null;
        return new DraftModelDrafter(TargetModel.Load(folder, options.ToModelOptions()), options) { _ownTokenizer = tokenizer };
    }

    private static bool HasTokenizerFiles(string folder) =>
        new[] { "tokenizer.json", "tokenizer.model", "vocab.json" }.Any(name => File.Exists(Path.Combine(folder, name)));

    /// <summary>A drafter over an existing model, which it then owns (disposes). For tests, with
    /// <see cref="TargetModel.CreateRandom"/>.</summary>
    /// <exception cref="ArgumentException">The model has fewer slots than <see cref="DraftModelOptions.MaxRequests"/>.</exception>
    internal static DraftModelDrafter Create(TargetModel model, DraftModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (model.MaxBatch < options.MaxRequests)
        {
            throw new ArgumentException($"The model has {model.MaxBatch} KV-cache slots, fewer than MaxRequests = {options.MaxRequests}.", nameof(model));
        }
        return new DraftModelDrafter(model, options);
    }

    /// <inheritdoc />
    public string Name => "draft-model";

    /// <inheritdoc />
    /// <remarks>The most candidates a greedy tree can hold: <see cref="DraftModelOptions.TopK"/> at depth 1, then per
    /// depth min(<see cref="DraftModelOptions.Beam"/>, candidates above) × TopK, down to
    /// <see cref="DraftModelOptions.MaxDepth"/> (4 + 16 + 4 × 32 = 148 with the defaults). Sampled chains stop at MaxDepth.</remarks>
    public int MaxBudget => _maxBudget;

    /// <summary>The settings the drafter was created with.</summary>
    public DraftModelOptions Options { get; }

    /// <summary>The draft model's configuration.</summary>
    public ModelConfig Config => _model.Config;

    /// <summary>The target vocabulary size bound by <see cref="EnsureSameVocabulary"/> (the draft's own until then):
    /// proposed ids lie below it and below the draft's, and sampled drafts' distributions have this many columns.</summary>
    public int TargetVocabSize
    {
        get
        {
            lock (_gate)
            {
                return _targetVocab;
            }
        }
    }

    /// <summary>Requests started and not yet ended.</summary>
    public int ActiveRequests
    {
        get
        {
            lock (_gate)
            {
                return _requests.Count;
            }
        }
    }

    /// <summary>
    /// Checks that the draft model reads and writes the target's vocabulary, and binds the target's vocabulary size:
    /// from then on no proposed id reaches <paramref name="target"/>'s <c>vocab_size</c>, and sampled drafts'
    /// distributions have that many columns. Call it once, before the first proposal.
    /// </summary>
    /// <remarks>
    /// <para>With both tokenizers the criterion is the tokenizers' vocabulary, since checkpoints of one tokenizer pad
    /// <c>vocab_size</c> differently (Qwen2.5-0.5B: 151936, Qwen2.5-7B: 152064): the id → token tables (ordinary and
    /// special tokens) must be equal, for tokenizer types that expose them (BPE, SentencePiece, CodeGen; both of one type),
    /// otherwise every id below both sizes must decode to the same text; every token id must be below both models'
    /// <c>vocab_size</c>; and a probe text (prose, code, digits, whitespace, non-Latin scripts, chat markers) must encode
    /// to the same ids. With one tokenizer or none the two <c>vocab_size</c>s must be equal.</para>
    /// <para>Ids the target emits at or above the draft's <c>vocab_size</c> (only possible when the target pads more)
    /// reach the draft model as id 0: they have no embedding there, and only the draft's guesses depend on them.</para>
    /// </remarks>
    /// <param name="target">The target model's configuration.</param>
    /// <param name="targetTokenizer">The target's tokenizer, e.g. <see cref="Tokenization.CheckpointTokenizer.Load"/>.</param>
    /// <param name="draftTokenizer">The draft model's tokenizer; null for the one <see cref="Load"/> found in the draft's
    /// checkpoint folder, if any.</param>
    /// <exception cref="ArgumentNullException"><paramref name="target"/> is null.</exception>
    /// <exception cref="VocabularyMismatchException">The vocabularies differ; the message says how and what to do.</exception>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void EnsureSameVocabulary(ModelConfig target, Tokenizer? targetTokenizer = null, Tokenizer? draftTokenizer = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            VocabularyCheck.Check(target.VocabSize, _model.Config.VocabSize, targetTokenizer, draftTokenizer ?? _ownTokenizer);
            _targetVocab = target.VocabSize;
        }
    }

    /// <inheritdoc />
    /// <remarks>Takes the lowest free KV-cache slot; the prompt is cached lazily, at the request's first proposal (see
    /// the class remarks). A request whose context outgrows <see cref="DraftModelOptions.MaxContext"/> gets empty drafts.
    /// <see cref="DraftRequestOptions.Sampling"/> is read now (later changes to the options object have no effect);
    /// <see cref="DraftRequestOptions.ConversationId"/> is ignored.</remarks>
    /// <exception cref="DraftSlotsExhaustedException">Every slot is held by an active request.</exception>
    /// <exception cref="ArgumentException">The id is invalid, or a token is negative or outside both vocabularies.</exception>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!request.IsValid)
            {
                throw new ArgumentException($"{Name}: RequestId.Invalid cannot be started; use any other id.", nameof(request));
            }
            CheckTokens(prompt, nameof(prompt));
            if (_requests.ContainsKey(request))
            {
                throw new DuplicateRequestException(request, Name);
            }
            if (_freeSlots.Count == 0)
            {
                throw new DraftSlotsExhaustedException(request, Options.MaxRequests);
            }
            int slot = _freeSlots.Min;
            _freeSlots.Remove(slot);
            _model.Truncate(slot, 0);
            SamplingOptions? sampling = options?.Sampling;
            var state = new RequestState(slot, sampling is { IsGreedy: false } ? new Sampler(sampling) : null);
            Append(state, prompt);
            _requests.Add(request, state);
        }
    }

    /// <inheritdoc />
    /// <remarks>Runs <see cref="ProposeBatch"/> for this request alone.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public DraftTree Propose(RequestId request, int maxTokens) => ProposeBatch([new DraftQuery(request, maxTokens)])[0];

    /// <inheritdoc />
    /// <remarks>See the class remarks for the trees and their cost. A request with no context yet (an empty prompt and
    /// nothing observed), a budget of 0, or a context past <see cref="DraftModelOptions.MaxContext"/> gets
    /// <see cref="DraftTree.Empty"/> (and a budget of 0 leaves its pending tokens for the next proposal). The
    /// distributions of the requests' previous sampled drafts are released.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public IReadOnlyList<DraftTree> ProposeBatch(IReadOnlyList<DraftQuery> queries)
    {
        ArgumentNullException.ThrowIfNull(queries);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var states = new RequestState[queries.Count];
            var seen = new HashSet<RequestId>();
            for (int i = 0; i < queries.Count; i++)
            {
                DraftQuery query = queries[i];
                if ((uint)query.MaxTokens > (uint)_maxBudget)
                {
                    throw new ArgumentOutOfRangeException(nameof(queries), query.MaxTokens,
                        $"{Name}: request {query.Request} asks for {query.MaxTokens} tokens; budgets lie in 0 .. {_maxBudget} (MaxBudget).");
                }
                states[i] = GetState(query.Request);
                if (!seen.Add(query.Request))
                {
                    throw new ArgumentException($"{Name}: request {query.Request} appears twice in one batch; query each request once.", nameof(queries));
                }
            }
            foreach (RequestState state in states)
            {
                state.ReleaseDistributions();
            }
            var results = new DraftTree[queries.Count];
            Array.Fill(results, DraftTree.Empty);
            List<Job> jobs = PlanJobs(queries, states);
            if (jobs.Count > 0)
            {
                RunJobs(jobs, results);
            }
            return results;
        }
    }

    /// <inheritdoc />
    /// <remarks>The tokens become pending: the next proposal feeds them. Releases the distributions of the request's
    /// last sampled draft.</remarks>
    /// <exception cref="ArgumentException">A token is negative or outside both vocabularies.</exception>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            RequestState state = GetState(request);
            CheckTokens(emitted, nameof(emitted));
            state.ReleaseDistributions();
            Append(state, emitted);
        }
    }

    /// <inheritdoc />
    /// <remarks>Frees the request's KV-cache slot (its length goes to 0); nothing is kept across requests.</remarks>
    /// <exception cref="ObjectDisposedException">The drafter was disposed.</exception>
    public void EndRequest(RequestId request)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_requests.Remove(request, out RequestState? state))
            {
                throw new UnknownRequestException(request, Name);
            }
            state.ReleaseDistributions();
            _model.Truncate(state.Slot, 0);
            _freeSlots.Add(state.Slot);
        }
    }

    /// <summary>Ends every request and frees the model and its cache; calls other than this one then throw
    /// <see cref="ObjectDisposedException"/>. Calling it again does nothing.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            foreach (RequestState state in _requests.Values)
            {
                state.ReleaseDistributions();
            }
            _requests.Clear();
            _model.Dispose();
        }
    }

    /// <summary>The slot and cached length of an active request, and its pending tokens (for tests).</summary>
    internal (int Slot, int Cached, int Pending) Inspect(RequestId request)
    {
        lock (_gate)
        {
            RequestState state = GetState(request);
            return (state.Slot, _model.CachedLength(state.Slot), state.Pending.Count);
        }
    }

    private RequestState GetState(RequestId request) =>
        _requests.TryGetValue(request, out RequestState? state) ? state : throw new UnknownRequestException(request, Name);

    private void CheckTokens(ReadOnlySpan<int> tokens, string paramName)
    {
        int limit = Math.Max(_model.Config.VocabSize, _targetVocab);
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)limit)
            {
                throw new ArgumentException(
                    $"{Name}: token {i} is {tokens[i]}, outside the vocabulary (0 .. {limit - 1}); was it made by another model's tokenizer?", paramName);
            }
        }
    }

    /// <summary>Appends context tokens to a request's pending tokens; ids past the draft's vocabulary become 0 (see
    /// <see cref="EnsureSameVocabulary"/>).</summary>
    private void Append(RequestState state, ReadOnlySpan<int> tokens)
    {
        int vocab = _model.Config.VocabSize;
        foreach (int token in tokens)
        {
            state.Pending.Add(token < vocab ? token : 0);
        }
    }

    /// <summary>The requests that draft this time, with their depth and beam: greedy first, then sampled ones grouped
    /// by their settings (so that one warping serves each group).</summary>
    private List<Job> PlanJobs(IReadOnlyList<DraftQuery> queries, RequestState[] states)
    {
        var jobs = new List<Job>();
        for (int i = 0; i < queries.Count; i++)
        {
            RequestState state = states[i];
            int budget = queries[i].MaxTokens;
            int cached = _model.CachedLength(state.Slot), pending = state.Pending.Count;
            if (budget == 0 || pending == 0 || cached + pending > _model.Capacity)
            {
                continue;
            }
            int beam = state.Sampler is null ? Math.Min(Options.Beam, budget) : 1;
            int depth = Math.Min(Math.Min(Options.MaxDepth, budget), 1 + (_model.Capacity - cached - pending) / beam);
            jobs.Add(new Job(i, state, budget, depth, beam));
        }
        return jobs.OrderBy(j => j.State.Sampler is null ? 0 : 1)
            .ThenBy(j => j.State.Sampler?.Temperature ?? 0).ThenBy(j => j.State.Sampler?.TopK ?? 0).ThenBy(j => j.State.Sampler?.TopP ?? 0)
            .ThenBy(j => j.Index)
            .ToList();
    }

    /// <summary>Benchmarks on random weights: cache new prompts by setting the slot's length instead of running the
    /// prefill forwards (as <see cref="SpeculativeEngineOptions.SkipPrefillForBenchmark"/> does for the target).</summary>
    internal bool SkipPrefillForBenchmark { get; set; }

    private void RunJobs(List<Job> jobs, DraftTree[] results)
    {
        // Long pending stretches (new prompts): cache all but their last token first, all requests in the same forwards.
        var prefill = jobs.Where(j => j.State.Pending.Count > ChainFeedLimit)
            .Select(j => (j.State.Slot, j.State.Pending.GetRange(0, j.State.Pending.Count - 1).ToArray()))
            .ToList();
        if (prefill.Count > 0)
        {
            if (SkipPrefillForBenchmark)
            {
                foreach ((int slot, int[] tokens) in prefill)
                {
                    _model.SetLengthForBenchmark(slot, _model.CachedLength(slot) + tokens.Length);
                }
            }
            else
            {
                _model.Prefill(prefill);
            }
            foreach (Job job in jobs.Where(j => j.State.Pending.Count > ChainFeedLimit))
            {
                job.State.Pending.RemoveRange(0, job.State.Pending.Count - 1);
            }
        }

        var kept = new List<Tensor>(); // sampled distributions of every depth, until they are gathered per request
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            // Depth 0: each request's pending tokens as a chain from the root; the draft's prediction after the last one.
            var inputs = new List<DraftRows>(jobs.Count);
            var rows = new List<(int Slot, int Row)>(jobs.Count);
            foreach (Job job in jobs)
            {
                List<int> pending = job.State.Pending;
                int p = pending.Count;
                inputs.Add(new DraftRows(job.State.Slot, 0, Enumerable.Range(-1, p).ToArray(), pending.ToArray(), Enumerable.Range(0, p).ToArray()));
                rows.Add((job.State.Slot, p - 1));
                job.Frontier.Add(-1);
            }
            bool committed = false;
            while (true)
            {
                double[] table = Expand(inputs, rows, jobs, kept, out int k);
                if (!committed)
                {
                    // The chains are context now: their entries already sit at their final positions. The last token
                    // stays pending, as the root of the next proposal (so that proposing again without new tokens
                    // drafts again); its entry stays as region entry 0, the parent of the depth-1 nodes.
                    foreach (Job job in jobs)
                    {
                        int fed = job.State.Pending.Count;
                        _model.CommitDraftRegion(job.State.Slot, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(job.State.Pending)[..(fed - 1)]);
                        job.State.Pending.RemoveRange(0, fed - 1);
                        job.RegionParents.Add(-1);
                        job.RegionTokens.Add(job.State.Pending[0]);
                    }
                    committed = true;
                }
                int row = 0;
                foreach (Job job in jobs)
                {
                    row = job.Grow(table, row, k, Options.KeepGreedyPath);
                }
                inputs.Clear();
                rows.Clear();
                foreach (Job job in jobs)
                {
                    if (job.Frontier.Count == 0)
                    {
                        continue;
                    }
                    int before = job.RegionParents.Count;
                    var tokens = new int[job.Frontier.Count];
                    var offsets = new int[job.Frontier.Count];
                    for (int f = 0; f < job.Frontier.Count; f++)
                    {
                        Node node = job.Pool[job.Frontier[f]];
                        node.Entry = job.RegionParents.Count;
                        job.RegionParents.Add(node.Parent < 0 ? 0 : job.Pool[node.Parent].Entry);
                        job.RegionTokens.Add(node.Token);
                        tokens[f] = node.Token;
                        offsets[f] = node.Depth;
                        rows.Add((job.State.Slot, f));
                    }
                    inputs.Add(new DraftRows(job.State.Slot, before, job.RegionParents.ToArray(), tokens, offsets, job.RegionTokens.GetRange(0, before).ToArray()));
                }
                if (inputs.Count == 0)
                {
                    break;
                }
            }
            foreach (Job job in jobs)
            {
                results[job.Index] = job.State.Sampler is null ? job.SelectTree(Options.KeepGreedyPath) : job.ChainAndRegister(kept);
            }
        }
        finally
        {
            foreach (Tensor tensor in kept)
            {
                tensor.Dispose();
            }
        }
    }

    /// <summary>
    /// One draft forward and its expansion on the device. Greedy rows (first in <paramref name="rows"/>) give their
    /// top-k probabilities and ids; sampled rows draw one token from their warped distribution, kept in
    /// <paramref name="kept"/>. Returns the one host copy: per row 2k doubles, the k probabilities then the k ids
    /// (sampled rows: the drawn token's probability at 0 and the token at k).
    /// </summary>
    private double[] Expand(List<DraftRows> inputs, List<(int Slot, int Row)> rows, List<Job> jobs, List<Tensor> kept, out int k)
    {
        using var scope = NewDisposeScope();
        int draftVocab = _model.Config.VocabSize;
        int vocab = Math.Min(draftVocab, _targetVocab); // never propose an id the target does not have
        k = Math.Min(Options.TopK, vocab);
        Tensor logits = _model.DraftLogits(inputs, rows);
        Tensor z = vocab < draftVocab ? logits.narrow(1, 0, vocab) : logits;
        int greedyRows = jobs.Where(j => j.State.Sampler is null).Sum(j => j.Frontier.Count);
        var parts = new List<Tensor>();
        if (greedyRows > 0)
        {
            Tensor probabilities = z.narrow(0, 0, greedyRows).to(ScalarType.Float32).softmax(-1);
            (Tensor values, Tensor indices) = probabilities.topk(k, 1, largest: true, sorted: true);
            parts.Add(cat([values.to(ScalarType.Float64), indices.to(ScalarType.Float64)], 1));
        }
        int row = greedyRows;
        var sampledJobs = jobs.Where(j => j.State.Sampler is not null && j.Frontier.Count > 0).ToList();
        for (int from = 0; from < sampledJobs.Count;)
        {
            Sampler settings = sampledJobs[from].State.Sampler!;
            int to = from + 1;
            while (to < sampledJobs.Count && settings.SameWarping(sampledJobs[to].State.Sampler!))
            {
                to++;
            }
            int count = to - from;
            var uniforms = new float[count];
            for (int i = 0; i < count; i++)
            {
                uniforms[i] = sampledJobs[from + i].State.Sampler!.NextUniform();
            }
            Tensor q = SamplingTreeVerifier.TargetProbabilities(z.narrow(0, row, count), settings.Temperature, settings.TopK, settings.TopP);
            // Inverse-CDF sampling: the first token whose cumulative probability passes u × total. A token of
            // probability 0 never passes (the cumulative sum does not rise there); the clamp to the last token that
            // raises the sum covers u × total rounding up to the total.
            Tensor cdf = q.cumsum(1);
            Tensor threshold = tensor(uniforms).to(z.device).view(count, 1) * cdf.narrow(1, vocab - 1, 1);
            Tensor token = searchsorted(cdf, threshold, right: true).minimum(cdf.argmax(1, keepdim: true));
            Tensor chosen = q.gather(1, token);
            Tensor padding = zeros([count, k - 1], ScalarType.Float64, z.device);
            parts.Add(cat([chosen.to(ScalarType.Float64), padding, token.to(ScalarType.Float64), padding], 1));
            Tensor full = vocab < _targetVocab ? nn.functional.pad(q, [0, _targetVocab - vocab]) : q;
            full = full.contiguous().DetachFromDisposeScope();
            kept.Add(full);
            for (int i = 0; i < count; i++)
            {
                sampledJobs[from + i].Sampled.Add((full, i));
            }
            row += count;
            from = to;
        }
        using Tensor host = cat(parts, 0).cpu(); // the forward's one synchronisation
        return host.data<double>().ToArray();
    }

    /// <summary>One request's sampling settings and its own random stream (SplitMix64).</summary>
    private sealed class Sampler
    {
        private ulong _state;

        public Sampler(SamplingOptions options)
        {
            Temperature = options.Temperature;
            TopK = options.TopK;
            TopP = options.TopP;
            // Mixed, so that the drafter's stream differs from a verifier seeded with the same value.
            _state = options.Seed is long seed ? unchecked((ulong)seed ^ 0x5DEECE66DUL * 0x9E3779B97F4A7C15UL) : (ulong)Random.Shared.NextInt64();
        }

        public float Temperature { get; }

        public int TopK { get; }

        public float TopP { get; }

        public bool SameWarping(Sampler other) => Temperature == other.Temperature && TopK == other.TopK && TopP == other.TopP;

        /// <summary>A uniform in [0, 1) with 24 bits.</summary>
        public float NextUniform()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 40) * (1f / (1 << 24));
        }
    }

    private sealed class RequestState(int slot, Sampler? sampler)
    {
        public int Slot { get; } = slot;

        public Sampler? Sampler { get; } = sampler;

        /// <summary>Context tokens not yet in the cache.</summary>
        public List<int> Pending { get; } = [];

        public DraftTree? LastSampled { get; set; }

        public Tensor? LastDistributions { get; set; }

        public void ReleaseDistributions()
        {
            if (LastSampled is not null)
            {
                DraftDistributions.Remove(LastSampled);
                LastSampled = null;
            }
            LastDistributions?.Dispose();
            LastDistributions = null;
        }
    }

    /// <summary>A draft candidate: a pool entry of one proposal.</summary>
    private sealed class Node(int token, int parent, int depth, double probability, bool greedyPath)
    {
        public int Token { get; } = token;

        /// <summary>Pool index of the parent; -1 for children of the root.</summary>
        public int Parent { get; } = parent;

        public int Depth { get; } = depth;

        /// <summary>Cumulative draft probability of the path to this node.</summary>
        public double Probability { get; } = probability;

        /// <summary>On the draft's argmax path from the root.</summary>
        public bool GreedyPath { get; } = greedyPath;

        /// <summary>Draft-region entry once fed; -1 before.</summary>
        public int Entry { get; set; } = -1;

        public int FirstChild { get; set; } = -1;

        public int ChildCount { get; set; }
    }

    /// <summary>One request's proposal in progress.</summary>
    private sealed class Job(int index, RequestState state, int budget, int depthLimit, int beam)
    {
        public int Index { get; } = index;

        public RequestState State { get; } = state;

        public int Budget { get; } = budget;

        public int DepthLimit { get; } = depthLimit;

        public int Beam { get; } = beam;

        public List<Node> Pool { get; } = [];

        /// <summary>The nodes fed in the current forward, in row order (-1: the root, i.e. the last pending token).</summary>
        public List<int> Frontier { get; } = [];

        /// <summary>Parent entry of every draft-region entry after the first forward: entry 0 is the root (the last
        /// context token, whose parent is the cached prefix, -1), then the fed nodes.</summary>
        public List<int> RegionParents { get; } = [];

        /// <summary>The token of every draft-region entry, beside <see cref="RegionParents"/> (a kernel forward feeds the
        /// region's earlier entries again; <see cref="DraftRows.RegionTokens"/>).</summary>
        public List<int> RegionTokens { get; } = [];

        /// <summary>Sampled requests: the distribution each chain token was drawn from (tensor, row).</summary>
        public List<(Tensor Rows, int Row)> Sampled { get; } = [];

        private int _rootFirst = -1, _rootCount;

        /// <summary>Adds the children of this job's rows from the forward's table (starting at <paramref name="row"/>)
        /// and chooses the next frontier; returns the next job's first row.</summary>
        public int Grow(double[] table, int row, int k, bool keepGreedy)
        {
            int stride = 2 * k;
            int first = Pool.Count;
            int fed = Frontier.Count;
            bool sampled = State.Sampler is not null;
            foreach (int parent in Frontier)
            {
                Node? p = parent < 0 ? null : Pool[parent];
                int depth = (p?.Depth ?? 0) + 1;
                double probability = p?.Probability ?? 1.0;
                bool greedyParent = p?.GreedyPath ?? true;
                int at = row++ * stride;
                int children = sampled ? 1 : k;
                int start = Pool.Count;
                for (int c = 0; c < children; c++)
                {
                    Pool.Add(new Node((int)table[at + k + c], parent, depth, probability * table[at + c], greedyParent && c == 0));
                }
                if (p is null)
                {
                    (_rootFirst, _rootCount) = (start, children);
                }
                else
                {
                    (p.FirstChild, p.ChildCount) = (start, children);
                }
            }
            Frontier.Clear();
            if (fed == 0 || Pool.Count == first || Pool[first].Depth >= DepthLimit)
            {
                return row;
            }
            // The next frontier: the Beam most probable new candidates (ties: earlier first), the greedy path's always.
            var order = Enumerable.Range(first, Pool.Count - first)
                .OrderByDescending(i => Pool[i].Probability).ThenBy(i => i).ToList();
            var chosen = order.Take(Beam).ToList();
            if (keepGreedy && !sampled)
            {
                int greedy = order.FindIndex(i => Pool[i].GreedyPath);
                if (greedy >= Beam)
                {
                    chosen[^1] = order[greedy];
                }
            }
            chosen.Sort();
            Frontier.AddRange(chosen);
            return row;
        }

        /// <summary>The budget's most probable candidates, grown best-first from the root (the greedy path first when
        /// kept), in the order taken: parents before children.</summary>
        public DraftTree SelectTree(bool keepGreedy)
        {
            if (_rootCount == 0)
            {
                return DraftTree.Empty;
            }
            var queue = new PriorityQueue<int, (int, double, int)>();
            void Push(int first, int count)
            {
                for (int i = first; i < first + count; i++)
                {
                    queue.Enqueue(i, (keepGreedy && Pool[i].GreedyPath ? 0 : 1, -Pool[i].Probability, i));
                }
            }
            Push(_rootFirst, _rootCount);
            var taken = new List<int>(Budget);
            var position = new Dictionary<int, int>(Budget);
            while (taken.Count < Budget && queue.TryDequeue(out int node, out _))
            {
                position[node] = taken.Count;
                taken.Add(node);
                if (Pool[node].FirstChild >= 0)
                {
                    Push(Pool[node].FirstChild, Pool[node].ChildCount);
                }
            }
            var tokens = new int[taken.Count];
            var parents = new int[taken.Count];
            var probabilities = new float[taken.Count];
            for (int i = 0; i < taken.Count; i++)
            {
                Node node = Pool[taken[i]];
                tokens[i] = node.Token;
                parents[i] = node.Parent < 0 ? -1 : position[node.Parent];
                probabilities[i] = (float)Math.Clamp(node.Probability, 0.0, 1.0);
            }
            return DraftTree.Create(tokens, parents, probabilities, Budget);
        }

        /// <summary>The sampled chain, with its distributions [r, V] registered for the verifier.</summary>
        public DraftTree ChainAndRegister(List<Tensor> kept)
        {
            if (Pool.Count == 0)
            {
                return DraftTree.Empty;
            }
            int[] tokens = Pool.Select(n => n.Token).ToArray();
            float[] probabilities = Pool.Select(n => (float)Math.Clamp(n.Probability, 0.0, 1.0)).ToArray();
            DraftTree chain = DraftTree.Chain(tokens, probabilities);
            Tensor distributions;
            using (var scope = NewDisposeScope())
            {
                distributions = cat(Sampled.Select(s => s.Rows.narrow(0, s.Row, 1)).ToList(), 0).DetachFromDisposeScope();
            }
            DraftDistributions.Register(chain, distributions);
            State.LastSampled = chain;
            State.LastDistributions = distributions;
            return chain;
        }
    }
}
