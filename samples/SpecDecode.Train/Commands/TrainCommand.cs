using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Tokenization;
using SpecDecode.Train.Checkpoint;
using SpecDecode.Train.Data;
using SpecDecode.Train.Model;
using SpecDecode.Train.Tokenizer;
using SpecDecode.Train.Training;
using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Train.Commands;

/// <summary>The figures of the kept model (the step with the lowest validation loss), written as
/// <c>training-&lt;folder&gt;.json</c> beside the exported folder each time the kept model changes.</summary>
public sealed record TrainingSummary(
    string Shape, long Parameters, TrainingOptions Options, string Device, long TrainingTokens, long ValidationTokens, long HeldOutTokens,
    int TrainingTrajectories, int ValidationTrajectories, int HeldOutTrajectories, long KeptStep, double KeptEpochs, double Seconds,
    double TrainLoss, double ValidationLoss, double HeldOutLoss);

/// <summary><c>train</c>: trains one model of the pair on the SWE-bench trajectories and exports it as a Hugging Face folder.</summary>
internal static class TrainCommand
{
    public static Command Build()
    {
        var traces = new Option<string>("--traces") { Description = "The SWE-bench trajectories (gzip JSONL).", DefaultValueFactory = _ => TraceDefaults.Traces };
        var tokenizer = new Option<string>("--tokenizer") { Description = "The tokenizer folder the tokenizer command wrote.", Required = true };
        var shape = new Option<string>("--shape") { Description = "target, draft or tiny.", DefaultValueFactory = _ => "target" };
        var output = new Option<string>("--out") { Description = "The Hugging Face folder to write at the end.", Required = true };
        var checkpoint = new Option<string>("--checkpoint") { Description = "The checkpoint folder: resumed from when it holds a checkpoint of the same options.", Required = true };
        var steps = ToolOptions.Int("--steps", "Optimiser steps of the whole run.", 1200, 1);
        var batch = ToolOptions.Int("--batch", "Windows per step.", 32, 1);
        var positions = ToolOptions.Int("--positions", "Tokens the model sees at once (max_position_embeddings).", 2048, 1);
        var lr = ToolOptions.Double("--lr", "Peak learning rate.", 1.5e-3, NumberRange.Above(0));
        var warmup = ToolOptions.Int("--warmup", "Warm-up steps.", 100, 0);
        var seed = ToolOptions.Long("--seed", "Seeds the weights and the batches.", 1, 0);
        var evalEvery = ToolOptions.Int("--eval-every", "Steps between loss-log rows.", 50, 1);
        var checkpointEvery = ToolOptions.Int("--checkpoint-every", "Steps between checkpoints.", 200, 1);
        var maxMinutes = ToolOptions.Double("--max-minutes", "Stop (with a checkpoint) after this long; run again to resume.", 0, NumberRange.AtLeast(0));
        var validation = ToolOptions.Int("--validation-trajectories", "The last N training trajectories are kept out of training for validation.", 9, 1);
        var device = ToolOptions.Choice("--device", "cpu or cuda (default: cuda when available).", null, ["cpu", "cuda"]);
        var shardMb = ToolOptions.Int("--shard-mb", "The largest safetensors shard in MB (10^6 bytes).", 16, 1);
        var command = new Command("train", "Train a model of the pair and export it as a Hugging Face folder.")
        {
            traces, tokenizer, shape, output, checkpoint, steps, batch, positions, lr, warmup, seed, evalEvery, checkpointEvery, maxMinutes, validation, device, shardMb,
        };
        command.SetAction(p => Run(p.GetValue(traces)!, p.GetValue(tokenizer)!, p.GetValue(output)!, p.GetValue(checkpoint)!, p.GetValue(positions),
            new TrainingOptions(p.GetValue(shape)!, p.GetValue(steps), p.GetValue(batch), p.GetValue(positions) + 1, p.GetValue(lr), p.GetValue(warmup), 0.1,
                0.1, 1.0, p.GetValue(seed), p.GetValue(evalEvery), p.GetValue(checkpointEvery)),
            p.GetValue(maxMinutes), p.GetValue(validation), p.GetValue(device), p.GetValue(shardMb)));
        return command;
    }

    private static int Run(string traces, string tokenizerFolder, string output, string checkpoint, int positions, TrainingOptions options,
        double maxMinutes, int validationTrajectories, string? deviceName, int shardMb)
    {
        (Device device, string libtorch) = DeviceOption.Resolve(deviceName);
        ScalarType compute = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        Console.WriteLine($"libtorch {libtorch}, device {device}, compute {compute}");

        var watch = Stopwatch.StartNew();
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = CheckpointTokenizer.Load(tokenizerFolder);
        int separator = TokenId(tokenizer, "<|end_of_text|>");
        int bos = TokenId(tokenizer, "<|begin_of_text|>");
        int eos = TokenId(tokenizer, "<|im_end|>");
        (List<string> all, List<string> heldOutTexts) = TraceTexts.Read(traces, heldOut: 50);
        if (validationTrajectories <= 0 || validationTrajectories >= all.Count)
        {
            throw new ArgumentException($"--validation-trajectories must be between 1 and {all.Count - 1}.");
        }
        List<string> trainingTexts = all.GetRange(0, all.Count - validationTrajectories);
        List<string> validationTexts = all.GetRange(all.Count - validationTrajectories, validationTrajectories);
        TokenCorpus training = TokenCorpus.Build(trainingTexts, tokenizer, separator);
        TokenCorpus validation = TokenCorpus.Build(validationTexts, tokenizer, separator);
        TokenCorpus heldOut = TokenCorpus.Build(heldOutTexts, tokenizer, separator);
        Console.WriteLine($"tokens: training {training.Length:N0} ({trainingTexts.Count} trajectories), validation {validation.Length:N0} ({validationTexts.Count}), " +
            $"held out {heldOut.Length:N0} ({heldOutTexts.Count}); {watch.Elapsed.TotalSeconds:F1} s");

        ModelShape shape = ModelShape.Named(options.Shape, TokenizerJsonWriter.VocabularySize(tokenizerFolder), positions);
        using var trainer = new Trainer(options, shape, compute, device, checkpoint);
        Console.WriteLine($"model {options.Shape}: {shape.LayerCount} layers, hidden {shape.HiddenSize}, {shape.ParameterCount / 1e6:F2} M parameters; " +
            (trainer.Resumed ? $"resumed at step {trainer.Step} from {checkpoint}" : "fresh start") +
            $"; {options.Steps} steps of {options.Batch} x {options.Window - 1} tokens ({(double)options.Steps * options.Batch * (options.Window - 1) / training.Length:F1} epochs)");

        TimeSpan limit = maxMinutes > 0 ? TimeSpan.FromMinutes(maxMinutes) : TimeSpan.MaxValue;
        string summaryPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(output))!, $"training-{Path.GetFileName(Path.GetFullPath(output))}.json");
        string deviceLabel = device.type == DeviceType.CUDA ? DeviceOption.CudaLabel : "cpu";
        ScalarType saveAs = device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;

        // The kept model is the one with the lowest validation loss: exported, with its held-out loss, whenever it improves.
        void Export(Trainer t)
        {
            IReadOnlyList<string> files = HuggingFaceExport.Write(t.Model, output, tokenizerFolder, bos, eos, saveAs, shardMb * 1_000_000L);
            double heldOutLoss = t.Evaluate(heldOut);
            LossRow row = t.Log[^1];
            var summary = new TrainingSummary(options.Shape, shape.ParameterCount, options, deviceLabel, training.Length, validation.Length, heldOut.Length,
                trainingTexts.Count, validationTexts.Count, heldOutTexts.Count, t.Best.Step, (double)t.Best.Step * options.Batch * (options.Window - 1) / training.Length,
                row.Seconds, row.TrainLoss, t.Best.Loss, heldOutLoss);
            File.WriteAllText(summaryPath, JsonSerializer.Serialize(summary, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  kept step {t.Best.Step}: validation {t.Best.Loss:F4}, held-out loss {heldOutLoss:F4} (perplexity {Math.Exp(heldOutLoss):F2}); wrote {output} ({string.Join(", ", files)})"));
        }

        TrainingOutcome outcome = trainer.Run(training, validation, heldOut, limit, Console.Out, Export);
        TrainingCheckpoint.WriteLossLog(Path.ChangeExtension(summaryPath, ".loss.csv"), trainer.Log);
        if (outcome == TrainingOutcome.TimeLimit)
        {
            return 3;
        }
        Console.WriteLine($"done: {options.Steps} steps; kept step {trainer.Best.Step} (lowest validation loss); {summaryPath}");
        return 0;
    }

    private static int TokenId(Microsoft.ML.Tokenizers.Tokenizer tokenizer, string special)
    {
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(special);
        return ids.Count == 1 ? ids[0] : throw new InvalidDataException($"the tokenizer does not encode {special} as one special token.");
    }
}

/// <summary>Where the shared data lives, relative to the repository root.</summary>
internal static class TraceDefaults
{
    public const string Traces = "../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz";
}
