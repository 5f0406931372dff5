namespace SpecDecode.Train.Tokenizer;

/// <summary>
/// A trained byte-level BPE vocabulary. Ids 0-255 are the single bytes (id = byte value), then one id per merge in merge
/// order, then the special tokens.
/// </summary>
/// <param name="Tokens">Every ordinary token in id order, written in the byte-level alphabet (<see cref="ByteLevelAlphabet"/>).</param>
/// <param name="Merges">The merges in priority order; merge <c>i</c> produces token <c>256 + i</c>.</param>
/// <param name="SpecialTokens">The special tokens in id order; the first has id <c>Tokens.Count</c>.</param>
public sealed record BpeVocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<(string Left, string Right)> Merges, IReadOnlyList<string> SpecialTokens)
{
    /// <summary>The total number of ids: ordinary tokens plus special tokens.</summary>
    public int Count => Tokens.Count + SpecialTokens.Count;

    /// <summary>The id of special token <paramref name="token"/>.</summary>
    /// <exception cref="KeyNotFoundException">It is not one of <see cref="SpecialTokens"/>.</exception>
    public int SpecialTokenId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        for (int i = 0; i < SpecialTokens.Count; i++)
        {
            if (SpecialTokens[i] == token)
            {
                return Tokens.Count + i;
            }
        }
        throw new KeyNotFoundException($"'{token}' is not a special token of this vocabulary.");
    }
}
