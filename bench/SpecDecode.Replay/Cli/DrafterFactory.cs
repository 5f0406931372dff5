using SpecDecode.Suffix;

namespace SpecDecode.Replay;

/// <summary>A drafter made by <see cref="DrafterFactory"/>, with its report label and memory probe.</summary>
/// <param name="Drafter">The drafter (the caller disposes it).</param>
/// <param name="Label">The name it is reported under.</param>
/// <param name="MemoryBytes">Reads the drafter's own memory estimate; null when it exposes none.</param>
public sealed record DrafterHandle(IDrafter Drafter, string Label, Func<long>? MemoryBytes);

/// <summary>Maps the command line's drafter names onto the drafters of SpecDecode.Suffix.</summary>
public static class DrafterFactory
{
    /// <summary>The suffix-tree drafter (SuffixDecoding).</summary>
    public const string Suffix = "suffix";

    /// <summary>The suffix drafter with calibrated, merged drafts (SpecDecode's own; see docs/suffix-tree.md).</summary>
    public const string SuffixCalibrated = "suffix-calibrated";

    /// <summary>Calibrated threshold used by <see cref="SuffixCalibrated"/> unless <c>--calibrated</c> gives one.</summary>
    public const float DefaultCalibratedThreshold = 0.11f;

    /// <summary>The prompt-lookup (n-gram) drafter.</summary>
    public const string PromptLookup = "prompt-lookup";

    /// <summary>Every name <see cref="Create"/> knows.</summary>
    public static IReadOnlyList<string> Names { get; } = [Suffix, SuffixCalibrated, PromptLookup];

    /// <summary>Creates a fresh drafter (empty caches) for <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">The name is unknown.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of the drafter's range.</exception>
    public static DrafterHandle Create(string name, DrafterSettings settings)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(settings);
        return name switch
        {
            Suffix => CreateSuffix(settings),
            SuffixCalibrated => CreateSuffix(settings with
            {
                CalibratedThreshold = settings.CalibratedThreshold > 0 ? settings.CalibratedThreshold : DefaultCalibratedThreshold,
                MergeCandidates = true,
            }),
            PromptLookup => CreatePromptLookup(settings),
            _ => throw new ArgumentException($"Unknown drafter '{name}'; known: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    private static DrafterHandle CreateSuffix(DrafterSettings settings)
    {
        var drafter = new SuffixDrafter(new SuffixDrafterOptions
        {
            MaxDepth = settings.Depth,
            MaxSpecFactor = settings.Factor,
            MaxSpecOffset = settings.Offset,
            MinTokenProbability = settings.MinProbability,
            UseTree = settings.Mode == DraftMode.Tree,
            CalibratedThreshold = settings.CalibratedThreshold,
            MergeCandidates = settings.MergeCandidates,
            MaxCachedResponses = settings.MaxCachedResponses,
            MaxCachedTokens = settings.MaxCachedTokens,
            MaxCachedConversations = settings.MaxCachedConversations,
        });
        // The label is the drafter's own name: "suffix" for path drafts, "suffix-tree" for tree drafts.
        return new DrafterHandle(drafter, drafter.Name, drafter.EstimateMemoryBytes);
    }

    private static DrafterHandle CreatePromptLookup(DrafterSettings settings)
    {
        var drafter = new PromptLookupDrafter(new PromptLookupDrafterOptions { MinNgram = settings.NgramMin, MaxNgram = settings.NgramMax });
        return new DrafterHandle(drafter, PromptLookup, drafter.EstimateMemoryBytes);
    }
}
