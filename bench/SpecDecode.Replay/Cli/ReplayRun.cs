namespace SpecDecode.Replay;

/// <summary>Everything one invocation of the command asks for.</summary>
public sealed record ReplayRun
{
    /// <summary>The trace file; null for the default beside the repository.</summary>
    public string? Traces { get; init; }

    /// <summary>Drafter names, in run order.</summary>
    public IReadOnlyList<string> Drafters { get; init; } = DrafterFactory.Names;

    /// <summary>Which trajectories to replay.</summary>
    public TraceSelection Selection { get; init; } = TraceSelection.All;

    /// <summary>Budgets, in run order; each drafter runs once per budget with a fresh cache.</summary>
    public IReadOnlyList<int> Budgets { get; init; } = [32];

    /// <summary>Drafter settings.</summary>
    public DrafterSettings DrafterSettings { get; init; } = new();

    /// <summary>JSON output path; null for the default.</summary>
    public string? OutputPath { get; init; }

    /// <summary>PNG plot path; null for the default.</summary>
    public string? PlotPath { get; init; }

    /// <summary>Skip bad lines (counted and reported) instead of failing.</summary>
    public bool SkipBad { get; init; }

    /// <summary>The first problem with the arguments, or null when they are fine.</summary>
    public string? Validate()
    {
        if (Drafters.Count == 0)
        {
            return "Name at least one --drafter.";
        }
        foreach (string d in Drafters)
        {
            if (!DrafterFactory.Names.Contains(d))
            {
                return $"Unknown drafter '{d}'; known: {string.Join(", ", DrafterFactory.Names)}.";
            }
        }
        if (Selection.First is <= 0)
        {
            return "--first must be at least 1.";
        }
        if (Budgets.Count == 0 || Budgets.Any(b => b < 0))
        {
            return "--budget must be one or more integers >= 0.";
        }
        DrafterSettings s = DrafterSettings;
        if (s.Depth <= 0)
        {
            return "--depth must be at least 1.";
        }
        if (!float.IsFinite(s.Factor) || s.Factor < 0)
        {
            return "--factor must be a finite number >= 0.";
        }
        if (!float.IsFinite(s.Offset))
        {
            return "--offset must be a finite number.";
        }
        if (!(s.MinProbability >= 0 && s.MinProbability <= 1))
        {
            return "--min-prob must lie in [0, 1].";
        }
        if (!(s.CalibratedThreshold >= 0 && s.CalibratedThreshold < 1))
        {
            return "--calibrated must lie in [0, 1): 0 turns calibration off.";
        }
        if (s.MergeCandidates && s.CalibratedThreshold == 0)
        {
            return "--merge needs --calibrated (a threshold above 0).";
        }
        if (s.MaxCachedResponses < -1 || s.MaxCachedTokens < -1)
        {
            return "--max-cached-responses and --max-cached-tokens must be -1 (unbounded) or >= 0.";
        }
        if (s.NgramMin < 1 || s.NgramMax < s.NgramMin)
        {
            return "--ngram-min must be at least 1 and --ngram-max at least --ngram-min.";
        }
        return null;
    }
}
