using System.IO.Compression;
using System.Text;

namespace SpecDecode.Replay.Tests;

/// <summary>Bad trace input, written as small gzip files to a temporary folder: each gives a typed error naming file and line.</summary>
public sealed class TraceBadInputTests : IDisposable
{
    private const string Good1 =
        """{"task_id": "t1", "resolved": true, "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "do it"}, {"role": "assistant", "content": "ok done"}], "assistant_indices": [2]}""";

    private const string Good2 =
        """{"task_id": "t2", "resolved": false, "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "x"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "y"}, {"role": "assistant", "content": "a2"}], "assistant_indices": [2, 4]}""";

    private readonly string _folder = Directory.CreateTempSubdirectory("replay-tests-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    public static TheoryData<string, TraceErrorKind> BadLines => new()
    {
        // A line cut in the middle (the rest of the file follows on the next line).
        { Good1[..60], TraceErrorKind.TruncatedLine },
        { """{"task_id": "t3", "messages": [}""", TraceErrorKind.MalformedJson },
        { """{"task_id": "t3", "messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}], "assistant_indices": [1]}""", TraceErrorKind.UnknownRole },
        { """{"task_id": "t3", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}], "assistant_indices": [1]}""", TraceErrorKind.EmptyResponse },
        { """{"task_id": "t3", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "assistant_indices": [2]}""", TraceErrorKind.BadAssistantIndex },
        { """{"task_id": "t3", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "assistant_indices": [-1]}""", TraceErrorKind.BadAssistantIndex },
        { """{"task_id": "t3", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "assistant_indices": [0]}""", TraceErrorKind.BadAssistantIndex },
        { """{"task_id": "t3", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}""", TraceErrorKind.MissingField },
        { """{"task_id": "t3", "messages": [{"role": "user"}, {"role": "assistant", "content": "y"}], "assistant_indices": [1]}""", TraceErrorKind.MissingField },
        { "[1, 2, 3]", TraceErrorKind.MissingField },
        // Found by the parser fuzzer (issue 16): an escaped lone surrogate threw an untyped InvalidOperationException.
        { """{"task_id": "t3", "messages": [{"role": "user", "content": "x\ud800"}, {"role": "assistant", "content": "y"}], "assistant_indices": [1]}""", TraceErrorKind.MalformedJson },
    };

    [Theory]
    [MemberData(nameof(BadLines))]
    public void Bad_line_throws_a_typed_error_with_file_and_line(string badLine, TraceErrorKind kind)
    {
        string path = Write(Good1, badLine, Good2);

        foreach (Func<TraceReader, object> read in Readers())
        {
            var ex = Assert.Throws<TraceFormatException>(() => read(TraceReader.Open(path, TraceFixture.Tokenizer)));
            Assert.Equal(kind, ex.Kind);
            Assert.Equal(2, ex.LineNumber);
            Assert.Equal(path, ex.Path);
            Assert.StartsWith($"{path}:2: {kind}:", ex.Message);
        }
    }

    [Theory]
    [MemberData(nameof(BadLines))]
    public void Skip_bad_leaves_the_line_out_and_counts_it(string badLine, TraceErrorKind kind)
    {
        string path = Write(Good1, badLine, Good2);
        TraceReader reader = TraceReader.Open(path, TraceFixture.Tokenizer, skipBad: true);

        List<TraceTrajectory> read;
        lock (TraceFixture.Tokenizer)
        {
            read = reader.Read().ToList();
        }

        Assert.Equal(["t1", "t2"], read.Select(t => t.TaskId));
        SkippedLine skipped = Assert.Single(reader.Skipped);
        Assert.Equal(2, skipped.LineNumber);
        Assert.Equal(kind, skipped.Kind);
        TraceScan scan = reader.Scan();
        Assert.Equal(2, scan.Trajectories);
        Assert.Equal(3, scan.Calls);
        Assert.Single(scan.Skipped);
    }

    [Fact]
    public void Truncated_last_line_is_named_as_truncated()
    {
        string path = WriteRaw(Good1 + "\n" + Good2[..80]);
        var ex = Assert.Throws<TraceFormatException>(() => TraceReader.Open(path, null).Scan());
        Assert.Equal(TraceErrorKind.TruncatedLine, ex.Kind);
        Assert.Equal(2, ex.LineNumber);
        Assert.Contains("without a newline", ex.Message);
    }

    [Fact]
    public void Missing_file_is_a_typed_error_naming_the_file()
    {
        string path = Path.Combine(_folder, "nope.jsonl.gz");
        var ex = Assert.Throws<TraceFormatException>(() => TraceReader.Open(path, null));
        Assert.Equal(TraceErrorKind.MissingFile, ex.Kind);
        Assert.Equal(0, ex.LineNumber);
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void Cut_archive_is_a_corrupt_archive_error()
    {
        string whole = Write(string.Join("\n", Enumerable.Repeat(Good1, 400)), Good2);
        byte[] bytes = File.ReadAllBytes(whole);
        string cut = Path.Combine(_folder, "cut.jsonl.gz");
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 30)]);

        var ex = Assert.Throws<TraceFormatException>(() => TraceReader.Open(cut, null, skipBad: true).Scan());
        Assert.Equal(TraceErrorKind.CorruptArchive, ex.Kind);
        Assert.Contains(cut, ex.Message);
    }

    [Fact]
    public void Plain_text_file_is_not_gzip()
    {
        string path = Path.Combine(_folder, "plain.jsonl.gz");
        File.WriteAllText(path, Good1 + "\n" + Good2 + "\n");
        var ex = Assert.Throws<TraceFormatException>(() => TraceReader.Open(path, null).Scan());
        Assert.Equal(TraceErrorKind.CorruptArchive, ex.Kind);
    }

    [Fact]
    public void Good_file_reads_calls_per_protocol()
    {
        string path = Write(Good1, "", Good2);
        List<TraceTrajectory> read;
        lock (TraceFixture.Tokenizer)
        {
            read = TraceReader.Open(path, TraceFixture.Tokenizer).Read().ToList();
        }
        Assert.Equal([1L, 3L], read.Select(t => t.LineNumber));
        Assert.True(read[0].Resolved);
        TraceTrajectory t2 = read[1];
        Assert.Equal(2, t2.Calls.Length);
        lock (TraceFixture.Tokenizer)
        {
            Assert.Equal("a1", TraceFixture.Tokenizer.Decode(t2.Calls[0].Response.Span));
            Assert.Equal("a2", TraceFixture.Tokenizer.Decode(t2.Calls[1].Response.Span));
            Assert.Equal(
                "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\na1<|im_end|>\n<|im_start|>user\ny<|im_end|>\n<|im_start|>assistant\n",
                TraceFixture.Tokenizer.Decode(t2.Calls[1].Prompt.Span));
        }
    }

    [Fact]
    public void First_counts_lines_in_file_order()
    {
        string path = Write(Good1, Good2, Good1);
        TraceScan scan = TraceReader.Open(path, null, new TraceSelection { First = 2 }).Scan();
        Assert.Equal(2, scan.Trajectories);
        Assert.Equal(3, scan.Calls);
    }

    private static IEnumerable<Func<TraceReader, object>> Readers()
    {
        yield return r => r.Scan();
        yield return r =>
        {
            lock (TraceFixture.Tokenizer)
            {
                return r.Read().ToList();
            }
        };
    }

    private string Write(params string[] lines) => WriteRaw(string.Join("\n", lines) + "\n");

    private string WriteRaw(string content)
    {
        string path = Path.Combine(_folder, $"trace-{Guid.NewGuid():N}.jsonl.gz");
        using var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        gzip.Write(Encoding.UTF8.GetBytes(content));
        return path;
    }
}
