using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML.Tokenizers;
using SpecDecode.CommandLine;
using SpecDecode.Tokenization;
using SpecDecode.Train.Tokenizer;

namespace SpecDecode.Train.Commands;

/// <summary><c>tokenizer</c>: trains the byte-level BPE on the training trajectories and writes the tokenizer files.</summary>
internal static class TokenizerCommand
{
    public static Command Build()
    {
        var traces = new Option<string>("--traces") { Description = "The SWE-bench trajectories (gzip JSONL).", DefaultValueFactory = _ => TraceDefaults.Traces };
        var output = new Option<string>("--out") { Description = "The folder for tokenizer.json, tokenizer_config.json and special_tokens_map.json.", Required = true };
        var vocab = ToolOptions.Int("--vocab", "Vocabulary size, special tokens included.", 8192, 1);
        var positions = ToolOptions.Int("--positions", "model_max_length written into tokenizer_config.json.", 2048, 1);
        var maxMb = ToolOptions.Int("--max-training-mb", "Train on at most this many MB of text (0: all).", 0, 0);
        var command = new Command("tokenizer", "Train the byte-level BPE tokenizer on the training trajectories (the last 50 are held out).")
        {
            traces, output, vocab, positions, maxMb,
        };
        command.SetAction(p => Run(p.GetValue(traces)!, p.GetValue(output)!, p.GetValue(vocab), p.GetValue(positions), (long)p.GetValue(maxMb) << 20));
        return command;
    }

    private static int Run(string traces, string output, int vocab, int positions, long maxBytes)
    {
        var watch = Stopwatch.StartNew();
        (List<string> training, List<string> heldOut) = TraceTexts.Read(traces, heldOut: 50);
        if (maxBytes > 0)
        {
            long total = 0;
            training = training.TakeWhile(t => (total += t.Length) <= maxBytes).ToList();
        }
        long chars = training.Sum(t => (long)t.Length);
        Console.WriteLine($"read {training.Count} training and {heldOut.Count} held-out trajectories ({chars / 1e6:F1} M chars) in {watch.Elapsed.TotalSeconds:F1} s");

        watch.Restart();
        BpeVocabulary vocabulary = BpeTrainer.Train(training, new BpeTrainerSettings(vocab, BpeTrainerSettings.DefaultSpecialTokens));
        Console.WriteLine($"trained {vocab} tokens in {watch.Elapsed.TotalSeconds:F1} s");

        Directory.CreateDirectory(output);
        TokenizerJsonWriter.Write(output, vocabulary, TokenizerFilesSettings.Default with { ModelMaxLength = positions });
        Microsoft.ML.Tokenizers.Tokenizer tokenizer = CheckpointTokenizer.Load(output);
        long heldOutChars = 0, heldOutTokens = 0;
        foreach (string text in heldOut.Take(10))
        {
            heldOutChars += text.Length;
            heldOutTokens += tokenizer.EncodeToIds(text).Count;
        }
        Console.WriteLine($"wrote {output}; first 10 held-out trajectories: {heldOutChars / (double)heldOutTokens:F2} characters per token");
        return 0;
    }
}
