using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>How to choose the token after a prefilled sequence (<see cref="TargetModel.PrefillAndChoose"/>).</summary>
/// <param name="Sampling">Temperature 0 for the argmax, else the sampling settings whose random stream draws it.</param>
/// <param name="Forced">Benchmarks: the recorded tokens from here on; the first one is taken in place of the choice, after
/// the same work.</param>
internal readonly record struct NextTokenChoice(SamplingOptions Sampling, int[]? Forced = null);

public sealed partial class TargetModel
{
    /// <summary>
    /// <see cref="Prefill"/>, and for each sequence with a choice the token after its last token, from the logits of the
    /// prefill's own last row: the first token of a request comes with its prompt's prefill instead of a verification step
    /// after it (docs/kv-cache.md, "The first token"). The sequence's cache then holds every token passed, and the chosen
    /// token is the root of its next step. Greedy choices are the argmax (as a step's); sampled ones draw from the options'
    /// random stream, as a step with an empty draft would.
    /// </summary>
    /// <returns>Per sequence the chosen token, or -1 where <paramref name="choices"/> has none.</returns>
    /// <exception cref="ArgumentException">The choices are not one per sequence, or a sequence with a choice has no
    /// token.</exception>
    internal int[] PrefillAndChoose(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<NextTokenChoice?> choices)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        ArgumentNullException.ThrowIfNull(choices);
        if (choices.Count != sequences.Count)
        {
            throw new ArgumentException($"{sequences.Count} sequences but {choices.Count} choices: give one per sequence (null for none).", nameof(choices));
        }
        int[] marked = [.. Enumerable.Range(0, sequences.Count).Where(i => choices[i] is not null)];
        if (marked.FirstOrDefault(i => sequences[i].Tokens.Length == 0, -1) is int empty and >= 0)
        {
            throw new ArgumentException($"Sequence {empty} (slot {sequences[empty].Slot}) has a choice but no token: the token after a prefill follows its last token.", nameof(choices));
        }
        var chosen = new int[sequences.Count];
        Array.Fill(chosen, -1);
        using var scope = NewDisposeScope();
        Tensor? logits = PrefillCore(sequences, [.. choices.Select(c => c is not null)]);
        if (logits is null)
        {
            return chosen;
        }
        int[] next = _reference.Sampling.Next(logits, [.. marked.Select(i => sequences[i].Tokens[^1])],
            [.. marked.Select(i => choices[i]!.Value.Sampling)], [.. marked.Select(i => choices[i]!.Value.Forced)]);
        for (int j = 0; j < marked.Length; j++)
        {
            chosen[marked[j]] = next[j];
        }
        return chosen;
    }

    /// <summary>A tensor-parallel rank's replay of the coordinator's prefill: the marked sequences' last rows take part in
    /// the last layer's collectives and the head's gather; only the coordinator chooses.</summary>
    internal void PrefillOnRank(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<bool> logitsAfter) =>
        PrefillCore(sequences, logitsAfter)?.Dispose();

    /// <summary><see cref="Prefill"/> that returns the logits after the last token of each sequence
    /// <paramref name="logitsAfter"/> marks: [k, vocab] float32 on the CPU, in the sequences' order (null when none is
    /// marked). For tests of the prefill's last rows.</summary>
    internal Tensor? PrefillWithLogits(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<bool> logitsAfter)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        ArgumentNullException.ThrowIfNull(logitsAfter);
        if (logitsAfter.Count != sequences.Count)
        {
            throw new ArgumentException("Give one mark per sequence.", nameof(logitsAfter));
        }
        using var scope = NewDisposeScope();
        return PrefillCore(sequences, logitsAfter)?.to(ScalarType.Float32).cpu().MoveToOuterDisposeScope();
    }
}
