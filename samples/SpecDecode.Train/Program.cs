using System.Diagnostics;
using Microsoft.ML.Tokenizers;
using SpecDecode.Train;
using SpecDecode.Train.Tokenizer;
using SpecDecode.Tree.Tokenization;

// SpecDecode.Train: builds the embedded default model pair from ../shared/data/swebench. So far only its first step
// exists, the tokenizer:
//   dotnet run -c Release --project samples/SpecDecode.Train -- tokenizer <traces.jsonl.gz> <out-folder> [vocab] [max-training-MB]
// The model training loop is not written yet.
if (args.Length < 3 || args[0] != "tokenizer")
{
    Console.Error.WriteLine("usage: SpecDecode.Train tokenizer <traces.jsonl.gz> <out-folder> [vocab-size=8192] [max-training-MB=0 (all)]");
    Console.Error.WriteLine("The model training loop is not written yet; only the tokenizer step exists.");
    return 2;
}
int vocab = args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 8192;
long maxBytes = (args.Length > 4 ? long.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture) : 0) << 20;

var watch = Stopwatch.StartNew();
(List<string> training, List<string> heldOut) = TraceTexts.Read(args[1], heldOut: 50);
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

Directory.CreateDirectory(args[2]);
TokenizerJsonWriter.Write(args[2], vocabulary, TokenizerFilesSettings.Default);
Tokenizer tokenizer = CheckpointTokenizer.Load(args[2]);
long heldOutChars = 0, heldOutTokens = 0;
foreach (string text in heldOut.Take(10))
{
    heldOutChars += text.Length;
    heldOutTokens += tokenizer.EncodeToIds(text).Count;
}
Console.WriteLine($"wrote {args[2]}; first 10 held-out trajectories: {heldOutChars / (double)heldOutTokens:F2} characters per token");
return 0;
