using Microsoft.ML.Tokenizers;

namespace SpecDecode.Replay.Tests;

public sealed class ProtocolTokenizerTests
{
    private static ProtocolTokenizer Tokenizer => TraceFixture.Tokenizer;

    [Theory]
    [InlineData(MessageRole.System)]
    [InlineData(MessageRole.User)]
    [InlineData(MessageRole.Assistant)]
    public void Header_is_the_chat_marker_tokenized_as_plain_text(MessageRole role)
    {
        lock (Tokenizer)
        {
            int[] header = Tokenizer.Header(role).ToArray();
            Assert.Equal(Tokenizer.Encode("<|im_start|>" + role.ToName() + "\n"), header);
            Assert.True(header.Length > 3, "<|im_start|> must become several ordinary tokens, not one special token.");
            Assert.All(header, id => Assert.True(id < 199_999, $"id {id} is in the special-token range"));
            Assert.Equal("<|im_start|>" + role.ToName() + "\n", Tokenizer.Decode(header));
        }
    }

    [Fact]
    public void Footer_is_plain_text()
    {
        lock (Tokenizer)
        {
            Assert.Equal(Tokenizer.Encode("<|im_end|>\n"), Tokenizer.FooterIds.ToArray());
            Assert.Equal("<|im_end|>\n", Tokenizer.Decode(Tokenizer.FooterIds));
        }
    }

    [Fact]
    public void Special_token_text_is_encoded_as_ordinary_text()
    {
        lock (Tokenizer)
        {
            int[] ids = Tokenizer.Encode("a <|endoftext|> b");
            Assert.DoesNotContain(199_999, ids);
            Assert.Equal("a <|endoftext|> b", Tokenizer.Decode(ids));
        }
    }

    [Theory]
    [InlineData("THOUGHT: Let me look at the file.\n\n```bash\ngrep -rn \"def separability_matrix\" astropy/ | head -20\n```")]
    [InlineData("  indented\r\n\ttabs and ünïcödé, 12345678 numbers; it's we'll they're")]
    [InlineData("")]
    public void Ordinary_text_gets_the_same_ids_as_gpt4o(string text)
    {
        TiktokenTokenizer gpt4o = TiktokenTokenizer.CreateForModel("gpt-4o");
        lock (Tokenizer)
        {
            Assert.Equal(gpt4o.EncodeToIds(text), Tokenizer.Encode(text));
        }
    }
}
