using System.IO.Compression;
using System.Text.Json;

namespace SpecDecode.Replay.Tests;

/// <summary>The reader against the real trace file: protocol tokenization of the first trajectory, and the file's counts.</summary>
public sealed class TraceReaderTests
{
    private static ProtocolTokenizer Tokenizer => TraceFixture.Tokenizer;

    [Fact]
    public void First_trajectory_follows_the_protocol_piece_by_piece()
    {
        string path = TraceFixture.Path;
        (string taskId, (string Role, string Content)[] messages, int[] indices) = ReadFirstLineIndependently(path);
        lock (Tokenizer)
        {
            TraceTrajectory t = TraceReader.Open(path, Tokenizer, new TraceSelection { First = 1 }).Read().Single();
            Assert.Equal(taskId, t.TaskId);
            Assert.Equal(1, t.LineNumber);
            Assert.Equal(indices.Length, t.Calls.Length);
            Assert.True(t.Calls.Length > 3);

            // Each message's pieces tokenized alone, concatenated naively for every call.
            int[][] pieces = messages.Select(m => (int[])[
                .. Tokenizer.Encode("<|im_start|>" + m.Role + "\n"), .. Tokenizer.Encode(m.Content), .. Tokenizer.Encode("<|im_end|>\n")]).ToArray();
            int[] assistantHeader = Tokenizer.Encode("<|im_start|>assistant\n");
            for (int k = 0; k < indices.Length; k++)
            {
                // Prompt k = pieces of every message before it, then the assistant header.
                var expected = new List<int>();
                for (int m = 0; m < indices[k]; m++)
                {
                    expected.AddRange(pieces[m]);
                }
                expected.AddRange(assistantHeader);
                TraceCall call = t.Calls[k];
                Assert.Equal(expected, call.Prompt.ToArray());
                Assert.Equal(Tokenizer.Encode(messages[indices[k]].Content), call.Response.ToArray());
                Assert.Equal(messages[indices[k]].Content, Tokenizer.Decode(call.Response.Span));
            }
        }
    }

    [Fact]
    public void Prompt_k_plus_one_extends_prompt_k_and_response_k()
    {
        lock (Tokenizer)
        {
            foreach (TraceTrajectory t in TraceReader.Open(TraceFixture.Path, Tokenizer, new TraceSelection { First = 3 }).Read())
            {
                for (int k = 0; k + 1 < t.Calls.Length; k++)
                {
                    int[] head = [.. t.Calls[k].Prompt.ToArray(), .. t.Calls[k].Response.ToArray(), .. Tokenizer.FooterIds];
                    Assert.Equal(head, t.Calls[k + 1].Prompt.Span[..head.Length].ToArray());
                }
            }
        }
    }

    [Fact]
    public void Whole_file_has_499_trajectories_and_20120_calls()
    {
        TraceScan scan = TraceReader.Open(TraceFixture.Path, tokenizer: null).Scan();
        Assert.Equal(499, scan.Trajectories);
        Assert.Equal(20_120, scan.Calls);
        Assert.Empty(scan.Skipped);
    }

    [Fact]
    public void Task_selection_reads_only_the_named_task()
    {
        lock (Tokenizer)
        {
            var reader = TraceReader.Open(TraceFixture.Path, Tokenizer,
                new TraceSelection { TaskIds = new HashSet<string> { "astropy__astropy-12907" } });
            TraceTrajectory t = Assert.Single(reader.Read());
            Assert.Equal("astropy__astropy-12907", t.TaskId);
        }
    }

    [Fact]
    public void Missing_task_is_an_error()
    {
        var reader = TraceReader.Open(TraceFixture.Path, tokenizer: null,
            new TraceSelection { TaskIds = new HashSet<string> { "no__such-task" } });
        var ex = Assert.Throws<TraceFormatException>(() => reader.Scan());
        Assert.Equal(TraceErrorKind.TaskNotFound, ex.Kind);
        Assert.Contains("no__such-task", ex.Message);
    }

    private static (string TaskId, (string Role, string Content)[] Messages, int[] Indices) ReadFirstLineIndependently(string path)
    {
        using var gzip = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var text = new StreamReader(gzip);
        using JsonDocument doc = JsonDocument.Parse(text.ReadLine()!);
        JsonElement root = doc.RootElement;
        var messages = root.GetProperty("messages").EnumerateArray()
            .Select(m => (m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToArray();
        int[] indices = root.GetProperty("assistant_indices").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return (root.GetProperty("task_id").GetString()!, messages, indices);
    }
}
