using System.CommandLine;
using System.CommandLine.Parsing;
using Spectre.Console;

namespace SpecDecode.Generate;

/// <summary>The generator's command line: options, their checks, and the entry point tests call in-process.</summary>
public static class GenerateCommand
{
    /// <summary>Parses <paramref name="args"/> and runs the generator.</summary>
    /// <param name="args">The command line.</param>
    /// <param name="console">Where text, progress and the summary go (tests pass a console over a StringWriter).</param>
    /// <param name="input">Where chat mode reads the user's messages.</param>
    /// <param name="error">Where parse errors and help go besides <paramref name="console"/>; null for the console's writer.</param>
    /// <param name="cancellationToken">Stops generation.</param>
    /// <returns>The exit code (see <see cref="ExitCodes"/>).</returns>
    public static async Task<int> RunAsync(string[] args, IAnsiConsole console, TextReader input, TextWriter? error = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        RootCommand root = Create(console, input);
        ParseResult parsed = root.Parse(args);
        TextWriter output = console.Profile.Out.Writer;
        if (parsed.Errors.Count > 0)
        {
            TextWriter errors = error ?? output;
            foreach (ParseError e in parsed.Errors)
            {
                await errors.WriteLineAsync("error: " + e.Message).ConfigureAwait(false);
            }
            await errors.WriteLineAsync("Run with --help to see the options.").ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = error ?? output }, cancellationToken)
            .ConfigureAwait(false);
    }

    /// <summary>The root command, writing to <paramref name="console"/> and reading chat input from <paramref name="input"/>.</summary>
    public static RootCommand Create(IAnsiConsole console, TextReader input)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(input);

        var prompt = new Argument<string?>("prompt") { Description = "The prompt text (or use --prompt-file, or --chat).", Arity = ArgumentArity.ZeroOrOne };
        var promptFile = new Option<FileInfo?>("--prompt-file") { Description = "Read the prompt from this file." };
        var chat = new Option<bool>("--chat") { Description = "Interactive chat with history, rendered with the checkpoint's chat template. /reset clears the history, /exit (or end of input) quits." };
        var model = new Option<string?>("--model", "-m") { Description = $"A Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json). Default: the embedded model, {ModelLoading.DefaultModelRelativePath} in the repository." };
        var draft = new Option<string>("--draft", "-d") { Description = "The drafter.", DefaultValueFactory = _ => "suffix" };
        draft.AcceptOnlyFromAmong(GeneratorSettings.DraftNames);
        var draftModel = new Option<string?>("--draft-model") { Description = $"The draft model's checkpoint folder (same tokenizer as the target), for --draft draft-model or hybrid. Default with the embedded model: {ModelLoading.DefaultDraftModelRelativePath}." };
        var maxNew = new Option<int>("--max-new-tokens", "-n") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature", "-t") { Description = "0 is greedy decoding (output identical to plain decoding); above 0 samples.", DefaultValueFactory = _ => 0f };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k most probable tokens (0: off).", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling threshold in (0, 1] (1: off).", DefaultValueFactory = _ => 1f };
        var seed = new Option<long?>("--seed") { Description = "Seed for sampling (reproducible output)." };
        var budget = new Option<int>("--budget") { Description = "Draft tokens per step at most.", DefaultValueFactory = _ => 32 };
        var adaptive = new Option<bool>("--adaptive") { Description = "Adaptive speculation: measure the verification cost and draft only what pays.", DefaultValueFactory = _ => true };
        var noAdaptive = new Option<bool>("--no-adaptive") { Description = "Verify every draft as proposed." };
        var device = new Option<string?>("--device") { Description = "cpu or cuda (default: cuda when a CUDA libtorch is loaded, else cpu)." };
        device.AcceptOnlyFromAmong("cpu", "cuda");
        var dtype = new Option<string?>("--dtype") { Description = "float32, float16 or bfloat16 (default: float32 on the CPU, the checkpoint's half type on CUDA)." };
        dtype.AcceptOnlyFromAmong(ModelLoading.DTypeNames);
        var noCudaGraphs = new Option<bool>("--no-cuda-graphs") { Description = "On CUDA, run plain decoding steps without CUDA graphs and SpecDecode's decode-step kernels (they are on by default there)." };
        var maxContext = new Option<int>("--max-context") { Description = "Tokens of context the KV cache holds (prompt + output + one draft).", DefaultValueFactory = _ => 4096 };
        var stop = new Option<string[]>("--stop") { Description = "Stop at this string (repeatable).", Arity = ArgumentArity.ZeroOrMore, AllowMultipleArgumentsPerToken = false };
        var compare = new Option<bool>("--compare") { Description = "Run plain decoding and speculative decoding on the same prompt; print both times, the speedup and whether the outputs match." };

        AtLeast(maxNew, 1);
        AtLeast(topK, 0);
        AtLeast(budget, 0);
        AtLeast(maxContext, 16);
        temperature.Validators.Add(r =>
        {
            float t = r.GetValueOrDefault<float>();
            if (!(t >= 0f) || float.IsInfinity(t))
            {
                r.AddError($"--temperature must be a number >= 0 (0 is greedy); got {t}.");
            }
        });
        topP.Validators.Add(r =>
        {
            float p = r.GetValueOrDefault<float>();
            if (!(p > 0f && p <= 1f))
            {
                r.AddError($"--top-p must lie in (0, 1]; got {p}.");
            }
        });

        var root = new RootCommand("Generate text with speculative decoding (SpecDecode): streams the output, shows tokens/s and acceptance, and compares against plain decoding with --compare.")
        {
            prompt, promptFile, chat, model, draft, draftModel, maxNew, temperature, topK, topP, seed, budget, adaptive,
            noAdaptive, device, dtype, noCudaGraphs, maxContext, stop, compare,
        };
        root.Validators.Add(r =>
        {
            if (r.GetValue(prompt) is not null && r.GetValue(promptFile) is not null)
            {
                r.AddError("Give the prompt either as an argument or with --prompt-file, not both.");
            }
            if (r.GetValue(chat) && r.GetValue(compare))
            {
                r.AddError("--compare runs one prompt; it cannot be combined with --chat.");
            }
        });

        root.SetAction(async (p, ct) =>
        {
            DraftKind kind = (DraftKind)Array.IndexOf(GeneratorSettings.DraftNames, p.GetValue(draft));
            if (p.GetValue(draftModel) is not null && p.GetResult(draft) is null or { Implicit: true })
            {
                kind = DraftKind.DraftModel;   // --draft-model alone means drafting with it
            }
            try
            {
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
            }
            catch (GeneratorException e)
            {
                console.MarkupLine("[red]error:[/] " + Markup.Escape(e.Message));
                return e.ExitCode;
            }
        });
        return root;
    }

    private static void AtLeast(Option<int> option, int minimum) =>
        option.Validators.Add(r =>
        {
            int value = r.GetValueOrDefault<int>();
            if (value < minimum)
            {
                r.AddError($"{option.Name} must be at least {minimum}; got {value}.");
            }
        });

    private static string ReadPromptFile(FileInfo file)
    {
        if (!file.Exists)
        {
            throw new GeneratorException($"The prompt file {file.FullName} does not exist. Pass an existing text file with --prompt-file, or the prompt itself as an argument.");
        }
        return File.ReadAllText(file.FullName);
    }
}
