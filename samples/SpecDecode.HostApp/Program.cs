// A host application as a user writes it against the SpecDecode NuGet packages: load a Hugging Face checkpoint (the
// repository's embedded default model unless a folder is given), build a SpeculativeEngine with the suffix drafter,
// generate greedily twice (plain, then speculative) and check that speculative decoding changed nothing but the number of
// steps; with a chat template, ask once more through the Microsoft.Extensions.AI IChatClient (SpecDecode.Extensions.AI),
// which must give the same text. Exit code 0 when it holds, 1 otherwise, 2 for usage (including a default model that
// cannot be found).
using System.Globalization;
using Microsoft.Extensions.AI;
using SpecDecode;
using SpecDecode.Extensions.AI;
using SpecDecode.HostApp;
using SpecDecode.Suffix;
using SpecDecode.Tokenization;
using SpecDecode.Tree;

// for a checkpoint without a chat template (and no prompt argument): a text prompt that repeats itself
const string FallbackPrompt = "abc def abc def ghi abc def abc def ghi abc def";
const string Usage =
    "usage: SpecDecode.HostApp [<hf-checkpoint-folder> [prompt] [max-new-tokens]]\n" +
    "  no folder: the embedded default model (models/default in the SpecDecode repository)\n" +
    "  no prompt: a short example conversation when the checkpoint has a chat template, else a short text prompt";

if (args.Length > 3 || args is ["-h" or "--help", ..])
{
    Console.Error.WriteLine(Usage);
    return 2;
}
string folder;
if (args.Length == 0)
{
    if (DefaultModel.Find() is not { } found)
    {
        IReadOnlyList<string> looked = DefaultModel.Candidates();
        Console.Error.WriteLine(
            "No checkpoint folder given and the embedded default model was not found: " +
            (looked.Count == 0
                ? $"no folder holding SpecDecode.sln above the working directory ({Directory.GetCurrentDirectory()}) or the app's folder ({AppContext.BaseDirectory})"
                : "looked for " + string.Join(" and ", looked.Select(c => Path.Combine(c, "config.json")))) +
            ". Run the app from inside the SpecDecode repository, or pass a Hugging Face checkpoint folder " +
            "(config.json, *.safetensors, tokenizer.json).\n" + Usage);
        return 2;
    }
    folder = found;
}
else
{
    folder = Path.GetFullPath(args[0]);
    if (!Directory.Exists(folder))
    {
        Console.Error.WriteLine($"The checkpoint folder {folder} does not exist (a Hugging Face folder: config.json, *.safetensors, tokenizer.json).");
        return 2;
    }
}
int maxNewTokens = 48;
if (args.Length > 2 && (!int.TryParse(args[2], NumberStyles.None, CultureInfo.InvariantCulture, out maxNewTokens) || maxNewTokens < 1))
{
    Console.Error.WriteLine($"max-new-tokens must be a positive integer, not {args[2]}.\n{Usage}");
    return 2;
}

using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { MaxBatch = 1, MaxContext = 1024 });
var tokenizer = CheckpointTokenizer.Load(folder);
ChatTemplate? chatTemplate = ChatTemplate.Load(folder);
Console.WriteLine($"loaded {folder}: {model.Config.LayerCount} layers, vocabulary {model.Config.VocabSize}, on {model.Device.type} as {model.DType}");

GenerationRequest request = (args.Length > 1, chatTemplate) switch
{
    (true, _) => new GenerationRequest { Prompt = args[1], MaxNewTokens = maxNewTokens },
    (false, not null) => new GenerationRequest { Messages = ExampleConversation.Messages, MaxNewTokens = maxNewTokens },
    (false, null) => new GenerationRequest { Prompt = FallbackPrompt, MaxNewTokens = maxNewTokens },
};
Console.WriteLine(request.Messages is not null
    ? $"prompt:      the example conversation ({request.Messages.Count} messages, rendered with the checkpoint's chat template)"
    : $"prompt:      {Quote(request.Prompt!)}");

GenerationResult plain;
using (SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter: null,
           new SpeculativeEngineOptions { MaxBatch = 1, ChatTemplate = chatTemplate }))
{
    plain = await engine.GenerateAsync(request);
}

GenerationResult speculative;
string? chatText = null;
using (var drafter = new SuffixDrafter())
using (SpeculativeEngine engine = SpeculativeEngine.Create(model, tokenizer, drafter, new SpeculativeEngineOptions
{
    MaxBatch = 1,
    MaxDraftTokens = 8,
    ChatTemplate = chatTemplate,
    // speculate on every step: whether drafts are verified must not depend on how fast this machine is
    AdaptiveSpeculation = false,
}))
{
    speculative = await engine.GenerateAsync(request);
    if (request.Messages is { } messages)
    {
        // the same conversation through the IChatClient adapter: greedy (no sampling option set), same budget
        using IChatClient chat = engine.AsChatClient("hostapp-model");
        ChatResponse reply = await chat.GetResponseAsync(
            messages.Select(m => new ChatMessage(new ChatRole(m.Role), m.Content)).ToList(),
            new ChatOptions { MaxOutputTokens = maxNewTokens });
        chatText = reply.Text;
    }
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
if (chatText is not null)
{
    Console.WriteLine($"chat client: {Quote(chatText)}");
    if (chatText != plain.Text)
    {
        Console.Error.WriteLine("FAILED: the IChatClient's greedy answer differs from plain decoding's text.");
        return 1;
    }
}
if (s.AcceptedTokens <= 0)
{
    Console.Error.WriteLine($"FAILED: the speculative run accepted no draft tokens ({s.DraftTokens} drafted).");
    return 1;
}
Console.WriteLine($"OK: identical token ids ({plain.TokenIds.Count} tokens); {s.AcceptedTokens} draft tokens accepted");
return 0;

static string Quote(string text) => "\"" + text.ReplaceLineEndings("\\n") + "\"";
