using SpecDecode.Replay;

namespace SpecDecode.Benchmarks;

/// <summary>The first trajectories of the shared SWE-bench traces, tokenized once per process per the replay protocol.</summary>
public static class TraceData
{
    private static readonly Lazy<TraceTrajectory[]> s_trajectories = new(Load);

    /// <summary>How many trajectories the benchmarks use.</summary>
    public const int Trajectories = 30;

    /// <summary>The loaded trajectories, in file order.</summary>
    public static TraceTrajectory[] Load(int count = Trajectories) => count == Trajectories ? s_trajectories.Value : Read(count);

    private static TraceTrajectory[] Load() => Read(Trajectories);

    private static TraceTrajectory[] Read(int count)
    {
        string path = Path.Combine(RepoRoot.Find(), RepoRoot.DefaultTracesRelative);
        TraceReader reader = TraceReader.Open(path, ProtocolTokenizer.CreateO200kBase(), new TraceSelection { First = count });
        return reader.Read().ToArray();
    }
}
