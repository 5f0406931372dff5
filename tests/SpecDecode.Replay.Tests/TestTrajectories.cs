namespace SpecDecode.Replay.Tests;

/// <summary>Hand-made trajectories for driver tests, built like the reader builds them (one token array per trajectory).</summary>
internal static class TestTrajectories
{
    /// <summary>
    /// A trajectory whose call k has prompt = everything before it and response <paramref name="responses"/>[k];
    /// <paramref name="between"/>[k] tokens come after the first prompt piece (k = 0) or after response k - 1.
    /// </summary>
    public static TraceTrajectory Make(string taskId, int[][] between, int[][] responses, long line = 1)
    {
        Assert.Equal(between.Length, responses.Length);
        var tokens = new List<int>();
        var spans = new List<(int Prompt, int Response)>();
        for (int k = 0; k < responses.Length; k++)
        {
            tokens.AddRange(between[k]);
            spans.Add((tokens.Count, responses[k].Length));
            tokens.AddRange(responses[k]);
        }
        int[] array = tokens.ToArray();
        TraceCall[] calls = spans.Select((s, k) => new TraceCall(k, array, s.Prompt, s.Response)).ToArray();
        return new TraceTrajectory(taskId, resolved: false, line, array, calls);
    }

    /// <summary>Deterministic pseudo-random tokens in [0, vocabulary).</summary>
    public static int[] Random(int seed, int length, int vocabulary = 50)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => rng.Next(vocabulary)).ToArray();
    }
}
