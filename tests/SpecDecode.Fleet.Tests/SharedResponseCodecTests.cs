using System.Buffers.Binary;

namespace SpecDecode.Fleet.Tests;

/// <summary>The wire format: round trips, and every kind of damage refused.</summary>
public sealed class SharedResponseCodecTests
{
    private static readonly FleetIdentity Identity = new("llama-3.1-8b@abc", "llama3");

    [Fact]
    public void Round_trips_ids_identity_and_tokens()
    {
        var response = new SharedResponse(Guid.NewGuid(), "replica-ü", Identity, [0, 1, 199_999, int.MaxValue]);
        byte[] data = SharedResponseCodec.Encode(response);
        Assert.Equal(4 + 1 + 16 + 6 + "replica-ü"u8.Length + Identity.Model.Length + Identity.Tokenizer.Length + 4 + 16, data.Length);
        Assert.True(SharedResponseCodec.TryDecode(data, out SharedResponse? back, out string? error), error);
        Assert.Equal(response.MessageId, back!.MessageId);
        Assert.Equal(response.Origin, back.Origin);
        Assert.Equal(Identity, back.Identity);
        Assert.Equal(response.Tokens, back.Tokens);
    }

    public static TheoryData<string, Func<byte[], byte[]>> Damage => new()
    {
        { "empty", _ => [] },
        { "bad magic", d => { d[0] = (byte)'X'; return d; } },
        { "future version", d => { d[4] = 9; return d; } },
        { "truncated", d => d[..^3] },
        { "one byte too many", d => [.. d, 0] },
        { "negative token", d => { BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(d.Length - 4), -5); return d; } },
        { "count too large", d => { BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(d.Length - 12 - 4), 1000); return d; } },
        { "bad utf-8 in origin", d => { d[23] = 0xFF; return d; } },
        { "zero-length origin", d => { d[21] = 0; d[22] = 0; return d; } },
    };

    [Theory]
    [MemberData(nameof(Damage))]
    public void Refuses_damaged_messages(string what, Func<byte[], byte[]> damage)
    {
        byte[] data = damage(SharedResponseCodec.Encode(new SharedResponse(Guid.NewGuid(), "r1", Identity, [5, 6, 7])));
        Assert.False(SharedResponseCodec.TryDecode(data, out SharedResponse? response, out string? error), what);
        Assert.Null(response);
        Assert.False(string.IsNullOrEmpty(error));
    }

    [Fact]
    public void Refuses_to_encode_what_it_could_not_decode()
    {
        Assert.Throws<ArgumentException>(() => SharedResponseCodec.Encode(new SharedResponse(Guid.NewGuid(), "r1", Identity, [1, -1])));
        Assert.Throws<ArgumentException>(() => SharedResponseCodec.Encode(new SharedResponse(Guid.NewGuid(), " ", Identity, [1])));
        Assert.Throws<ArgumentException>(() => SharedResponseCodec.Encode(new SharedResponse(Guid.NewGuid(), "r1", new FleetIdentity("", "t"), [1])));
        Assert.Throws<ArgumentException>(() => new FleetIdentity("m", new string('x', 2000)).Validate());
    }

    [Fact]
    public void Each_identity_has_its_own_subject()
    {
        string a = ResponseSharing.SubjectFor("p", Identity);
        Assert.Equal(a, ResponseSharing.SubjectFor("p", new FleetIdentity(Identity.Model, Identity.Tokenizer)));
        Assert.NotEqual(a, ResponseSharing.SubjectFor("p", Identity with { Tokenizer = "o200k_base" }));
        Assert.NotEqual(a, ResponseSharing.SubjectFor("p", Identity with { Model = "llama-3.1-8b@abd" }));
        Assert.Matches("^p\\.[0-9a-f]{16}$", a);
    }
}
