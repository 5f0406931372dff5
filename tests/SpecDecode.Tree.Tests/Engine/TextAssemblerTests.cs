namespace SpecDecode.Tree.Tests;

/// <summary>Incremental detokenization and stop strings, token by token.</summary>
public sealed class TextAssemblerTests
{
    private static int[] Bytes(string s) => System.Text.Encoding.UTF8.GetBytes(s).Select(b => (int)b).ToArray();

    [Fact]
    public void MultiByteCharacters_AreNeverSplitAcrossReleases()
    {
        const string text = "héllo wörld 🙂 ok";
        var assembler = new TextAssembler(ByteTokenizer.Instance, []);
        var pieces = new List<string>();
        foreach (int id in Bytes(text))
        {
            pieces.Add(assembler.Append([id]));
        }
        pieces.Add(assembler.Flush());
        Assert.Equal(text, string.Concat(pieces));
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Contains(pieces, p => p == "é");   // released whole once its second byte came
    }

    [Theory]
    [InlineData("abc STOP def", "STOP", "abc ")]
    [InlineData("abc STOP def", "P d", "abc STO")]
    [InlineData("xxSTxxSTOP", "STOP", "xxSTxx")]
    [InlineData("no stop here", "STOP", "no stop here")]
    public void StopStrings_SpanningTokens_CutTheTextAndAreNeverReleased(string text, string stop, string expected)
    {
        var assembler = new TextAssembler(ByteTokenizer.Instance, [stop, "NEVER-MATCHES"]);
        var released = new System.Text.StringBuilder();
        foreach (int id in Bytes(text))
        {
            released.Append(assembler.Append([id]));
            Assert.DoesNotContain(stop, released.ToString());
        }
        released.Append(assembler.Flush());
        Assert.Equal(expected, released.ToString());
        Assert.Equal(expected, assembler.Text);
        Assert.Equal(text != expected, assembler.Stopped);
    }

    [Fact]
    public void SeveralTokensAtOnce_ReleaseAsMuchAsIsSafe()
    {
        var assembler = new TextAssembler(ByteTokenizer.Instance, ["END"]);
        Assert.Equal("hello w", assembler.Append(Bytes("hello wor")));   // the last 2 characters wait: they could begin "END"
        Assert.Equal("or", assembler.Append(Bytes("ld")));
        Assert.Equal("ld", assembler.Flush());
    }
}
