using System.CommandLine.Parsing;
using System.CommandLine;
using SpecDecode.CommandLine;
using Spectre.Console;

namespace SpecDecode.Generate;

/// <summary>The generator's command line: options, their checks, and the entry point tests call in-process.</summary>
public static class GenerateCommand
{
    /// <summary>Parses <paramref name="args"/> and runs the generator by the tools' convention (<see cref="ToolRunner"/>):
    /// errors as one line on <paramref name="error"/>, exit 2 for bad usage or input, 1 for a failed check.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="console">Where text, progress and the summary go (tests pass a console over a StringWriter).</param>
    /// <param name="input">Where chat mode reads the user's messages.</param>
    /// <param name="error">Where error lines go; null for the process's stderr.</param>
    /// <param name="cancellationToken">Stops generation.</param>
    /// <returns>The exit code (<see cref="ToolExitCodes"/>).</returns>
    public static Task<int> RunAsync(string[] args, IAnsiConsole console, TextReader input, TextWriter? error = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(console);
        return ToolRunner.RunAsync(Create(console, input), args, console.Profile.Out.Writer, error ?? Console.Error, Classify, cancellationToken);
    }

    /// <summary>Failures of loading and generating that are the input's fault: a prompt longer than the context.</summary>
    private static int? Classify(Exception e) => e is RequestRejectedException ? ToolExitCodes.Usage : null;

    /// <summary>The root command, writing to <paramref name="console"/> and reading chat input from <paramref name="input"/>.</summary>
    public static RootCommand Create(IAnsiConsole console, TextReader input)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(input);

        var prompt = new Argument<string?>("prompt") { Description = "The prompt text (or use --prompt-file, or --chat).", Arity = ArgumentArity.ZeroOrOne };
        var promptFile = ToolOptions.InputFile("--prompt-file", "Read the prompt from this file (a non-empty text file).");
        var chat = new Option<bool>("--chat") { Description = "Interactive chat with history, rendered with the checkpoint's chat template. /reset clears the history, /exit (or end of input) quits." };
        var model = new Option<string?>("--model", "-m") { Description = $"A Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json). Default: the embedded model, {ModelLoading.DefaultModelRelativePath} in the repository." };
        var draft = ToolOptions.Choice("--draft", "The drafter.", "suffix", GeneratorSettings.DraftNames, "-d");
        var draftModel = new Option<string?>("--draft-model") { Description = $"The draft model's checkpoint folder (same tokenizer as the target), for --draft draft-model or hybrid. Default with the embedded model: {ModelLoading.DefaultDraftModelRelativePath}." };
        var maxNew = ToolOptions.OptionalInt("--max-new-tokens", "Tokens to generate at most (default 256, less when the context is smaller; below --max-context).", 1, int.MaxValue, "-n");
        var temperature = ToolOptions.Float("--temperature", "0 is greedy decoding (output identical to plain decoding); above 0 samples.", 0f, NumberRange.AtLeast(0), "-t");
        var topK = ToolOptions.Int("--top-k", "Sample among the k most probable tokens (0: off).", 0, 0);
        var topP = ToolOptions.Float("--top-p", "Nucleus sampling threshold in (0, 1] (1: off).", 1f, new NumberRange(0, 1, MinExclusive: true));
        var seed = ToolOptions.OptionalLong("--seed", "Seed for sampling (reproducible output).", 0);
        var budget = ToolOptions.OptionalInt("--budget", "Draft tokens per step at most (default 32, below --max-context).", 0);
        var adaptive = new Option<bool>("--adaptive") { Description = "Adaptive speculation: measure the verification cost and draft only what pays.", DefaultValueFactory = _ => true };
        var noAdaptive = new Option<bool>("--no-adaptive") { Description = "Verify every draft as proposed." };
        var device = ToolOptions.Choice("--device", "cpu or cuda (default: cuda when a CUDA libtorch is loaded, else cpu).", null, ["cpu", "cuda"]);
        var dtype = ToolOptions.Choice("--dtype", "float32, float16 or bfloat16 (default: float32 on the CPU, the checkpoint's half type on CUDA).", null, ModelLoading.DTypeNames);
        var noCudaGraphs = new Option<bool>("--no-cuda-graphs") { Description = "On CUDA, run plain decoding steps without CUDA graphs and SpecDecode's decode-step kernels (they are on by default there)." };
        var maxContext = ToolOptions.OptionalInt("--max-context", $"Tokens of context the KV cache holds (prompt + output + one draft). Default: the model's max_position_embeddings, at most {ModelFit.DefaultContextCap}.", 16);
        var stop = new Option<string[]>("--stop") { Description = "Stop at this string (repeatable).", Arity = ArgumentArity.ZeroOrMore, AllowMultipleArgumentsPerToken = false };
        var compare = new Option<bool>("--compare") { Description = "Run plain decoding and speculative decoding on the same prompt; print both times, the speedup and whether the outputs match (exit 1 when greedy outputs differ)." };

        var root = new RootCommand("Generate text with speculative decoding (SpecDecode): streams the output, shows tokens/s and acceptance, and compares against plain decoding with --compare.")
        {
            prompt, promptFile, chat, model, draft, draftModel, maxNew, temperature, topK, topP, seed, budget, adaptive,
            noAdaptive, device, dtype, noCudaGraphs, maxContext, stop, compare,
        };
        root.Validators.Add(r =>
        {
            // read only values that parsed: GetValue throws for an option whose parser refused its value
            if (r.GetResult(prompt) is { Tokens.Count: > 0 } && r.GetResult(promptFile) is { Implicit: false })
            {
                r.AddError("Give the prompt either as an argument or with --prompt-file, not both.");
            }
            if (r.GetValue(chat) && r.GetValue(compare))
            {
                r.AddError("--compare runs one prompt; it cannot be combined with --chat.");
            }
            if (r.GetResult(prompt) is { Tokens.Count: > 0 } && string.IsNullOrWhiteSpace(r.GetValue(prompt)))
            {
                r.AddError("The prompt argument is empty: give the prompt text, or leave it out for the demo.");
            }
        });

        root.SetAction(async (p, ct) =>
        {
            DraftKind kind = (DraftKind)Array.IndexOf(GeneratorSettings.DraftNames, p.GetValue(draft));
            if (p.GetValue(draftModel) is not null && p.GetResult(draft) is null or { Implicit: true })
            {
                kind = DraftKind.DraftModel;   // --draft-model alone means drafting with it
            }
            var settings = new GeneratorSettings
            {
                Prompt = p.GetValue(promptFile) is FileInfo file ? ReadPromptFile(file) : p.GetValue(prompt),
                Chat = p.GetValue(chat),
                ModelFolder = p.GetValue(model),
                Draft = kind,
                DraftModelFolder = p.GetValue(draftModel),
                MaxNewTokens = p.GetValue(maxNew),
                Temperature = p.GetValue(temperature),
                TopK = p.GetValue(topK),
                TopP = p.GetValue(topP),
                Seed = p.GetValue(seed),
                Budget = p.GetValue(budget),
                Adaptive = p.GetValue(adaptive) && !p.GetValue(noAdaptive),
                Device = p.GetValue(device),
                DType = p.GetValue(dtype),
                CudaGraphs = !p.GetValue(noCudaGraphs),
                MaxContext = p.GetValue(maxContext),
                Stop = p.GetValue(stop) ?? [],
                Compare = p.GetValue(compare),
            };
            return await GeneratorRun.RunAsync(settings, console, input, ct).ConfigureAwait(false);
        });
        return root;
    }

    /// <summary>The prompt file's text (the option refused a missing, folder or empty file while parsing).</summary>
    private static string ReadPromptFile(FileInfo file)
    {
        string text = File.ReadAllText(file.FullName);
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new GeneratorException($"--prompt-file: {file.FullName} holds only white space; give a file with the prompt text.");
        }
        return text;
    }
}
