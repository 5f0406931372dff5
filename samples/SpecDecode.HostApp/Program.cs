// A host application as a user writes it against the SpecDecode NuGet packages: load a Hugging Face checkpoint, build a
// SpeculativeEngine with the suffix drafter, generate greedily twice (plain, then speculative) and check that
// speculative decoding changed nothing but the number of steps. Exit code 0 when it holds, 1 otherwise, 2 for usage.
using System.Globalization;
using SpecDecode;
using SpecDecode.Suffix;
using SpecDecode.Tree;
using SpecDecode.Tree.Tokenization;

const string DefaultPrompt = "abc def abc def ghi abc def abc def ghi abc def";

if (args.Length is < 1 or > 3 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: SpecDecode.HostApp <hf-checkpoint-folder> [prompt] [max-new-tokens]");
    return 2;
}
string folder = Path.GetFullPath(args[0]);
if (!Directory.Exists(folder))
{
    Console.Error.WriteLine($"The checkpoint folder {folder} does not exist (a Hugging Face folder: config.json, *.safetensors, tokenizer.json).");
    return 2;
}
string prompt = args.Length > 1 ? args[1] : DefaultPrompt;
int maxNewTokens = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 32;

using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { MaxBatch = 1, MaxContext = 512 });
var tokenizer = CheckpointTokenizer.Load(folder);
Console.WriteLine($"loaded {folder}: {model.Config.LayerCount} layers, vocabulary {model.Config.VocabSize}, on {model.Device.type} as {model.DType}");

var request = new GenerationRequest { Prompt = prompt, MaxNewTokens = maxNewTokens };

GenerationResult plain;
using (SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter: null, new SpeculativeEngineOptions { MaxBatch = 1 }))
{
    plain = await engine.GenerateAsync(request);
}

GenerationResult speculative;
using (var drafter = new SuffixDrafter())
using (SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter, new SpeculativeEngineOptions
{
    MaxBatch = 1,
    MaxDraftTokens = 8,
    // speculate on every step: whether drafts are verified must not depend on how fast this machine is
    AdaptiveSpeculation = false,
}))
{
    speculative = await engine.GenerateAsync(request);
}

GenerationStatistics s = speculative.Statistics;
Console.WriteLine($"plain:       {plain.TokenIds.Count} tokens in {plain.Statistics.Steps} steps: {Quote(plain.Text)}");
Console.WriteLine($"speculative: {speculative.TokenIds.Count} tokens in {s.Steps} steps: {Quote(speculative.Text)}");
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"statistics:  drafts {s.Drafts}, draft tokens {s.DraftTokens}, accepted {s.AcceptedTokens} ({s.AcceptanceRate:P1}), " +
    $"mean acceptance length {s.MeanAcceptanceLength:F2}, tokens per step {s.MeanTokensPerStep:F2}"));

if (!plain.TokenIds.SequenceEqual(speculative.TokenIds))
{
    int first = Enumerable.Range(0, Math.Min(plain.TokenIds.Count, speculative.TokenIds.Count))
        .FirstOrDefault(i => plain.TokenIds[i] != speculative.TokenIds[i], Math.Min(plain.TokenIds.Count, speculative.TokenIds.Count));
    Console.Error.WriteLine($"FAILED: greedy speculative decoding differs from plain decoding from token {first} on.");
    return 1;
}
if (s.AcceptedTokens <= 0)
{
    Console.Error.WriteLine($"FAILED: the speculative run accepted no draft tokens ({s.DraftTokens} drafted).");
    return 1;
}
Console.WriteLine($"OK: identical token ids ({plain.TokenIds.Count} tokens); {s.AcceptedTokens} draft tokens accepted");
return 0;

static string Quote(string text) => "\"" + text.ReplaceLineEndings("\\n") + "\"";
