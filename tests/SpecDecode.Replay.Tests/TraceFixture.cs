namespace SpecDecode.Replay.Tests;

/// <summary>The real SWE-bench trace beside the repository (../shared/data/swebench); tests fail, never skip, without it.</summary>
internal static class TraceFixture
{
    public static string Path
    {
        get
        {
            string path = RepoRoot.DefaultTraces();
            if (!File.Exists(path))
            {
                Assert.Fail($"The trace fixture {path} is missing: these tests need ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz beside the repository root.");
            }
            return path;
        }
    }

    private static readonly Lazy<ProtocolTokenizer> SharedTokenizer = new(ProtocolTokenizer.CreateO200kBase);

    /// <summary>One tokenizer for the whole test run (creating one takes ~0.2 s). Not thread-safe: lock on it.</summary>
    public static ProtocolTokenizer Tokenizer => SharedTokenizer.Value;
}
