using System.Text.Json;

namespace SpecDecode.Router.Tests;

/// <summary>Finding the conversation and ranking replicas, without processes.</summary>
public sealed class RoutingTests
{
    private static string? Key(string json, int first = 2) => ConversationKey.FromMessages(JsonDocument.Parse(json).RootElement, first);

    [Fact]
    public void The_first_messages_name_the_conversation_whatever_follows()
    {
        const string call1 = """{"model":"m","messages":[{"role":"system","content":"You are an agent."},{"role":"user","content":"Fix bug 42"}]}""";
        const string call2 = """{"model":"m","messages":[{"role":"system","content":"You are an agent."},{"role":"user","content":"Fix bug 42"},{"role":"assistant","content":"ls"},{"role":"user","content":"a.py"}]}""";
        const string other = """{"model":"m","messages":[{"role":"system","content":"You are an agent."},{"role":"user","content":"Fix bug 43"}]}""";
        Assert.NotNull(Key(call1));
        Assert.Equal(Key(call1), Key(call2));
        Assert.NotEqual(Key(call1), Key(other));
        Assert.Equal(Key(call1, 1), Key(other, 1));            // same system prompt only
        Assert.Null(Key("""{"model":"m"}"""));
        Assert.Null(Key("""{"messages":[]}"""));
        Assert.Null(Key("[1,2]"));
    }

    /// <summary>A body without a Content-Length (chunked, as PostAsJsonAsync sends) past MaxBodyBytes is routed without a
    /// key and forwarded whole; one within it is keyed as a sized body is. Both can be read again from the start.</summary>
    [Fact]
    public async Task A_chunked_body_past_the_limit_is_routed_without_a_key_and_kept_whole()
    {
        const string json = """{"model":"m","messages":[{"role":"system","content":"You are an agent."},{"role":"user","content":"Fix bug 42"}]}""";
        async Task<(string? Key, string Forwarded)> Find(int maxBodyBytes)
        {
            var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
            context.Request.Method = "POST";
            context.Request.ContentType = "application/json";
            // no ContentLength, and not seekable: a request body as Kestrel gives it
            context.Request.Body = new ForwardOnlyStream(System.Text.Encoding.UTF8.GetBytes(json));
            string? key = await ConversationKey.FindAsync(context.Request, new RouterOptions { MaxBodyBytes = maxBodyBytes });
            using var reader = new StreamReader(context.Request.Body);
            return (key, await reader.ReadToEndAsync());
        }
        (string? small, string smallBody) = await Find(maxBodyBytes: 20);
        Assert.Null(small);
        Assert.Equal(json, smallBody);
        (string? large, string largeBody) = await Find(maxBodyBytes: 1 << 20);
        Assert.Equal(Key(json), large);
        Assert.Equal(json, largeBody);
    }

    [Fact]
    public void Rendezvous_hashing_moves_only_the_dead_replicas_conversations()
    {
        string[] replicas = ["replica-0", "replica-1", "replica-2", "replica-3"];
        string[] conversations = Enumerable.Range(0, 2000).Select(i => "h:task-" + i).ToArray();
        Dictionary<string, string> before = conversations.ToDictionary(c => c, c => ConversationLoadBalancingPolicy.Pick(c, replicas, r => r));
        // Spread: every replica gets a fair share.
        Assert.All(replicas, r => Assert.InRange(before.Values.Count(v => v == r), 400, 600));

        string[] alive = replicas.Where(r => r != "replica-2").ToArray();
        int moved = 0;
        foreach (string c in conversations)
        {
            string after = ConversationLoadBalancingPolicy.Pick(c, alive, r => r);
            if (before[c] == "replica-2")
            {
                moved++;
            }
            else
            {
                Assert.Equal(before[c], after);
            }
        }
        Assert.Equal(before.Values.Count(v => v == "replica-2"), moved);
        // Order of the candidates does not matter.
        Assert.All(conversations.Take(100), c => Assert.Equal(before[c], ConversationLoadBalancingPolicy.Pick(c, replicas.Reverse().ToArray(), r => r)));
    }

    [Fact]
    public void Settings_that_cannot_work_are_refused_with_what_to_set()
    {
        Assert.Contains("--replica http://", Assert.Throws<RouterConfigurationException>(() => new RouterOptions().Validate()).Message);
        Assert.Throws<RouterConfigurationException>(() => new RouterOptions { Replicas = ["127.0.0.1:5000"] }.Validate());
        Assert.Throws<RouterConfigurationException>(() => new RouterOptions { Replicas = ["http://a"], MaxAttempts = 0 }.Validate());
        new RouterOptions { Replicas = ["http://127.0.0.1:5000/"] }.Validate();
    }

    /// <summary>A stream read once from the start, like a request body off the wire.</summary>
    private sealed class ForwardOnlyStream(byte[] data) : Stream
    {
        private readonly MemoryStream _inner = new(data);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
