namespace SpecDecode.Replay;

/// <summary>How the replicas of a simulated fleet share what their suffix caches learn.</summary>
public enum FleetMode
{
    /// <summary>Each replica's global tree holds only the responses it generated itself.</summary>
    Isolated,

    /// <summary>Every finished response is also delivered to every other replica's global tree, after a delay.</summary>
    Shared,

    /// <summary>
    /// One process seeing everything: a single drafter serves every slot of the fleet, in the same schedule (the upper
    /// bound sharing can reach; it also sees other requests' responses while they are being generated).
    /// </summary>
    Pooled,
}
