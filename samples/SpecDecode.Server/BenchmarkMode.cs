using Microsoft.ML.Tokenizers;
using SpecDecode.Replay;

namespace SpecDecode.Server;

/// <summary>
/// The server's benchmark mode (<c>--benchmark-random-weights config.json</c>), for the agent-loop figure on a GPU: the
/// model has random weights of a real shape, so its answers mean nothing, and a request may carry the answer the trace
/// recorded (<c>"specdecode_benchmark": {"forced_response": "..."}</c>), which decides acceptance in place of the model
/// (the engine's forced verification, as bench/SpecDecode.EngineBench uses it): the steps, drafts and batches are those
/// of a model that answers like the trace. Prompts and forced answers are token ids of the replay protocol
/// (o200k_base, each message's header, content and footer tokenized apart) taken modulo the model's vocabulary, as
/// EngineBench maps them, so the HTTP path and the in-process path see the same ids.
/// </summary>
/// <remarks>It cannot be switched on by accident: only the command-line flag creates it, the server logs it at start,
/// <c>/v1/models</c> names the model <c>benchmark-...</c>, and a production server refuses the extension field with 400.</remarks>
public sealed class BenchmarkMode
{
    /// <summary>The request field that carries a recorded answer.</summary>
    public const string Field = "specdecode_benchmark";

    private readonly ProtocolTokenizer _protocol;
    private readonly Lock _gate = new();

    private BenchmarkMode(ProtocolTokenizer protocol, Tokenizer tokenizer, int vocab)
    {
        _protocol = protocol;
        Tokenizer = tokenizer;
        Vocab = vocab;
    }

    /// <summary>The tokenizer the engine decodes with (o200k_base: ids below the model's vocabulary decode to some text).</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The model's vocabulary size: ids are taken modulo it.</summary>
    public int Vocab { get; }

    /// <summary>Creates the mode for a model of <paramref name="vocab"/> token ids.</summary>
    public static BenchmarkMode Create(int vocab) =>
        new(ProtocolTokenizer.CreateO200kBase(), TiktokenTokenizer.CreateForEncoding("o200k_base"), vocab);

    /// <summary>The prompt ids of <paramref name="messages"/> by the replay protocol: every message's header, content and
    /// footer, then the assistant header; modulo <see cref="Vocab"/>.</summary>
    /// <exception cref="OpenAiException">A role the protocol does not know.</exception>
    public int[] EncodePrompt(IReadOnlyList<PromptMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var ids = new List<int>();
        lock (_gate)   // the protocol tokenizer's piece cache is not thread-safe
        {
            foreach (PromptMessage m in messages)
            {
                if (!MessageRoles.TryParse(m.Role, out MessageRole role))
                {
                    throw OpenAiException.BadRequest($"Benchmark mode replays system, user and assistant messages; got role '{m.Role}'.", "messages");
                }
                ids.AddRange(_protocol.Header(role).ToArray());
                ids.AddRange(_protocol.Encode(m.Content));
                ids.AddRange(_protocol.FooterIds.ToArray());
            }
            ids.AddRange(_protocol.Header(MessageRole.Assistant).ToArray());
        }
        return Map(ids);
    }

    /// <summary>The ids of a recorded answer (its content alone, as the protocol's response), modulo <see cref="Vocab"/>.</summary>
    public int[] EncodeResponse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        lock (_gate)
        {
            return Map(_protocol.Encode(text));
        }
    }

    private int[] Map(IReadOnlyList<int> ids)
    {
        var mapped = new int[ids.Count];
        for (int i = 0; i < mapped.Length; i++)
        {
            mapped[i] = ids[i] % Vocab;
        }
        return mapped;
    }
}
