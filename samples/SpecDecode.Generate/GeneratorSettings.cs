namespace SpecDecode.Generate;

/// <summary>The drafters the generator offers.</summary>
public enum DraftKind
{
    /// <summary>Plain decoding: one token per target forward.</summary>
    None,

    /// <summary>SuffixDecoding's suffix-tree cache over the prompt and earlier responses.</summary>
    Suffix,

    /// <summary>n-gram lookup in the prompt and the text so far.</summary>
    PromptLookup,

    /// <summary>A small model of the same tokenizer (<c>--draft-model</c>).</summary>
    DraftModel,

    /// <summary>The suffix drafter when it matches, else the draft model.</summary>
    Hybrid,
}

/// <summary>Everything the command line decided, validated by the parser.</summary>
public sealed record GeneratorSettings
{
    /// <summary>The names <c>--draft</c> accepts, in <see cref="DraftKind"/> order.</summary>
    public static readonly string[] DraftNames = ["none", "suffix", "prompt-lookup", "draft-model", "hybrid"];

    /// <summary>The prompt text (argument or file), or null.</summary>
    public string? Prompt { get; init; }

    /// <summary>Chat messages to continue instead of a prompt text (the demo conversation), or null.</summary>
    public IReadOnlyList<PromptMessage>? Messages { get; init; }

    /// <summary>Interactive chat with history.</summary>
    public bool Chat { get; init; }

    /// <summary>The checkpoint folder, or null for the embedded default.</summary>
    public string? ModelFolder { get; init; }

    /// <summary>The drafter.</summary>
    public DraftKind Draft { get; init; } = DraftKind.Suffix;

    /// <summary>The draft model's checkpoint folder (draft-model and hybrid).</summary>
    public string? DraftModelFolder { get; init; }

    /// <summary>Tokens to generate at most; null until <see cref="ModelLoading.FitToModel"/> sets the default (256, less
    /// when the context is smaller).</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary>0 is greedy.</summary>
    public float Temperature { get; init; }

    /// <summary>0 is off.</summary>
    public int TopK { get; init; }

    /// <summary>1 is off.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Sampling seed, or null for a random one.</summary>
    public long? Seed { get; init; }

    /// <summary>Draft tokens per step at most (SpeculativeEngineOptions.MaxDraftTokens); null until
    /// <see cref="ModelLoading.FitToModel"/> sets the default (32, below the context).</summary>
    public int? Budget { get; init; }

    /// <summary>Adaptive speculation.</summary>
    public bool Adaptive { get; init; } = true;

    /// <summary>"cpu", "cuda" or null for the default device.</summary>
    public string? Device { get; init; }

    /// <summary>"float32", "float16", "bfloat16" or null for the default.</summary>
    public string? DType { get; init; }

    /// <summary>On CUDA, plain decoding steps as CUDA graphs, through the decode-step kernels where the model allows
    /// (<see cref="SpecDecode.Tree.TargetModelOptions.CudaGraphs"/>); ignored on the CPU.</summary>
    public bool CudaGraphs { get; init; } = true;

    /// <summary>KV-cache tokens (prompt + output + one draft); null until <see cref="ModelLoading.FitToModel"/> sets the
    /// default (the model's max_position_embeddings, at most 4096).</summary>
    public int? MaxContext { get; init; }

    /// <summary>The fitted context.</summary>
    /// <exception cref="InvalidOperationException">The settings were not fitted to the model.</exception>
    public int Context => MaxContext ?? throw NotFitted();

    /// <summary>The fitted draft budget.</summary>
    /// <exception cref="InvalidOperationException">The settings were not fitted to the model.</exception>
    public int DraftBudget => Budget ?? throw NotFitted();

    /// <summary>The fitted tokens to generate at most.</summary>
    /// <exception cref="InvalidOperationException">The settings were not fitted to the model.</exception>
    public int NewTokens => MaxNewTokens ?? throw NotFitted();

    /// <summary>Stop strings.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>Run plain and speculative decoding and compare.</summary>
    public bool Compare { get; init; }

    /// <summary>The sampling options, or null for greedy decoding.</summary>
    public SamplingOptions? Sampling => Temperature == 0f
        ? null
        : new SamplingOptions { Temperature = Temperature, TopK = TopK, TopP = TopP, Seed = Seed };

    /// <summary>The name of <see cref="Draft"/> on the command line.</summary>
    public string DraftName => DraftNames[(int)Draft];

    private static InvalidOperationException NotFitted() =>
        new("The settings are not fitted to the model yet: call ModelLoading.FitToModel first.");
}
