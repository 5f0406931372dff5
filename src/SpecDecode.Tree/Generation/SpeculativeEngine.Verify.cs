using static TorchSharp.torch;

namespace SpecDecode.Tree;

public sealed partial class SpeculativeEngine
{
    private static readonly SamplingOptions Greedy = new() { Temperature = 0 };

    // Views of model drafts' distributions made for pruned trees; disposed after the step's verification.
    private readonly List<(DraftTree Tree, Tensor View)> _prunedDistributions = [];

    /// <summary>One verification forward for the whole batch: greedy acceptance on the device when every request is greedy,
    /// multi-step speculative sampling otherwise (greedy requests then get exact greedy acceptance within the same step;
    /// each sampled request draws from its own random stream). Benchmark requests with recorded responses decide by
    /// them instead, after the same greedy or sampled work.</summary>
    private VerifiedStep[] Verify(EngineRequest[] batch, TreeInput[] inputs)
    {
        try
        {
            int[][]? forced = batch.Any(r => r.Forced is not null)
                ? batch.Select(r => r.Forced is { } f ? f[(int)Math.Min(r.Emitted, f.Length)..] : []).ToArray()
                : null;
            if (batch.All(r => r.IsGreedy))
            {
                return forced is null ? _model.VerifyGreedy(inputs) : _model.VerifyForced(inputs, forced);
            }
            var options = new SamplingOptions[inputs.Length];
            var distributions = new Tensor?[inputs.Length];
            for (int i = 0; i < inputs.Length; i++)
            {
                options[i] = batch[i].IsGreedy ? Greedy : batch[i].Sampling!;
                distributions[i] = DraftDistributions.TryGet(inputs[i].Draft, out Tensor? q) ? q : null;
            }
            return forced is null ? _model.VerifySampled(inputs, options, distributions) : _model.VerifySampledForced(inputs, options, distributions, forced);
        }
        finally
        {
            foreach ((DraftTree tree, Tensor view) in _prunedDistributions)
            {
                DraftDistributions.Remove(tree);
                view.Dispose();
            }
            _prunedDistributions.Clear();
        }
    }

    /// <summary>Keeps a model draft's distributions with its pruned tree. Sampled model drafts are chains, and a pruned
    /// chain is a prefix of it, whose distributions are the first rows.</summary>
    private void KeepDistributions(DraftTree original, DraftTree pruned)
    {
        if (ReferenceEquals(original, pruned) || pruned.IsEmpty || !DraftDistributions.TryGet(original, out Tensor? q))
        {
            return;
        }
        if (!original.IsChain)
        {
            throw new InvalidOperationException("Adaptive speculation pruned a sampled model draft that is not a chain; only chains carry distributions.");
        }
        Tensor view = q.narrow(0, 0, Math.Min(q.shape[0], pruned.Count));
        DraftDistributions.Register(pruned, view);
        _prunedDistributions.Add((pruned, view));
    }
}
