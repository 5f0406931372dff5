namespace SpecDecode.Router.Tests;

/// <summary>
/// The calls agents send through a fleet: trajectories of calls, each call one HTTP request to the fleet's entry (the
/// router), in a conversation named by the router's header. <see cref="RecordedCalls"/> replays recorded token ids to
/// the model-free stand-in; <see cref="ChatCalls"/> sends OpenAI chat completions to the real server.
/// </summary>
internal interface IFleetCalls
{
    /// <summary>The trajectories (agents' conversations).</summary>
    int Trajectories { get; }

    /// <summary>Calls of trajectory <paramref name="trajectory"/>.</summary>
    int Calls(int trajectory);

    /// <summary>The conversation id of trajectory <paramref name="trajectory"/> (the router's header).</summary>
    string Conversation(int trajectory);

    /// <summary>The request of one call, addressed to <paramref name="entry"/>.</summary>
    HttpRequestMessage Request(string entry, int trajectory, int call);

    /// <summary>Reads what one successful call measured; fails the test when the answer is not what it must be.</summary>
    Task<CallMeasure> ReadAsync(HttpResponseMessage response, int trajectory, int call);
}

/// <summary>What one call measured: verification steps, tokens emitted, draft tokens proposed and accepted, and the
/// answer's text where the replica generated it (null where it replayed a recorded one).</summary>
internal readonly record struct CallMeasure(long Steps, long Tokens, long DraftedTokens, long AcceptedTokens, string? Answer = null);
