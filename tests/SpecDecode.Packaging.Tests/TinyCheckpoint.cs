namespace SpecDecode.Packaging.Tests;

/// <summary>A temp copy of ../shared/fixtures/hf-tiny/llama-gqa with the synthetic byte-level tokenizer of
/// <see cref="SpecDecode.Tests.Shared.TinyCheckpointFiles"/> (shared with SpecDecode.Generate.Tests).</summary>
internal static class TinyCheckpoint
{
    /// <summary>Writes the checkpoint with its tokenizer into <paramref name="folder"/> (created).</summary>
    public static void Write(string repositoryRoot, string folder)
    {
        SpecDecode.Tests.Shared.TinyCheckpointFiles.CopyFixture(repositoryRoot, folder);
        SpecDecode.Tests.Shared.TinyCheckpointFiles.WriteTokenizer(folder);
    }
}
