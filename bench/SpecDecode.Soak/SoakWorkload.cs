using System.Text;
using Microsoft.ML.Tokenizers;
using SpecDecode.Tree;
using SpecDecode.Tokenization;
using static TorchSharp.torch;

namespace SpecDecode.Soak;

/// <summary>One prompt of the pool: a greedy request (text or chat messages, a budget, maybe stop strings) and what a solo
/// greedy run of it produces.</summary>
internal sealed record SoakPrompt(int Index, GenerationRequest Request, IReadOnlyList<int> Reference, string ReferenceText);

/// <summary>
/// The prompts the clients draw from: agent-trajectory-like text assembled from fragments that repeat (so the suffix
/// drafter finds matches), as plain text or as chat messages rendered with the checkpoint's template, with budgets of 4 ..
/// <see cref="SoakSettings.MaxNewTokens"/> and, for some, stop strings. Each has a reference: the same request run alone
/// through a plain engine (no drafter, batch 1) on a model of its own.
/// </summary>
internal static class SoakWorkload
{
    private static readonly string[] Fragments =
    [
        "THOUGHT: I need to look at the failing test first to see what it expects.\n",
        "```bash\ncat tests/test_utils.py | head -50\n```\n",
        "def parse_config(path):\n    with open(path) as f:\n        return json.load(f)\n",
        "Traceback (most recent call last):\n  File \"src/app.py\", line 42, in main\n    run(args)\n",
        "<returncode>0</returncode>\n<output>\n",
        "grep -rn \"def validate\" src/ | head -20\n",
        "The error comes from the validator, which does not accept empty lists.\n",
        "```bash\nsed -i 's/return None/return []/' src/validator.py && python -m pytest tests -x -q\n```\n",
        "FAILED tests/test_validator.py::test_empty_list - AssertionError\n",
        "class Validator:\n    def __init__(self, schema):\n        self.schema = schema\n",
        "Let me check how the function is called elsewhere in the code base.\n",
        "1 passed, 0 failed in 0.12s\n",
    ];

    private static readonly string[] StopStrings = ["\n\n", "```", "def "];

    /// <summary>Builds the pool and runs its references.</summary>
    public static IReadOnlyList<SoakPrompt> Create(string folder, Tokenizer tokenizer, ChatTemplate? template, SoakSettings settings)
    {
        var random = new Random(settings.Seed);
        var requests = new List<GenerationRequest>();
        for (int i = 0; i < settings.Prompts; i++)
        {
            var text = new StringBuilder();
            int pieces = random.Next(3, 9);
            for (int p = 0; p < pieces; p++)
            {
                text.Append(Fragments[random.Next(Fragments.Length)]);
            }
            var request = new GenerationRequest
            {
                MaxNewTokens = random.Next(4, settings.MaxNewTokens + 1),
                StopStrings = random.Next(5) == 0 ? [StopStrings[random.Next(StopStrings.Length)]] : [],
                ConversationId = random.Next(3) == 0 ? $"conversation-{random.Next(8)}" : null,
            };
            request = template is not null && random.Next(2) == 0
                ? request with { Messages = [PromptMessage.System("You are a helpful assistant that can interact with a computer."), PromptMessage.User(text.ToString())] }
                : request with { Prompt = text.ToString() };
            requests.Add(request);
        }

        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 1, MaxContext = settings.MaxContext });
        using SpeculativeEngine solo = SpeculativeEngine.Create(model, tokenizer, drafter: null, new SpeculativeEngineOptions { ChatTemplate = template });
        var pool = new List<SoakPrompt>();
        foreach (GenerationRequest request in requests)
        {
            // A conversation id changes nothing in a plain run; the reference is the request alone.
            GenerationResult result = solo.GenerateAsync(request).GetAwaiter().GetResult();
            pool.Add(new SoakPrompt(pool.Count, request, result.TokenIds, result.Text));
        }
        return pool;
    }
}
