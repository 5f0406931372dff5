namespace SpecDecode.Replay;

/// <summary>How <see cref="ReplayDriver"/> replays: the budget per step and how to read the drafter's memory.</summary>
public sealed record ReplaySettings
{
    /// <summary>Draft tokens (tree nodes) the drafter may propose per step; 0 turns drafting off.</summary>
    public int Budget { get; init; } = 32;

    /// <summary>A label for reports, e.g. <c>suffix</c>; null for the drafter's <see cref="IDrafter.Name"/>.</summary>
    public string? Label { get; init; }

    /// <summary>Reads the drafter's own memory estimate in bytes at the end; null when the drafter has none.</summary>
    public Func<long>? DrafterMemoryBytes { get; init; }

    /// <summary>Measure the managed heap before and after the replay (two forced full collections; adds ~0.1 s).</summary>
    public bool MeasureHeap { get; init; } = true;
}
