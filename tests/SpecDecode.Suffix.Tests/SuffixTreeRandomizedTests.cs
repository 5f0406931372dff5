namespace SpecDecode.Suffix.Tests;

/// <summary>Thousands of random appends, removals and drafts, each checked against <see cref="NaiveSuffixIndex"/>.</summary>
public sealed class SuffixTreeRandomizedTests
{
    [Theory]
    [InlineData(1, 4, 3)]
    [InlineData(2, 8, 4)]
    [InlineData(3, 64, 3)]
    [InlineData(4, 6, 12)]
    [InlineData(5, 16, 2)]
    public void RandomOperationsMatchNaiveReference(int seed, int maxDepth, int alphabet)
    {
        var rng = new Random(seed);
        var tree = new SuffixTree(maxDepth);
        var naive = new NaiveSuffixIndex(maxDepth);
        int nextId = 0;
        var ids = new List<int>();
        for (int op = 0; op < 2500; op++)
        {
            int kind = rng.Next(100);
            if (kind < 45 || ids.Count == 0)
            {
                // Append to an existing sequence or a new one.
                int id = ids.Count == 0 || rng.Next(5) == 0 ? nextId++ : ids[rng.Next(ids.Count)];
                if (!ids.Contains(id))
                {
                    ids.Add(id);
                }
                int n = rng.Next(1, 6);
                for (int k = 0; k < n; k++)
                {
                    int t = rng.Next(alphabet);
                    tree.Append(id, t);
                    naive.Append(id, t);
                }
            }
            else if (kind < 60)
            {
                // Copy a run of another sequence: long repeats are what suffix drafting lives on.
                int src = ids[rng.Next(ids.Count)];
                int dst = rng.Next(3) == 0 ? nextId++ : ids[rng.Next(ids.Count)];
                if (!ids.Contains(dst))
                {
                    ids.Add(dst);
                }
                var from = naive.Sequences[src];
                int start = rng.Next(from.Count);
                int len = Math.Min(from.Count - start, rng.Next(1, 2 * maxDepth));
                int[] run = from.GetRange(start, len).ToArray();
                tree.Extend(dst, run);
                foreach (int t in run)
                {
                    naive.Append(dst, t);
                }
            }
            else if (kind < 72)
            {
                int id = ids[rng.Next(ids.Count)];
                Assert.True(tree.Remove(id));
                Assert.True(naive.Remove(id));
                ids.Remove(id);
            }
            else if (kind < 78)
            {
                // Seal trims storage; later appends to the sequence must rebuild what it dropped.
                Assert.True(tree.Seal(ids[rng.Next(ids.Count)]));
                Assert.False(tree.Seal(nextId));
            }
            else
            {
                CheckDraft(tree, naive, RandomContext(rng, naive, alphabet), RandomSettings(rng));
            }

            if (op % 25 == 0)
            {
                tree.CheckIntegrity();
                CheckCounts(tree, naive, rng, alphabet);
            }
            // Keep the reference cheap: drop the oldest sequences when the store grows large.
            while (naive.Sequences.Values.Sum(s => s.Count) > 600)
            {
                int id = ids[0];
                tree.Remove(id);
                naive.Remove(id);
                ids.RemoveAt(0);
            }
        }
        tree.CheckIntegrity();
        Assert.Equal(naive.Sequences.Values.Sum(s => (long)s.Count), tree.TokenCount);
        foreach (int id in ids.ToArray())
        {
            tree.Remove(id);
        }
        tree.CheckIntegrity();
        Assert.Equal(1, tree.NodeCount);
        Assert.Equal(0, tree.TokenCount);
    }

    private static void CheckCounts(SuffixTree tree, NaiveSuffixIndex naive, Random rng, int alphabet)
    {
        Assert.Equal(naive.Sequences.Count, tree.SequenceCount);
        foreach ((int id, List<int> seq) in naive.Sequences)
        {
            Assert.Equal(seq, tree.SequenceTokens(id).ToArray());
        }
        for (int q = 0; q < 20; q++)
        {
            int[] pattern = RandomContext(rng, naive, alphabet);
            int len = Math.Min(pattern.Length, rng.Next(1, naive.MaxDepth + 2));
            var p = pattern.AsSpan(pattern.Length - len);
            Assert.Equal(naive.Count(p), tree.CountOf(p));
        }
    }

    private static int[] RandomContext(Random rng, NaiveSuffixIndex naive, int alphabet)
    {
        var context = new List<int>();
        if (naive.Sequences.Count > 0 && rng.Next(4) != 0)
        {
            var seq = naive.Sequences.Values.ElementAt(rng.Next(naive.Sequences.Count));
            if (seq.Count > 0)
            {
                int end = rng.Next(1, seq.Count + 1);
                int start = Math.Max(0, end - rng.Next(1, 2 * naive.MaxDepth));
                context.AddRange(seq.GetRange(start, end - start));
            }
        }
        int extra = rng.Next(3);
        for (int k = 0; k < extra; k++)
        {
            context.Add(rng.Next(alphabet));
        }
        if (context.Count == 0)
        {
            context.Add(rng.Next(alphabet));
        }
        return context.ToArray();
    }

    private static SpeculationSettings RandomSettings(Random rng)
    {
        int budget = rng.Next(0, 12);
        float factor = new[] { 0.5f, 1f, 2f, 4f }[rng.Next(4)];
        float offset = new[] { 0f, 1f, -1f, 3f }[rng.Next(4)];
        float minProb = new[] { 0f, 0.1f, 0.3f, 0.6f }[rng.Next(4)];
        return new SpeculationSettings(budget, new MatchLengthRule(budget, factor, offset), minProb, rng.Next(2) == 0);
    }

    private static void CheckDraft(SuffixTree tree, NaiveSuffixIndex naive, int[] context, SpeculationSettings settings)
    {
        DraftTree result = tree.Speculate(context, settings);
        int longest = naive.LongestMatch(context);
        if (longest == 0)
        {
            Assert.True(result.IsEmpty);
            return;
        }
        float bestScore = float.NegativeInfinity;
        int bestMatch = 0;
        DraftTree? best = null;
        for (int m = 1; m <= longest; m++)
        {
            DraftTree d = tree.DraftForMatch(context, m, settings);
            int limit = Math.Min(settings.MaxTokens, settings.Rule.Limit(m));
            ValidateDraft(naive, context.AsSpan(context.Length - m).ToArray(), d, limit, settings);
            if (d.Score >= bestScore)
            {
                (bestScore, bestMatch, best) = (d.Score, m, d);
            }
        }
        Assert.Equal(bestScore, result.Score);
        Assert.Equal(best!.Tokens.ToArray(), result.Tokens.ToArray());
        Assert.Equal(best.Parents.ToArray(), result.Parents.ToArray());
        if (!result.IsEmpty)
        {
            Assert.Equal(bestMatch, result.MatchLength);
        }
    }

    /// <summary>Checks a draft grown from the matched pattern against the reference counts.</summary>
    private static void ValidateDraft(NaiveSuffixIndex naive, int[] pattern, DraftTree draft, int limit, SpeculationSettings s)
    {
        Assert.True(draft.Count <= limit, $"draft of {draft.Count} over limit {limit}");
        var paths = new List<int[]>();        // string of each node (pattern + path)
        for (int k = 0; k < draft.Count; k++)
        {
            int parent = draft.Parents[k];
            int[] parentString = parent < 0 ? pattern : paths[parent];
            float parentProb = parent < 0 ? 1f : draft.Probabilities[parent];
            int[] str = [.. parentString, draft.Tokens[k]];
            paths.Add(str);
            int count = naive.Count(str), parentCount = naive.Count(parentString);
            Assert.True(count > 0, "draft token never follows its path in the stored sequences");
            float expected = NaiveSuffixIndex.Extend(parentProb, count, parentCount, s.UseTree);
            Assert.Equal(expected, draft.Probabilities[k]);
            Assert.True(draft.Probabilities[k] >= s.MinTokenProbability);
            if (!s.UseTree)
            {
                Assert.Equal(k - 1, parent);
                Assert.Equal(naive.Children(parentString).Values.Max(), count);
            }
        }

        // What could still be added: the best extension of the last node (path), or every extension of any node (tree).
        float bestLeftOut = float.NegativeInfinity;
        IEnumerable<int> frontierOf = s.UseTree ? Enumerable.Range(-1, draft.Count + 1) : [draft.Count - 1];
        foreach (int node in frontierOf)
        {
            int[] str = node < 0 ? pattern : paths[node];
            float prob = node < 0 ? 1f : draft.Probabilities[node];
            int parentCount = naive.Count(str);
            foreach ((int t, int c) in naive.Children(str))
            {
                bool present = false;
                for (int k = 0; k < draft.Count; k++)
                {
                    if (draft.Parents[k] == node && draft.Tokens[k] == t)
                    {
                        present = true;
                    }
                }
                if (!present)
                {
                    float p = NaiveSuffixIndex.Extend(prob, c, parentCount, s.UseTree);
                    if (p >= s.MinTokenProbability)
                    {
                        bestLeftOut = Math.Max(bestLeftOut, p);
                    }
                }
            }
            if (!s.UseTree && draft.Count < limit)
            {
                Assert.True(bestLeftOut == float.NegativeInfinity, "path draft stopped although a continuation above the cut exists");
            }
        }
        if (s.UseTree)
        {
            if (draft.Count < limit)
            {
                Assert.True(bestLeftOut == float.NegativeInfinity, "tree draft left out a candidate above the cut while under budget");
            }
            else if (draft.Count > 0)
            {
                float minIn = float.PositiveInfinity;
                foreach (float p in draft.Probabilities)
                {
                    minIn = Math.Min(minIn, p);
                }
                Assert.True(bestLeftOut <= minIn, $"tree draft is not best-first: left out {bestLeftOut} > kept {minIn}");
            }
        }
    }
}
