using System.Diagnostics;
using System.Threading.Channels;

namespace SpecDecode.Tree;

/// <summary>A request's state inside the engine, from submission to completion. Touched by the engine thread only,
/// except <see cref="CancelRequested"/> and the completion objects.</summary>
internal sealed class EngineRequest
{
    private long[] _acceptedPerPosition = new long[8];

    public EngineRequest(RequestId id, int[] prompt, GenerationRequest request, SamplingOptions? sampling, HashSet<int> stopIds,
        TextAssembler text, Channel<GenerationChunk>? stream, int[]? forced)
    {
        Id = id;
        Prompt = prompt;
        MaxNewTokens = request.MaxNewTokens;
        ConversationId = request.ConversationId;
        Sampling = sampling;
        StopIds = stopIds;
        Text = text;
        Stream = stream;
        Forced = forced;
        SubmittedAt = Stopwatch.GetTimestamp();
        Sequence = [.. prompt];
    }

    /// <summary>The prompt and every token the target emitted for it since (stop tokens included): what the request's
    /// cache holds, plus its root (the last token). A preempted request resumes from it.</summary>
    public List<int> Sequence { get; }

    /// <summary>Tokens of <see cref="Sequence"/> (but its last) cached in the request's slot; prefill chunks advance it.</summary>
    public int Prefilled { get; set; }

    /// <summary>Prompt tokens found cached at the first admission.</summary>
    public int CachedPromptTokens { get; set; } = -1;

    /// <summary>When the first token was emitted (0: none yet).</summary>
    public long FirstTokenAt { get; set; }

    public int Preemptions { get; set; }

    public RequestId Id { get; }

    public int[] Prompt { get; }

    public int MaxNewTokens { get; }

    public string? ConversationId { get; }

    /// <summary>A private copy of the request's sampling settings (null: greedy).</summary>
    public SamplingOptions? Sampling { get; }

    public bool IsGreedy => Sampling is null || Sampling.IsGreedy;

    public HashSet<int> StopIds { get; }

    public TextAssembler Text { get; }

    /// <summary>Chunks for a streaming caller; null for <see cref="SpeculativeEngine.GenerateAsync"/>.</summary>
    public Channel<GenerationChunk>? Stream { get; }

    /// <summary>Recorded response tokens that decide acceptance instead of the target (benchmarks only).</summary>
    public int[]? Forced { get; }

    public TaskCompletionSource<GenerationResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public volatile bool CancelRequested;

    public CancellationToken CancellationToken { get; set; }

    public CancellationTokenRegistration Registration { get; set; }

    public long SubmittedAt { get; }

    public long AdmittedAt { get; set; }

    public int Slot { get; set; } = -1;

    /// <summary>Whether the drafter started this request (and so must end it).</summary>
    public bool DrafterStarted { get; set; }

    /// <summary>Whether the request has completed, failed or been cancelled.</summary>
    public bool Finished { get; private set; }

    /// <summary>Marks the request finished; false when it already was (each request ends exactly once).</summary>
    public bool TryFinish()
    {
        if (Finished)
        {
            return false;
        }
        Finished = true;
        return true;
    }

    /// <summary>The last emitted token (or the prompt's last token), not yet in the target's cache.</summary>
    public int Root { get; set; }

    public List<int> Generated { get; } = [];

    /// <summary>Tokens emitted by the target (stop tokens included), which the drafter observed.</summary>
    public long Emitted { get; set; }

    public long Steps { get; set; }

    public long Drafts { get; set; }

    public long DraftTokens { get; set; }

    public long AcceptedTokens { get; set; }

    public long DraftingTicks { get; set; }

    public long VerificationTicks { get; set; }

    public long PrefillTicks { get; set; }

    /// <summary>Moving average of accepted tokens per draft (starts from the engine's).</summary>
    public double RecentAccepted { get; set; }

    public void RecordAccepted(int accepted)
    {
        if (accepted > _acceptedPerPosition.Length)
        {
            Array.Resize(ref _acceptedPerPosition, Math.Max(accepted, 2 * _acceptedPerPosition.Length));
        }
        for (int i = 0; i < accepted; i++)
        {
            _acceptedPerPosition[i]++;
        }
    }

    public GenerationStatistics Statistics(long now)
    {
        int positions = Array.FindLastIndex(_acceptedPerPosition, c => c != 0) + 1;
        return new GenerationStatistics(
            Prompt.Length, Emitted, Steps, Drafts, DraftTokens, AcceptedTokens, _acceptedPerPosition[..positions],
            Stopwatch.GetElapsedTime(0, DraftingTicks), Stopwatch.GetElapsedTime(0, VerificationTicks),
            Stopwatch.GetElapsedTime(0, PrefillTicks),
            AdmittedAt == 0 ? Stopwatch.GetElapsedTime(SubmittedAt, now) : Stopwatch.GetElapsedTime(SubmittedAt, AdmittedAt),
            Stopwatch.GetElapsedTime(SubmittedAt, now))
        {
            CachedPromptTokens = Math.Max(0, CachedPromptTokens),
            TimeToFirstToken = FirstTokenAt == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(SubmittedAt, FirstTokenAt),
            Preemptions = Preemptions,
        };
    }
}
