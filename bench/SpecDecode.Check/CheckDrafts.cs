namespace SpecDecode.Check;

/// <summary>
/// Draft trees that exercise tree verification against a known greedy continuation: the next tokens as a correct chain
/// with wrong siblings around it (before or after the correct child, some with a child that would be right one level
/// down), wholly wrong drafts, and seeded random trees that sometimes start with a correct path. Whatever the draft, greedy
/// verification must emit exactly the continuation.
/// </summary>
public static class CheckDrafts
{
    /// <summary>
    /// A draft for step <paramref name="step"/> after <paramref name="done"/> tokens of <paramref name="reference"/>:
    /// up to 1 + step % 6 correct tokens as a chain, each with 0 to 2 wrong siblings; every seventh step a wrong chain.
    /// Empty when the reference is used up.
    /// </summary>
    public static DraftTree ChainWithSiblings(IReadOnlyList<int> reference, int done, int step, int vocab)
    {
        int remaining = reference.Count - done;
        if (remaining <= 0)
        {
            return DraftTree.Empty;
        }
        var tokens = new List<int>();
        var parents = new List<int>();
        if (step % 7 == 6 && vocab > 1)
        {
            // Wholly wrong: the first token differs from the reference, so nothing is accepted.
            int first = (reference[done] + 1) % vocab;
            tokens.AddRange([first, reference[done]]);
            parents.AddRange([-1, 0]);
            return DraftTree.Create(tokens.ToArray(), parents.ToArray(), []);
        }
        int length = Math.Min(1 + step % 6, remaining);
        int parent = -1;
        for (int depth = 0; depth < length; depth++)
        {
            int correct = reference[done + depth];
            int[] wrong = WrongTokens(correct, vocab, (depth + step) % 3, step + depth);
            bool correctFirst = (step + depth) % 2 == 0;
            int correctIndex = -1;
            if (correctFirst)
            {
                correctIndex = Add(tokens, parents, correct, parent);
            }
            for (int w = 0; w < wrong.Length; w++)
            {
                int sibling = Add(tokens, parents, wrong[w], parent);
                if (w == 0 && done + depth + 1 < reference.Count)
                {
                    // A trap: the next correct token under a wrong node must not be accepted.
                    Add(tokens, parents, reference[done + depth + 1], sibling);
                }
            }
            if (!correctFirst)
            {
                correctIndex = Add(tokens, parents, correct, parent);
            }
            parent = correctIndex;
        }
        return DraftTree.Create(tokens.ToArray(), parents.ToArray(), []);
    }

    /// <summary>
    /// A random tree of 1 to 16 nodes with random tokens and random parents; half the time its first nodes are the next
    /// 1 to 5 reference tokens as a chain. Empty when the reference is used up.
    /// </summary>
    public static DraftTree Random(Random random, IReadOnlyList<int> reference, int done, int vocab)
    {
        ArgumentNullException.ThrowIfNull(random);
        int remaining = reference.Count - done;
        if (remaining <= 0)
        {
            return DraftTree.Empty;
        }
        int size = random.Next(1, 17);
        var tokens = new List<int>();
        var parents = new List<int>();
        if (random.Next(2) == 0)
        {
            int path = Math.Min(random.Next(1, 6), Math.Min(remaining, size));
            for (int i = 0; i < path; i++)
            {
                Add(tokens, parents, reference[done + i], i - 1);
            }
        }
        while (tokens.Count < size)
        {
            int parent = random.Next(-1, tokens.Count);
            int token = random.Next(vocab);
            bool taken = false;
            for (int i = 0; i < tokens.Count; i++)
            {
                taken |= parents[i] == parent && tokens[i] == token;
            }
            if (!taken)
            {
                Add(tokens, parents, token, parent);
            }
            else if (vocab <= size)
            {
                break; // a tiny vocabulary may run out of distinct siblings
            }
        }
        return DraftTree.Create(tokens.ToArray(), parents.ToArray(), []);
    }

    private static int Add(List<int> tokens, List<int> parents, int token, int parent)
    {
        tokens.Add(token);
        parents.Add(parent);
        return tokens.Count - 1;
    }

    /// <summary>Up to <paramref name="count"/> distinct tokens other than <paramref name="correct"/>.</summary>
    private static int[] WrongTokens(int correct, int vocab, int count, int salt)
    {
        var wrong = new List<int>(count);
        for (int k = 1; wrong.Count < count && k < vocab; k++)
        {
            int token = (int)((correct + (long)k * (salt % 5 + 1) * 7919) % vocab);
            if (token != correct && !wrong.Contains(token))
            {
                wrong.Add(token);
            }
        }
        return wrong.ToArray();
    }
}
