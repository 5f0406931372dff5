namespace SpecDecode.Fleet;

/// <summary>One finished response as it travels between replicas.</summary>
/// <param name="MessageId">Unique per response: the broker's duplicate filter and every replica's ingestion key.</param>
/// <param name="Origin">The replica that generated it.</param>
/// <param name="Identity">The model and tokenizer its token ids belong to.</param>
/// <param name="Tokens">The response's token ids (non-negative).</param>
public sealed record SharedResponse(Guid MessageId, string Origin, FleetIdentity Identity, int[] Tokens);
