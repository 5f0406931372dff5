using System.Text.Json;
using SpecDecode.Train.Model;
using TorchSharp.Modules;

namespace SpecDecode.Train.Training;

/// <summary>
/// A resumable training state in a folder: <c>model.bin</c> (TorchSharp's state-dict format, float32 master weights),
/// <c>optimizer.bin</c> (AdamW's moments and step counts), <c>state.json</c> (the options, the step, the seconds
/// trained, the best validation loss and its step, the
/// training losses summed since the last log row) and <c>loss.csv</c>. A checkpoint is written into a sibling folder and then swapped in, so a run killed
/// while saving leaves the previous checkpoint intact.
/// </summary>
public static class TrainingCheckpoint
{
    private static readonly JsonSerializerOptions Json = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    private sealed record State(TrainingOptions Options, long Step, double Seconds, long BestStep, double BestValidationLoss, double PendingLossSum, int PendingLossCount);

    /// <summary>The loss log's file name (also inside a checkpoint).</summary>
    public const string LossFileName = "loss.csv";

    /// <summary>Writes the checkpoint.</summary>
    public static void Save(string folder, TrainingOptions options, TrainableLlama model, AdamW optimizer, long step, double seconds,
        (long Step, double Loss) best, (double Sum, int Count) pendingLoss, IReadOnlyList<LossRow> log)
    {
        string full = Path.GetFullPath(folder);
        string staging = full + ".saving";
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true);
        }
        Directory.CreateDirectory(staging);
        model.save(Path.Combine(staging, "model.bin"));
        optimizer.save_state_dict(Path.Combine(staging, "optimizer.bin"));
        File.WriteAllText(Path.Combine(staging, "state.json"), JsonSerializer.Serialize(new State(options, step, seconds, best.Step, best.Loss, pendingLoss.Sum, pendingLoss.Count), Json));
        WriteLossLog(Path.Combine(staging, LossFileName), log);
        string old = full + ".old";
        if (Directory.Exists(old))
        {
            Directory.Delete(old, recursive: true);
        }
        if (Directory.Exists(full))
        {
            Directory.Move(full, old);
        }
        Directory.Move(staging, full);
        if (Directory.Exists(old))
        {
            Directory.Delete(old, recursive: true);
        }
    }

    /// <summary>Loads a checkpoint into <paramref name="model"/> and <paramref name="optimizer"/> when the folder holds one.</summary>
    /// <returns>False when there is no checkpoint (a fresh run).</returns>
    /// <exception cref="InvalidDataException">The checkpoint was written with other options: resuming would not
    /// continue the same run. Delete the folder or pass the same options.</exception>
    public static bool TryLoad(string folder, TrainingOptions options, TrainableLlama model, AdamW optimizer, out long step, out double seconds,
        out (long Step, double Loss) best, out (double Sum, int Count) pendingLoss, List<LossRow> log)
    {
        step = 0;
        seconds = 0;
        best = (0, double.PositiveInfinity);
        pendingLoss = (0, 0);
        string statePath = Path.Combine(folder, "state.json");
        if (!File.Exists(statePath))
        {
            return false;
        }
        State state = JsonSerializer.Deserialize<State>(File.ReadAllText(statePath), Json)
            ?? throw new InvalidDataException($"{statePath} is empty.");
        if (state.Options != options)
        {
            throw new InvalidDataException(
                $"the checkpoint in {folder} was written by a run with other options ({state.Options}); this run has {options}. " +
                "Pass the same options to resume it, or use another --checkpoint folder to start afresh.");
        }
        model.load(Path.Combine(folder, "model.bin"));
        optimizer.load_state_dict(Path.Combine(folder, "optimizer.bin"));
        step = state.Step;
        seconds = state.Seconds;
        best = (state.BestStep, state.BestValidationLoss);
        pendingLoss = (state.PendingLossSum, state.PendingLossCount);
        log.Clear();
        log.AddRange(ReadLossLog(Path.Combine(folder, LossFileName)));
        return true;
    }

    /// <summary>Writes the loss log as CSV.</summary>
    public static void WriteLossLog(string path, IReadOnlyList<LossRow> log) =>
        File.WriteAllLines(path, new[] { LossRow.Header }.Concat(log.Select(r => r.ToCsv())));

    /// <summary>Reads a loss log written by <see cref="WriteLossLog"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not a loss log.</exception>
    public static List<LossRow> ReadLossLog(string path)
    {
        string[] lines = File.ReadAllLines(path);
        if (lines.Length == 0 || lines[0] != LossRow.Header)
        {
            throw new InvalidDataException($"{path} is not a loss log (its first line should be '{LossRow.Header}').");
        }
        return lines.Skip(1).Where(l => l.Length > 0).Select(LossRow.Parse).ToList();
    }
}
