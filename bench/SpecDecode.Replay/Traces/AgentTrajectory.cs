using System.IO.Compression;
using System.Text.Json;

namespace SpecDecode.Replay;

/// <summary>One recorded agent run as a conversation: its messages and which of them the model wrote. Call k sends every
/// message before <c>AssistantIndices[k]</c> (the whole conversation so far, as the agent sent it) and the model answered
/// with that message (the replay protocol of ../shared/data/swebench/README.md).</summary>
/// <param name="TaskId">The SWE-bench instance id (the conversation id the agent sends).</param>
/// <param name="Messages">Every message, in order.</param>
/// <param name="AssistantIndices">The model's messages, one per call.</param>
public sealed record AgentTrajectory(string TaskId, IReadOnlyList<PromptMessage> Messages, IReadOnlyList<int> AssistantIndices)
{
    /// <summary>The calls of the trajectory.</summary>
    public int Calls => AssistantIndices.Count;

    /// <summary>The messages call <paramref name="call"/> sends.</summary>
    public IReadOnlyList<PromptMessage> Prompt(int call) => Messages.Take(AssistantIndices[call]).ToArray();

    /// <summary>The answer the trace recorded for call <paramref name="call"/>.</summary>
    public string RecordedAnswer(int call) => Messages[AssistantIndices[call]].Content;

    /// <summary>Reads the trajectories of a trace file (gzip JSONL), skipping <paramref name="skip"/> and taking
    /// <paramref name="take"/>.</summary>
    /// <exception cref="FileNotFoundException">The file is missing.</exception>
    /// <exception cref="InvalidDataException">A line lacks the protocol's fields.</exception>
    public static IReadOnlyList<AgentTrajectory> Read(string path, int skip, int take)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"--traces: {Path.GetFullPath(path)} does not exist; give the SWE-bench trace file (../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz).", path);
        }
        var result = new List<AgentTrajectory>();
        using Stream file = File.OpenRead(path);
        using Stream data = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var reader = new StreamReader(data);
        int line = 0;
        while (result.Count < take && reader.ReadLine() is { } text)
        {
            if (line++ < skip || text.Length == 0)
            {
                continue;
            }
            try
            {
                using JsonDocument json = JsonDocument.Parse(text);
                JsonElement root = json.RootElement;
                PromptMessage[] messages = root.GetProperty("messages").EnumerateArray()
                    .Select(m => new PromptMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToArray();
                int[] indices = root.GetProperty("assistant_indices").EnumerateArray().Select(i => i.GetInt32()).ToArray();
                result.Add(new AgentTrajectory(root.GetProperty("task_id").GetString()!, messages, indices));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new InvalidDataException($"--traces: line {line} of {path} is not a trajectory of the replay protocol ({e.Message}).", e);
            }
        }
        return result;
    }
}
