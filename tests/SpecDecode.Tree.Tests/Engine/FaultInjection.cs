using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tree.Tests;

/// <summary>Where a <see cref="FaultyDrafter"/> (or the policy beside it) fails for a poisoned request.</summary>
public enum Fault
{
    None,
    StartRequestThrows,
    ProposeThrows,
    ProposeTokenOutsideVocabulary,
    ProposeOverBudget,
    ObserveThrows,
    EndRequestThrows,
    PolicyThrows,
}

/// <summary>
/// A drafter around a real one that fails, for poisoned requests only, in the way <see cref="Fault"/> says. A request is
/// poisoned when its prompt starts with <see cref="PoisonToken"/> (EngineFixture prompts never do).
/// </summary>
internal sealed class FaultyDrafter(IDrafter inner, Fault fault, int vocabulary) : IDrafter, ISpeculationPolicy
{
    public const int PoisonToken = 7;

    private readonly ConcurrentDictionary<RequestId, bool> _poisoned = new();

    public Fault Fault { get; set; } = fault;

    public int EndRequestCalls;

    public string Name => "faulty";

    public int MaxBudget => inner.MaxBudget;

    private bool Hit(RequestId request, Fault fault) => Fault == fault && _poisoned.TryGetValue(request, out bool p) && p;

    public void StartRequest(RequestId request, ReadOnlySpan<int> prompt, DraftRequestOptions? options)
    {
        _poisoned[request] = prompt.Length > 0 && prompt[0] == PoisonToken;
        if (Hit(request, Fault.StartRequestThrows))
        {
            throw new InvalidOperationException("injected StartRequest failure");
        }
        inner.StartRequest(request, prompt, options);
    }

    public DraftTree Propose(RequestId request, int maxTokens)
    {
        if (Hit(request, Fault.ProposeThrows))
        {
            throw new InvalidOperationException("injected Propose failure");
        }
        if (Hit(request, Fault.ProposeTokenOutsideVocabulary))
        {
            return DraftTree.Chain([40, vocabulary + 5]);
        }
        if (Hit(request, Fault.ProposeOverBudget))
        {
            return DraftTree.Chain(Enumerable.Range(0, maxTokens + 3).Select(i => 40 + i).ToArray());
        }
        return inner.Propose(request, maxTokens);
    }

    public void Observe(RequestId request, ReadOnlySpan<int> emitted)
    {
        if (Hit(request, Fault.ObserveThrows))
        {
            throw new InvalidOperationException("injected Observe failure");
        }
        inner.Observe(request, emitted);
    }

    public void EndRequest(RequestId request)
    {
        Interlocked.Increment(ref EndRequestCalls);
        bool hit = Fault == Fault.EndRequestThrows;   // every request: the clean-up path must survive it
        inner.EndRequest(request);
        if (hit)
        {
            throw new InvalidOperationException("injected EndRequest failure");
        }
    }

    public int ChooseBudget(in SpeculationInput input) =>
        Hit(input.Request, Fault.PolicyThrows) ? throw new InvalidOperationException("injected policy failure") : int.MaxValue;

    public void Dispose() => inner.Dispose();
}

/// <summary>A logger that throws from every call (and says it is enabled for everything).</summary>
internal sealed class ThrowingLogger : ILogger
{
    public int Calls;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => throw new InvalidOperationException("injected BeginScope failure");

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        Interlocked.Increment(ref Calls);
        throw new InvalidOperationException("injected logger failure");
    }
}

/// <summary>The byte tokenizer, with two faults: encoding blocks on a gate (to hold a submitter inside
/// <c>Submit</c>), and decoding throws while <see cref="FailDecode"/> is set.</summary>
internal sealed class GatedTokenizer : Tokenizer
{
    public readonly ManualResetEventSlim Entered = new();
    public readonly ManualResetEventSlim Release = new(initialState: true);
    public volatile bool FailDecode;

    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        Entered.Set();
        Release.Wait();
        string s = text ?? textSpan.ToString();
        return new EncodeResults<EncodedToken> { Tokens = ByteTokenizer.Instance.EncodeToTokens(s, out _), CharsConsumed = s.Length };
    }

    public override string Decode(IEnumerable<int> ids) =>
        FailDecode ? throw new FormatException("injected Decode failure") : ByteTokenizer.Instance.Decode(ids);

    public override System.Buffers.OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten) =>
        FailDecode ? throw new FormatException("injected Decode failure") : ByteTokenizer.Instance.Decode(ids, destination, out idsConsumed, out charsWritten);
}
