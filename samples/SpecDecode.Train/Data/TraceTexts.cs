using System.IO.Compression;
using System.Text.Json;

namespace SpecDecode.Train;

/// <summary>
/// The SWE-bench trajectories as training text: each trajectory's conversation formatted as the replay protocol and the
/// chat template format messages (<c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>), in file order; the last
/// <c>heldOut</c> trajectories are the evaluation set and never reach training.
/// </summary>
internal static class TraceTexts
{
    /// <summary>Reads every trajectory's text; returns (training, held out).</summary>
    /// <exception cref="InvalidDataException">A line is not a trajectory object with a messages array.</exception>
    public static (List<string> Training, List<string> HeldOut) Read(string path, int heldOut)
    {
        List<string> all = ReadConversations(path).Select(Format).ToList();
        int split = Math.Max(0, all.Count - heldOut);
        return (all.GetRange(0, split), all.GetRange(split, all.Count - split));
    }

    /// <summary>The messages (role, content) of every trajectory, in file order.</summary>
    /// <exception cref="InvalidDataException">A line is not a trajectory object with a messages array.</exception>
    public static List<TraceMessage[]> ReadConversations(string path)
    {
        var all = new List<TraceMessage[]>();
        using var file = File.OpenRead(path);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        long lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (line.Length == 0)
            {
                continue;
            }
            using JsonDocument doc = JsonDocument.Parse(line);
            if (!doc.RootElement.TryGetProperty("messages", out JsonElement messages) || messages.ValueKind != JsonValueKind.Array)
            {
                throw new InvalidDataException($"{path}, line {lineNumber}: no messages array.");
            }
            all.Add(messages.EnumerateArray()
                .Select(m => new TraceMessage(m.GetProperty("role").GetString() ?? "", m.GetProperty("content").GetString() ?? ""))
                .ToArray());
        }
        return all;
    }

    /// <summary>Messages in the chat format the models are trained on: <c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c> each.</summary>
    public static string Format(IEnumerable<TraceMessage> messages)
    {
        var text = new System.Text.StringBuilder();
        foreach (TraceMessage message in messages)
        {
            text.Append("<|im_start|>").Append(message.Role).Append('\n').Append(message.Content).Append("<|im_end|>\n");
        }
        return text.ToString();
    }
}

/// <summary>One message of a trajectory.</summary>
internal sealed record TraceMessage(string Role, string Content);
