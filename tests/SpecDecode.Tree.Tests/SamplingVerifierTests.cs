using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// Sampling verification of token trees (SpecInfer's multi-step speculative sampling) keeps the target distribution:
/// statistical checks over big batches of independent trials in one call, exact checks of the filtered distribution,
/// greedy equivalence at temperature 0 (and top-k 1) inside batches that also sample, per-sequence temperature, top-k,
/// top-p and draft kind in one batch, determinism under a seed whatever shares the batch, the host random stream's
/// reference outputs, and negative controls that show the statistical check catches wrong algorithms.
/// </summary>
/// <remarks>
/// <para><b>The statistical bound.</b> For n i.i.d. samples from a distribution over k categories, the total variation
/// distance TV between the empirical and the true distribution is the largest deviation |P̂(A) − P(A)| over the 2^k
/// subsets A; Hoeffding's inequality for each subset and a union bound give
/// P(TV ≥ ε) ≤ 2^k · exp(−2 n ε²) (Bretagnolle–Huber–Carol). Solving for a false-failure probability δ = 1e-6 per check,
/// ε(n, k) = sqrt((k ln 2 + ln(1/δ)) / (2n)): 0.022 for n = 20000, k = 8; 0.040 for the 72-category joint of two tokens.
/// Seeds are fixed, so each run is deterministic anyway; the bound says a correct sampler would pass for all but a
/// 1e-6 fraction of seeds, and a bias larger than ε is caught: the negative controls measure TV 0.79 (always accept) and
/// 0.20 (no renormalisation) against ε = 0.040, and a wrongly claimed q gives 4 to 10 times ε; the correct runs stay
/// below half of ε.</para>
/// </remarks>
public sealed class SamplingVerifierTests
{
    private const int Vocab = 8;
    private const int Trials = 20000;
    private const double Delta = 1e-6;
    private const float Temperature = 0.8f;

    // ---------- helpers ----------

    /// <summary>The TV threshold ε(n, k) of the class remarks.</summary>
    private static double TvBound(int n, int categories) =>
        Math.Sqrt((categories * Math.Log(2) + Math.Log(1 / Delta)) / (2.0 * n));

    private static double TotalVariation(int[] counts, double[] expected)
    {
        double n = counts.Sum(), tv = 0;
        for (int i = 0; i < counts.Length; i++)
        {
            tv += Math.Abs(counts[i] / n - expected[i]);
        }
        return tv / 2;
    }

    private static void AssertDistribution(int[] counts, double[] expected, string what)
    {
        int n = counts.Sum();
        double tv = TotalVariation(counts, expected), bound = TvBound(n, counts.Length);
        Assert.True(tv <= bound, $"{what}: TV {tv:F4} > bound {bound:F4} over {n} trials; counts [{string.Join(", ", counts)}], expected [{string.Join(", ", expected.Select(e => e.ToString("F3")))}]");
    }

    private static float[] RandomLogits(Random rng, int rows, int vocab, double scale)
    {
        var logits = new float[rows * vocab];
        for (int i = 0; i < logits.Length; i++)
        {
            // Box-Muller normal
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            logits[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
        return logits;
    }

    /// <summary>Hugging Face's temperature → top-k → top-p → softmax, in double: the reference the verifier must match.</summary>
    private static double[] Reference(ReadOnlySpan<float> logits, float temperature, int topK, float topP)
    {
        int v = logits.Length;
        var z = new double[v];
        for (int i = 0; i < v; i++)
        {
            z[i] = logits[i] / (double)temperature;
        }
        if (topK > 0 && topK < v)
        {
            double kth = z.OrderByDescending(x => x).ElementAt(topK - 1);
            for (int i = 0; i < v; i++)
            {
                if (z[i] < kth)
                {
                    z[i] = double.NegativeInfinity;
                }
            }
        }
        if (topP < 1f)
        {
            double[] soft = Softmax(z);
            int[] ascending = Enumerable.Range(0, v).OrderBy(i => soft[i]).ToArray();
            double cumulative = 0;
            var remove = new bool[v];
            for (int j = 0; j < v; j++)
            {
                cumulative += soft[ascending[j]];
                remove[ascending[j]] = j < v - 1 && cumulative <= 1 - (double)topP;
                // The test logits keep clear of the boundary, so float32 and double agree on every decision.
                Assert.True(Math.Abs(cumulative - (1 - (double)topP)) > 1e-4, "test logits too close to the top-p boundary");
            }
            for (int i = 0; i < v; i++)
            {
                if (remove[i])
                {
                    z[i] = double.NegativeInfinity;
                }
            }
        }
        return Softmax(z);
    }

    private static double[] Softmax(double[] z)
    {
        double max = z.Max();
        double[] e = z.Select(x => Math.Exp(x - max)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }

    private static double[] Row(float[] logits, int row, float temperature = Temperature) =>
        Reference(logits.AsSpan(row * Vocab, Vocab), temperature, 0, 1f);

    private static int Sample(double[] p, Random rng)
    {
        double u = rng.NextDouble(), c = 0;
        for (int i = 0; i < p.Length; i++)
        {
            c += p[i];
            if (u < c)
            {
                return i;
            }
        }
        return Array.FindLastIndex(p, x => x > 0);
    }

    /// <summary>The token of the given rank (0 = most probable) under p.</summary>
    private static int ByRank(double[] p, int rank) => Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).ElementAt(rank);

    /// <summary>The same [T, V] logits for every one of <paramref name="batch"/> sequences: [batch, T, V].</summary>
    private static Tensor Repeat(float[] rows, int batch, int vocab = Vocab)
    {
        int t = rows.Length / vocab;
        using Tensor one = tensor(rows, [1, t, vocab]);
        using Tensor view = one.expand(batch, t, vocab);
        return view.contiguous();
    }

    /// <summary>One options object (so one stream, seeded from its seed) for every sequence; row b of
    /// <paramref name="draftProbs"/> [B, T, V] as sequence b's draft distributions (its first n_b rows).</summary>
    private static TreeSample[] Run(SamplingOptions options, Tensor logits, int[][] parents, int[][] tokens, Tensor? draftProbs) =>
        RunRows(Enumerable.Repeat(options, parents.Length).ToArray(), logits, parents, tokens,
            draftProbs is null ? null : b => draftProbs[b].narrow(0, 0, parents[b].Length));

    /// <summary>Per-sequence options (one stream per distinct options object, seeded from its seed) and per-sequence
    /// draft distributions (null entries: point-mass drafts).</summary>
    private static TreeSample[] RunRows(IReadOnlyList<SamplingOptions> options, Tensor logits, int[][] parents, int[][] tokens,
        Func<int, Tensor?>? draft)
    {
        using var scope = NewDisposeScope(); // the draft views
        var streams = new Dictionary<SamplingOptions, SamplingStream>(ReferenceEqualityComparer.Instance);
        SequenceSampling[] sequences = Enumerable.Range(0, parents.Length).Select(b =>
        {
            SamplingOptions o = options[b];
            if (!streams.TryGetValue(o, out SamplingStream? stream))
            {
                streams[o] = stream = SamplingStream.Create(o.Seed);
            }
            return new SequenceSampling(o, stream, draft?.Invoke(b));
        }).ToArray();
        return SamplingTreeVerifier.Verify(logits, parents, tokens, sequences);
    }

    private static string Describe(TreeSample s) => string.Join(",", s.AcceptedNodes) + "|" + string.Join(",", s.Tokens);

    private enum Variant { Correct, AlwaysAccept, NoRenormalise }

    /// <summary>
    /// A host-only simulator of point-mass tree verification, correct or with a deliberate bug, to show the statistical
    /// check tells them apart (negative controls) and that its expected values are right (the correct variant passes).
    /// </summary>
    private static List<int> Simulate(double[][] p, int[] parents, int[] tokens, Random rng, Variant variant)
    {
        var emitted = new List<int>();
        int u = 0;
        while (true)
        {
            double[] current = (double[])p[u].Clone();
            int next = -1;
            for (int c = 1; c < parents.Length && next < 0; c++)
            {
                if (parents[c] != u)
                {
                    continue;
                }
                double pc = current[tokens[c]];
                // NoRenormalise: the acceptance of later children uses the unnormalised residual p(x) after removals.
                double accept = variant == Variant.AlwaysAccept ? 1 : pc;
                if (rng.NextDouble() < accept)
                {
                    next = c;
                    break;
                }
                current[tokens[c]] = 0;
                if (variant != Variant.NoRenormalise)
                {
                    double mass = current.Sum();
                    for (int i = 0; i < current.Length; i++)
                    {
                        current[i] /= mass;
                    }
                }
            }
            if (next < 0)
            {
                double mass = current.Sum();
                emitted.Add(Sample(current.Select(x => x / mass).ToArray(), rng));
                return emitted;
            }
            emitted.Add(tokens[next]);
            u = next;
        }
    }

    /// <summary>
    /// Joint distribution of (first token, second token or "none"), as index first * (V + 1) + (second or V): a second
    /// token follows exactly when the first one is an accepted root child (point-mass drafts with distinct siblings, whose
    /// residual excludes every child), and then it is distributed as that child's row.
    /// </summary>
    private static double[] ExpectedJoint(double[][] p, int[] parents, int[] tokens)
    {
        var joint = new double[Vocab * (Vocab + 1)];
        for (int x = 0; x < Vocab; x++)
        {
            int child = Enumerable.Range(1, parents.Length - 1).FirstOrDefault(c => parents[c] == 0 && tokens[c] == x, -1);
            if (child < 0)
            {
                joint[x * (Vocab + 1) + Vocab] = p[0][x];
            }
            else
            {
                for (int y = 0; y < Vocab; y++)
                {
                    joint[x * (Vocab + 1) + y] = p[0][x] * p[child][y];
                }
            }
        }
        return joint;
    }

    private static int[] JointCounts(IEnumerable<IReadOnlyList<int>> outputs)
    {
        var counts = new int[Vocab * (Vocab + 1)];
        foreach (IReadOnlyList<int> tokens in outputs)
        {
            counts[tokens[0] * (Vocab + 1) + (tokens.Count > 1 ? tokens[1] : Vocab)]++;
        }
        return counts;
    }

    /// <summary>A fixed point-mass case: node rows of random logits, tokens chosen by rank under the parent's row.</summary>
    private static (float[] Logits, double[][] P, int[] Tokens) PointMassCase(int[] parents, int[] ranks)
    {
        float[] logits = RandomLogits(new Random(2024), parents.Length, Vocab, 1.5);
        double[][] p = Enumerable.Range(0, parents.Length).Select(t => Row(logits, t)).ToArray();
        var tokens = new int[parents.Length];
        for (int t = 1; t < parents.Length; t++)
        {
            tokens[t] = ByRank(p[parents[t]], ranks[t]);
        }
        return (logits, p, tokens);
    }

    // ---------- (1) point-mass drafts ----------

    /// <summary>
    /// Point-mass drafts, 20000 trials in one call: at every node the walk reaches (the root in every trial), the token
    /// emitted next is distributed as that node's target row; the joint of the first two tokens matches
    /// p(x1) · p(x2 | x1) with "no second token" exactly when x1 is not a root child.
    /// </summary>
    [Theory]
    [InlineData(new[] { -1, 0, 1, 2 }, new[] { 0, 0, 1, 0 })]            // chain of likely guesses
    [InlineData(new[] { -1, 0, 1 }, new[] { 0, 5, 0 })]                  // chain whose first guess is unlikely
    [InlineData(new[] { -1, 0, 0, 0, 1, 1, 2 }, new[] { 0, 0, 2, 1, 0, 3, 0 })] // 3 root children, 2 and 1 below
    [InlineData(new[] { -1, 0, 0, 1 }, new[] { 0, 6, 7, 2 })]            // 2 wrong root children
    public void PointMassDraftsKeepTheTargetDistribution(int[] parents, int[] ranks)
    {
        (float[] logits, double[][] p, int[] tokens) = PointMassCase(parents, ranks);
        using Tensor batch = Repeat(logits, Trials);
        TreeSample[] samples = Run(new SamplingOptions { Temperature = Temperature, Seed = 11 }, batch,
            Enumerable.Repeat(parents, Trials).ToArray(), Enumerable.Repeat(tokens, Trials).ToArray(), null);

        foreach (TreeSample s in samples)
        {
            Assert.Equal(s.AcceptedNodes.Length, s.Tokens.Length);
            for (int d = 1; d < s.AcceptedNodes.Length; d++)
            {
                Assert.Equal(s.AcceptedNodes[d - 1], parents[s.AcceptedNodes[d]]);
                Assert.Equal(tokens[s.AcceptedNodes[d]], s.Tokens[d - 1]);
            }
        }
        // Conditional on reaching node c, the next token ~ p_c (checked where at least 1000 trials reach c, ε ≤ 0.098).
        for (int c = 0; c < parents.Length; c++)
        {
            var counts = new int[Vocab];
            foreach (TreeSample s in samples)
            {
                int at = Array.IndexOf(s.AcceptedNodes, c);
                if (at >= 0)
                {
                    counts[s.Tokens[at]]++;
                }
            }
            if (c == 0 || counts.Sum() >= 1000)
            {
                AssertDistribution(counts, p[c], $"next token after node {c}");
            }
        }
        AssertDistribution(JointCounts(samples.Select(s => s.Tokens)), ExpectedJoint(p, parents, tokens), "first two tokens");
    }

    /// <summary>
    /// Negative controls: the same joint check rejects a verifier that always accepts point-mass drafts and one that does
    /// not renormalise the residual after a rejection (TV about 0.20 here against a bound of 0.040), while the correct host
    /// simulator passes it (so the expected values themselves are right).
    /// </summary>
    [Fact]
    public void TheStatisticalCheckCatchesWrongAlgorithms()
    {
        int[] parents = [-1, 0, 0, 0, 1, 1, 2];
        (float[] logits, double[][] p, int[] tokens) = PointMassCase(parents, [0, 0, 2, 1, 0, 3, 0]);
        _ = logits;
        double[] expected = ExpectedJoint(p, parents, tokens);
        double bound = TvBound(Trials, expected.Length);
        double TvOf(Variant variant)
        {
            var rng = new Random(5);
            int[] counts = JointCounts(Enumerable.Range(0, Trials).Select(_ => Simulate(p, parents, tokens, rng, variant)));
            return TotalVariation(counts, expected);
        }
        double correct = TvOf(Variant.Correct), always = TvOf(Variant.AlwaysAccept), noRenormalise = TvOf(Variant.NoRenormalise);
        Assert.True(correct <= bound, $"the correct simulator fails the check: TV {correct:F4} > {bound:F4}");
        Assert.True(always > bound, $"always-accept not detected: TV {always:F4} <= {bound:F4}");
        Assert.True(noRenormalise > bound, $"missing renormalisation not detected: TV {noRenormalise:F4} <= {bound:F4}");
    }

    // ---------- (2) drafts sampled from q ----------

    /// <summary>
    /// A 2-level tree whose children are sampled i.i.d. from the draft per trial (3 at the root, 2 below each), with a
    /// target whose rows are functions of the prefix (row after token x = L2[x], after (x, y) = L3[y]), so siblings that
    /// repeat a token see the same target. Checks: the first token ~ p_root; given the first token was an accepted draft
    /// x, the second ~ p2[x]; given two accepted drafts ending in y, the third ~ p3[y]. With <paramref name="claimWrongQ"/>
    /// the verifier is told a uniform q instead of the one the children were sampled from, and the same checks must fail.
    /// With <paramref name="mixPointMass"/> the batch holds twice as many sequences: every odd one a model-free draft of
    /// the same shape (fixed guesses by rank, no draft distribution) at another temperature, checked the same way against
    /// its own target, in the same call as the sampled drafts.
    /// </summary>
    /// <param name="qScale">Spread of the draft logits: 2 gives spiky drafts (more rejections, residual-heavy), 1 flatter
    /// ones (more accepted drafts, so more conditional checks reach 1000 trials).</param>
    /// <param name="claimWrongQ">Negative control: tell the verifier a uniform q (for the sampled drafts only).</param>
    /// <param name="mixPointMass">Interleave point-mass sequences with the sampled ones.</param>
    [Theory]
    [InlineData(2.0, false, false)]
    [InlineData(1.0, false, false)]
    [InlineData(2.0, true, false)]
    [InlineData(2.0, false, true)]
    [InlineData(1.0, false, true)]
    [InlineData(2.0, true, true)]
    public void SampledDraftsKeepTheTargetDistribution(double qScale, bool claimWrongQ, bool mixPointMass)
    {
        var rng = new Random(99);
        float[] l1 = RandomLogits(rng, 1, Vocab, 1.5), l2 = RandomLogits(rng, Vocab, Vocab, 1.5), l3 = RandomLogits(rng, Vocab, Vocab, 1.5);
        // Draft distributions deliberately unlike the target, one with zeros (tokens only the residual can give).
        double[] q1 = Softmax(RandomLogits(rng, 1, Vocab, qScale).Select(x => (double)x).ToArray());
        q1[ByRank(q1, Vocab - 1)] = 0;
        q1[ByRank(q1, Vocab - 2)] = 0;
        double q1Sum = q1.Sum();
        q1 = q1.Select(x => x / q1Sum).ToArray();
        double[][] q2 = Enumerable.Range(0, Vocab).Select(_ => Softmax(RandomLogits(rng, 1, Vocab, qScale).Select(x => (double)x).ToArray())).ToArray();
        const float pointMassTemperature = 1.3f;
        var groups = new List<(bool Sampled, float Temperature)> { (true, Temperature) };
        if (mixPointMass)
        {
            groups.Add((false, pointMassTemperature));
        }

        int[] parents = [-1, 0, 0, 0, 1, 1, 2, 2, 3, 3];
        const int T = 10;
        int batch = Trials * groups.Count;
        var logits = new float[batch * T * Vocab];
        var draft = new float[batch * T * Vocab];
        var allTokens = new int[batch][];
        // Point-mass guesses: root children of ranks 0, 2, 5 under the point-mass target, each with its ranks 0 and 1 below.
        double[] pmRoot = Row(l1, 0, pointMassTemperature);
        int[] guessed = new int[T];
        int[] rootRanks = [0, 2, 5];
        for (int t = 1; t < T; t++)
        {
            guessed[t] = parents[t] == 0 ? ByRank(pmRoot, rootRanks[t - 1]) : ByRank(Row(l2, guessed[parents[t]], pointMassTemperature), (t - 4) % 2);
        }
        for (int b = 0; b < batch; b++)
        {
            bool sampled = groups[b % groups.Count].Sampled;
            var tokens = new int[T];
            for (int t = 1; t < T; t++)
            {
                tokens[t] = sampled ? Sample(parents[t] == 0 ? q1 : q2[tokens[parents[t]]], rng) : guessed[t];
            }
            allTokens[b] = tokens;
            for (int t = 0; t < T; t++)
            {
                ReadOnlySpan<float> row = t == 0 ? l1 : parents[t] == 0 ? l2.AsSpan(tokens[t] * Vocab, Vocab) : l3.AsSpan(tokens[t] * Vocab, Vocab);
                row.CopyTo(logits.AsSpan((b * T + t) * Vocab, Vocab));
                for (int x = 0; x < Vocab; x++)
                {
                    double q = claimWrongQ ? 1.0 / Vocab : t == 0 ? q1[x] : parents[t] == 0 ? q2[tokens[t]][x] : 1.0 / Vocab;
                    draft[(b * T + t) * Vocab + x] = (float)q;
                }
            }
        }
        using Tensor logitsTensor = tensor(logits, [batch, T, Vocab]);
        using Tensor draftTensor = tensor(draft, [batch, T, Vocab]);
        SamplingOptions[] options = [.. groups.Select((g, i) => new SamplingOptions { Temperature = g.Temperature, Seed = 3 + i })];
        // Sampled sequences pass rows 0..3 only (nodes 4..9 are leaves): the trailing rows may be left out.
        TreeSample[] samples = RunRows([.. Enumerable.Range(0, batch).Select(b => options[b % groups.Count])], logitsTensor,
            Enumerable.Repeat(parents, batch).ToArray(), allTokens,
            b => groups[b % groups.Count].Sampled ? draftTensor[b].narrow(0, 0, 4) : null);

        for (int g = 0; g < groups.Count; g++)
        {
            float temperature = groups[g].Temperature;
            double[] pRoot = Row(l1, 0, temperature);
            double[][] p2 = Enumerable.Range(0, Vocab).Select(x => Row(l2, x, temperature)).ToArray();
            double[][] p3 = Enumerable.Range(0, Vocab).Select(y => Row(l3, y, temperature)).ToArray();
            var first = new int[Vocab];
            var second = new int[Vocab][];
            var third = new int[Vocab][];
            for (int x = 0; x < Vocab; x++)
            {
                second[x] = new int[Vocab];
                third[x] = new int[Vocab];
            }
            for (int b = g; b < batch; b += groups.Count)
            {
                TreeSample s = samples[b];
                first[s.Tokens[0]]++;
                if (s.AcceptedNodes.Length >= 2)
                {
                    second[s.Tokens[0]][s.Tokens[1]]++;
                }
                if (s.AcceptedNodes.Length >= 3)
                {
                    third[s.Tokens[1]][s.Tokens[2]]++;
                }
            }
            string kind = groups[g].Sampled ? "sampled drafts" : "point-mass drafts";
            var checks = new List<(int[] Counts, double[] Expected, string What)> { (first, pRoot, $"{kind}: first token") };
            for (int x = 0; x < Vocab; x++)
            {
                if (second[x].Sum() >= 1000)
                {
                    checks.Add((second[x], p2[x], $"{kind}: second token after accepted {x}"));
                }
                if (third[x].Sum() >= 1000)
                {
                    checks.Add((third[x], p3[x], $"{kind}: third token after accepted (., {x})"));
                }
            }
            Assert.True(checks.Count >= (groups[g].Sampled ? 4 : 3), $"{kind}: only {checks.Count} conditional checks had 1000 trials: the case is too weak");
            if (!claimWrongQ || !groups[g].Sampled)
            {
                foreach ((int[] counts, double[] expected, string what) in checks)
                {
                    AssertDistribution(counts, expected, what);
                }
            }
            else
            {
                Assert.Contains(checks, c => TotalVariation(c.Counts, c.Expected) > TvBound(c.Counts.Sum(), Vocab));
            }
        }
    }

    /// <summary>
    /// When the draft distribution equals the target's, every drafted child is accepted (p/q = 1), so the walk always
    /// takes the first child down to a leaf; the residual there is empty and the zero-mass fallback must not produce NaN.
    /// </summary>
    [Fact]
    public void DraftEqualToTargetAcceptsEveryFirstChild()
    {
        const int batch = 500;
        float[] rows = RandomLogits(new Random(8), 4, Vocab, 1.5);
        int[] parents = [-1, 0, 0, 1];
        using Tensor logits = Repeat(rows, batch);
        using Tensor q = SamplingTreeVerifier.TargetProbabilities(logits, Enumerable.Repeat(new SamplingOptions { Temperature = Temperature }, batch).ToArray());
        var rng = new Random(1);
        int[][] tokens = Enumerable.Range(0, batch).Select(_ => new[] { 0, rng.Next(Vocab), rng.Next(Vocab), rng.Next(Vocab) }).ToArray();
        TreeSample[] samples = Run(new SamplingOptions { Temperature = Temperature, Seed = 2 }, logits,
            Enumerable.Repeat(parents, batch).ToArray(), tokens, q);
        foreach (TreeSample s in samples)
        {
            Assert.Equal(new[] { 0, 1, 3 }, s.AcceptedNodes);
            Assert.InRange(s.Tokens[^1], 0, Vocab - 1);
        }
    }

    // ---------- (3) temperature, top-k and top-p ----------

    /// <summary>
    /// The target distribution equals Hugging Face's temperature → top-k → top-p → softmax (to 1e-5), ties at the k-th
    /// logit are kept, and 20000 root-only trials emit tokens with that distribution and never a filtered token; a
    /// point-mass draft of a filtered token is never accepted.
    /// </summary>
    [Theory]
    [InlineData(1.0f, 0, 1.0f)]
    [InlineData(0.5f, 0, 1.0f)]
    [InlineData(2.0f, 0, 1.0f)]
    [InlineData(1.0f, 3, 1.0f)]
    [InlineData(1.0f, 0, 0.7f)]
    [InlineData(0.7f, 5, 0.8f)]
    [InlineData(1.3f, 20, 0.05f)]
    public void TemperatureTopKTopPShapeTheTarget(float temperature, int topK, float topP)
    {
        float[] logits = RandomLogits(new Random(31), 1, Vocab, 1.5);
        if (topK == 3 && topP == 1f)
        {
            // A tie at the 3rd largest logit: transformers keeps both tied tokens. (Only here: with top-p a tie at the cut
            // would make the kept set depend on the sort order.)
            int[] byValue = Enumerable.Range(0, Vocab).OrderByDescending(i => logits[i]).ToArray();
            logits[byValue[5]] = logits[byValue[2]];
        }
        double[] expected = Reference(logits, temperature, topK, topP);
        using (Tensor row = tensor(logits, [1, 1, Vocab]))
        using (Tensor probs = SamplingTreeVerifier.TargetProbabilities(row, [new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP }]))
        {
            float[] got = probs.data<float>().ToArray();
            for (int x = 0; x < Vocab; x++)
            {
                Assert.True(Math.Abs(got[x] - expected[x]) < 1e-5, $"p[{x}] = {got[x]}, expected {expected[x]}");
            }
        }
        if (topK == 3 && topP == 1f)
        {
            Assert.Equal(4, expected.Count(x => x > 0)); // the tie at the 3rd largest logit keeps 4 tokens
        }
        var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, Seed = 17 };
        int filtered = Array.FindIndex(expected, x => x == 0);
        // With a filtered token, a root with one point-mass child drafting it (row 1 is any valid row: never reached).
        using Tensor batch = Repeat(filtered < 0 ? logits : [.. logits, .. logits], Trials);
        int[] parents = filtered < 0 ? [-1] : [-1, 0];
        int[] tokens = filtered < 0 ? [0] : [0, filtered];
        TreeSample[] samples = Run(options, batch, Enumerable.Repeat(parents, Trials).ToArray(), Enumerable.Repeat(tokens, Trials).ToArray(), null);
        var counts = new int[Vocab];
        foreach (TreeSample s in samples)
        {
            Assert.Single(s.AcceptedNodes);
            Assert.True(expected[s.Tokens[0]] > 0, $"emitted token {s.Tokens[0]}, which the filters remove");
            counts[s.Tokens[0]]++;
        }
        AssertDistribution(counts, expected, $"T={temperature} top-k={topK} top-p={topP}");
    }

    [Fact]
    public void OptionsRejectOutOfRangeValuesAndSayTheRange()
    {
        var options = new SamplingOptions();
        Assert.Contains(">= 0", Assert.Throws<ArgumentOutOfRangeException>(() => options.Temperature = -0.1f).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.Temperature = float.NaN);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.Temperature = float.PositiveInfinity);
        Assert.Contains(">= 0", Assert.Throws<ArgumentOutOfRangeException>(() => options.TopK = -1).Message);
        Assert.Contains("(0, 1]", Assert.Throws<ArgumentOutOfRangeException>(() => options.TopP = 0f).Message);
        Assert.Contains("(0, 1]", Assert.Throws<ArgumentOutOfRangeException>(() => options.TopP = 1.01f).Message);
        Assert.Equal((1f, 0, 1f, (long?)null), (options.Temperature, options.TopK, options.TopP, options.Seed));
        options.Temperature = 0;
        Assert.True(options.IsGreedy);
    }

    /// <summary>Malformed trees and inconsistent per-sequence sampling data are refused with an <see cref="ArgumentException"/>
    /// that names the sequence and what to give, before any random number is drawn.</summary>
    [Fact]
    public void MalformedTreesAndSamplingDataAreRejected()
    {
        using var scope = NewDisposeScope();
        using Tensor logits = zeros(2, 3, Vocab);
        var options = new SamplingOptions { Seed = 1 };
        SamplingStream stream = SamplingStream.Create(1);
        SequenceSampling pointMass = new(options, stream, null);
        SequenceSampling[] both = [pointMass, pointMass];
        int[][] ok = [[-1, 0], [-1]];
        int[][] okTokens = [[0, 1], [0]];
        Assert.Equal(2, SamplingTreeVerifier.Verify(logits, ok, okTokens, both).Length);
        ArgumentException Refused(int[][] parents, int[][] tokens, SequenceSampling[] sequences) =>
            Assert.ThrowsAny<ArgumentException>(() => SamplingTreeVerifier.Verify(logits, parents, tokens, sequences));
        Refused([[-1, 0], [0]], okTokens, both);                             // root with a parent
        Refused([[-1, 1], [-1]], okTokens, both);                            // parent not before child
        Refused([[-1, 0, 0, 0], [-1]], [[0, 1, 2, 3], [0]], both);           // more nodes than rows
        Refused(ok, [[0, Vocab], [0]], both);                                // token outside the vocabulary
        Refused(ok, [[0], [0]], both);                                       // lengths differ
        Refused([[-1]], [[0]], both);                                        // one tree for two sequences
        Refused(ok, okTokens, [pointMass]);                                  // one SequenceSampling for two sequences
        Assert.Contains("no random stream", Refused(ok, okTokens, [new(options, null, null), pointMass]).Message);
        Assert.Equal(2, SamplingTreeVerifier.Verify(logits, ok, okTokens, [new(new SamplingOptions { Temperature = 0 }, null, null), pointMass]).Length);

        // Draft distributions: [rows, V] floating point on the logits' device, a row for every node with children.
        int[][] chain = [[-1, 0, 1], [-1]];
        int[][] chainTokens = [[0, 1, 2], [0]];
        SequenceSampling WithDraft(Tensor q) => new(options, stream, q);
        Assert.Equal(2, SamplingTreeVerifier.Verify(logits, chain, chainTokens, [WithDraft(ones(2, Vocab) / Vocab), pointMass]).Length); // node 2 is a leaf: 2 rows do
        Assert.Equal(2, SamplingTreeVerifier.Verify(logits, chain, chainTokens, [WithDraft(ones(3, Vocab) / Vocab), pointMass]).Length);
        Assert.Contains("last node with children is 1", Refused(chain, chainTokens, [WithDraft(ones(1, Vocab)), pointMass]).Message);
        Refused(chain, chainTokens, [WithDraft(ones(4, Vocab)), pointMass]);            // more rows than nodes
        Refused(chain, chainTokens, [WithDraft(ones(2, Vocab + 1)), pointMass]);        // another vocabulary
        Refused(chain, chainTokens, [WithDraft(ones(1, 2, Vocab)), pointMass]);         // [B, T, V] instead of [rows, V]
        Refused(chain, chainTokens, [WithDraft(ones(2, Vocab, ScalarType.Int64)), pointMass]); // not probabilities
        Refused(chain, chainTokens, [WithDraft(empty(2, Vocab, device: META)), pointMass]);    // another device

        // A refused call draws nothing.
        SamplingStream untouched = SamplingStream.Create(7);
        Refused(chain, chainTokens, [new(options, untouched, null), new(options, stream, ones(2, Vocab))]); // a root alone has 0 or 1 rows
        Assert.Equal(SamplingStream.Create(7).NextUInt64(), untouched.NextUInt64());
    }

    // ---------- (4) temperature 0 (and top-k 1) is greedy, also inside a sampling batch ----------

    /// <summary>
    /// With temperature 0 (whatever top-k, top-p and draft probabilities say) the output equals
    /// <see cref="GreedyTreeVerifier"/>'s on 300 random trees of 1..12 nodes (padded rows filled with NaN, which must not
    /// matter) whose guesses are the parent's argmax half of the time, for float32, float64 and bfloat16 logits. With
    /// <paramref name="mixed"/> the greedy sequences share the call with sampling ones: every third sequence samples at
    /// temperature 1 (those must differ from greedy somewhere, or the case would prove nothing) and, for float32 and
    /// float64 logits (which have no ties), every third samples at temperature 0.5 to 2 with top-k 1, which must give the
    /// argmax path too; with <paramref name="withDraftProbs"/> every other sequence (of each kind) has draft distributions
    /// and the rest are point-mass drafts.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, false, false)]
    [InlineData(ScalarType.Float32, true, false)]
    [InlineData(ScalarType.Float64, false, false)]
    [InlineData(ScalarType.BFloat16, true, false)]
    [InlineData(ScalarType.Float32, false, true)]
    [InlineData(ScalarType.Float32, true, true)]
    [InlineData(ScalarType.Float64, true, true)]
    [InlineData(ScalarType.BFloat16, true, true)]
    public void TemperatureZeroEqualsGreedyVerifier(ScalarType dtype, bool withDraftProbs, bool mixed)
    {
        using var scope = NewDisposeScope(); // the per-sequence views
        const int batch = 300, rows = 12, vocab = 50;
        var rng = new Random(77);
        using Tensor logits = tensor(RandomLogits(rng, batch * rows, vocab, 3.0), [batch, rows, vocab]).to(dtype);
        using Tensor argmax = logits.argmax(-1);
        long[] best = argmax.data<long>().ToArray();
        var parents = new int[batch][];
        var tokens = new int[batch][];
        for (int b = 0; b < batch; b++)
        {
            int n = rng.Next(1, rows + 1);
            var par = new List<int> { -1 };
            var tok = new List<int> { 0 };
            while (par.Count < n)
            {
                int parent = rng.Next(par.Count);
                int token = rng.Next(2) == 0 ? (int)best[b * rows + parent] : rng.Next(vocab);
                if (!Enumerable.Range(1, par.Count - 1).Any(c => par[c] == parent && tok[c] == token)) // DraftTree wants distinct siblings
                {
                    par.Add(parent);
                    tok.Add(token);
                }
            }
            parents[b] = [.. par];
            tokens[b] = [.. tok];
            if (n < rows)
            {
                logits[b].narrow(0, n, rows - n).fill_(float.NaN);
            }
        }
        bool noTies = dtype != ScalarType.BFloat16;
        // Kinds: 0 greedy, 1 sampling at temperature 1, 2 top-k 1 at temperature 0.5..2 (greedy when ties are possible).
        int KindOf(int b) => !mixed ? 0 : b % 3 == 1 ? 1 : b % 3 == 2 && noTies ? 2 : 0;
        var greedy = new SamplingOptions { Temperature = 0, TopK = 2, TopP = 0.5f, Seed = 1 };
        SamplingOptions[] options = [.. Enumerable.Range(0, batch).Select(b => KindOf(b) switch
        {
            0 => greedy,
            1 => new SamplingOptions { Temperature = 1, Seed = b },
            _ => new SamplingOptions { Temperature = 0.5f + 1.5f * (b % 7) / 6, TopK = 1, TopP = b % 2 == 0 ? 1f : 0.9f, Seed = b },
        })];
        using Tensor draft = softmax(rand(batch, rows, vocab) * 5, -1);
        TreeSample[] samples = RunRows(options, logits, parents, tokens,
            withDraftProbs ? b => (b / 3) % 2 == 0 ? draft[b].narrow(0, 0, parents[b].Length) : null : null);
        int accepted = 0, sampledDiffer = 0;
        for (int b = 0; b < batch; b++)
        {
            int n = parents[b].Length;
            DraftTree tree = n == 1 ? DraftTree.Empty : DraftTree.Create(tokens[b][1..], parents[b][1..].Select(x => x - 1).ToArray(), []);
            using Tensor seqRows = logits[b].narrow(0, 0, n);
            int[] expected = GreedyTreeVerifier.Verify(seqRows, tree);
            if (KindOf(b) == 1)
            {
                sampledDiffer += expected.SequenceEqual(samples[b].Tokens) ? 0 : 1;
                continue;
            }
            Assert.True(expected.SequenceEqual(samples[b].Tokens), $"sequence {b} (kind {KindOf(b)}): [{string.Join(", ", samples[b].Tokens)}], greedy [{string.Join(", ", expected)}]");
            accepted += expected.Length - 1;
        }
        Assert.True(accepted > batch / 3, $"only {accepted} drafts accepted: the case does not exercise acceptance");
        if (mixed)
        {
            Assert.True(sampledDiffer > batch / 10, $"only {sampledDiffer} of the sampling sequences left the greedy path: they did not sample");
        }
    }

    // ---------- (5) per-sequence settings ----------

    /// <summary>
    /// Six kinds of sequence in one call, 6000 each, all with the same logits and a root with two point-mass children
    /// (ranks 0 and 3 under temperature 1). With top-p in the batch (the sort path): temperature 0.5; temperature 2; top-k
    /// 3; top-p 0.7; temperature 0.7 with top-k 5 and top-p 0.8; greedy. Without (the top-k-only path): temperature 0.5;
    /// temperature 2; top-k 3; temperature 0.7 with top-k 5; temperature 1.3 with top-k 1; greedy. The first token of
    /// each kind follows that kind's own filtered distribution (TV within ε(6000, 8) = 0.040; the greedy kind always
    /// emits the argmax), and <see cref="SamplingTreeVerifier.TargetProbabilities(Tensor, IReadOnlyList{SamplingOptions})"/> computes each kind's distribution to
    /// 1e-5 in one batch. Negative control: the temperature-0.5 counts fail the check against the temperature-2
    /// distribution and vice versa, so rows that got each other's (or a shared) temperature would be caught.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EachSequenceGetsItsOwnTemperatureTopKAndTopP(bool withTopP)
    {
        (float T, int K, float P)[] kinds = withTopP
            ? [(0.5f, 0, 1f), (2f, 0, 1f), (1f, 3, 1f), (1f, 0, 0.7f), (0.7f, 5, 0.8f), (0f, 0, 1f)]
            : [(0.5f, 0, 1f), (2f, 0, 1f), (1f, 3, 1f), (0.7f, 5, 1f), (1.3f, 1, 1f), (0f, 0, 1f)];
        const int perKind = 6000;
        int batch = perKind * kinds.Length;
        float[] root = RandomLogits(new Random(31), 1, Vocab, 1.5);
        float[] rows = [.. root, .. RandomLogits(new Random(32), 2, Vocab, 1.5)];
        double[] plain = Reference(root, 1f, 0, 1f);
        int[] parents = [-1, 0, 0];
        int[] tokens = [0, ByRank(plain, 0), ByRank(plain, 3)];
        double[][] expected = [.. kinds.Select(k => k.T == 0
            ? Enumerable.Range(0, Vocab).Select(x => x == ByRank(plain, 0) ? 1.0 : 0.0).ToArray()
            : Reference(root, k.T, k.K, k.P))];
        SamplingOptions[] options = [.. kinds.Select((k, i) => new SamplingOptions { Temperature = k.T, TopK = k.K, TopP = k.P, Seed = 50 + i })];

        using (Tensor one = tensor(root, [1, 1, Vocab]))
        using (Tensor same = one.expand(kinds.Length, 1, Vocab).contiguous())
        using (Tensor probs = SamplingTreeVerifier.TargetProbabilities(same, options))
        {
            float[] got = probs.data<float>().ToArray();
            for (int k = 0; k < kinds.Length; k++)
            {
                for (int x = 0; x < Vocab; x++)
                {
                    Assert.True(Math.Abs(got[k * Vocab + x] - expected[k][x]) < 1e-5, $"kind {k}: p[{x}] = {got[k * Vocab + x]}, expected {expected[k][x]}");
                }
            }
        }

        using Tensor logits = Repeat(rows, batch);
        TreeSample[] samples = RunRows([.. Enumerable.Range(0, batch).Select(b => options[b % kinds.Length])], logits,
            Enumerable.Repeat(parents, batch).ToArray(), Enumerable.Repeat(tokens, batch).ToArray(), null);
        int[][] counts = [.. kinds.Select(_ => new int[Vocab])];
        for (int b = 0; b < batch; b++)
        {
            counts[b % kinds.Length][samples[b].Tokens[0]]++;
        }
        for (int k = 0; k < kinds.Length; k++)
        {
            AssertDistribution(counts[k], expected[k], $"kind {k}: T={kinds[k].T} top-k={kinds[k].K} top-p={kinds[k].P}");
        }
        Assert.Equal(perKind, counts[^1][ByRank(plain, 0)]);
        double bound = TvBound(perKind, Vocab);
        Assert.True(TotalVariation(counts[0], expected[1]) > bound, "temperature 0.5 passes as temperature 2: the check cannot tell rows apart");
        Assert.True(TotalVariation(counts[1], expected[0]) > bound, "temperature 2 passes as temperature 0.5: the check cannot tell rows apart");
    }

    // ---------- (6) randomness: the host stream, determinism, isolation ----------

    /// <summary>
    /// The host stream is the published algorithms, bit for bit: SplitMix64 from 1234567 and xoshiro256** from the state
    /// {1, 2, 3, 4} give their reference outputs (Vigna's C code; the same vectors as the Rust crate rand_xoshiro), so a
    /// seed means the same numbers on every runtime. Uniforms are the top 24 bits, in [0, 1).
    /// </summary>
    [Fact]
    public void TheRandomStreamMatchesTheReferenceOutputs()
    {
        ulong state = 1234567;
        ulong[] splitMix = [.. Enumerable.Range(0, 5).Select(_ => SamplingStream.SplitMix64(ref state))];
        Assert.Equal([6457827717110365317UL, 3203168211198807973UL, 9817491932198370423UL, 4593380528125082431UL, 16408922859458223821UL], splitMix);
        SamplingStream x = SamplingStream.FromState(1, 2, 3, 4);
        ulong[] xoshiro = [.. Enumerable.Range(0, 10).Select(_ => x.NextUInt64())];
        Assert.Equal([11520UL, 0UL, 1509978240UL, 1215971899390074240UL, 1216172134540287360UL, 607988272756665600UL,
            16172922978634559625UL, 8476171486693032832UL, 10595114339597558777UL, 2904607092377533576UL], xoshiro);

        SamplingStream a = SamplingStream.Create(42), b = SamplingStream.Create(42);
        for (int i = 0; i < 1000; i++)
        {
            ulong bits = a.NextUInt64();
            float u = b.NextSingle();
            Assert.Equal((bits >> 40) / 16777216.0, (double)u);
            Assert.InRange(u, 0f, 0.99999995f);
        }
        Assert.Equal(42L, a.Seed);
        Assert.Null(SamplingStream.Create(null).Seed);
        Assert.NotEqual(SamplingStream.Create(null).NextUInt64(), SamplingStream.Create(null).NextUInt64());
        Assert.NotEqual(SamplingStream.Create(1).NextUInt64(), SamplingStream.Create(2).NextUInt64());
    }

    /// <summary>
    /// A call draws 2n − 1 uniforms from the stream of a sampling sequence of n nodes (one per child, one per node for its
    /// final token) and none for a greedy one, whatever the batch's width and widest node: the count that makes a
    /// sequence's numbers independent of its companions.
    /// </summary>
    [Fact]
    public void EachSequenceDrawsTwiceItsNodesMinusOne()
    {
        int[][] parents = [[-1, 0, 0, 1], [-1], [-1, 0, 0, 0, 0, 0, 1, 6], [-1, 0]];
        int[][] tokens = [.. parents.Select(p => p.Select((_, t) => t).ToArray())];
        SamplingStream[] streams = [.. Enumerable.Range(0, 4).Select(i => SamplingStream.Create(100 + i))];
        SamplingOptions[] options = [new() { Seed = 100 }, new() { Seed = 101 }, new() { Seed = 102, TopP = 0.5f }, new() { Temperature = 0, Seed = 103 }];
        using Tensor logits = randn(4, 8, Vocab);
        SamplingTreeVerifier.Verify(logits, parents, tokens, [.. Enumerable.Range(0, 4).Select(i => new SequenceSampling(options[i], streams[i], null))]);
        for (int i = 0; i < 4; i++)
        {
            SamplingStream fresh = SamplingStream.Create(100 + i);
            int draws = options[i].IsGreedy ? 0 : 2 * parents[i].Length - 1;
            for (int d = 0; d < draws; d++)
            {
                fresh.NextSingle();
            }
            Assert.True(fresh.NextUInt64() == streams[i].NextUInt64(), $"sequence {i} did not draw {draws} numbers");
        }
    }

    /// <summary>
    /// Two streams with the same seed give the same outputs over two successive calls; a stream's second call differs
    /// from its first (the stream advances), and another seed differs. For point-mass and sampled drafts.
    /// </summary>
    [Fact]
    public void SameSeedSameOutput()
    {
        using var scope = NewDisposeScope();
        const int batch = 2000;
        int[] parents = [-1, 0, 0, 1, 1, 2];
        (float[] logits, _, int[] tokens) = PointMassCase(parents, [0, 0, 1, 0, 2, 0]);
        using Tensor input = Repeat(logits, batch);
        using Tensor draft = softmax(tensor(RandomLogits(new Random(4), parents.Length, Vocab, 1.0), [1, parents.Length, Vocab]), -1)
            .expand(batch, parents.Length, Vocab);
        int[][] par = Enumerable.Repeat(parents, batch).ToArray(), tok = Enumerable.Repeat(tokens, batch).ToArray();
        string[] Twice(long seed, Tensor? q)
        {
            var options = new SamplingOptions { Temperature = Temperature, TopK = 6, TopP = 0.95f, Seed = seed };
            SamplingStream stream = SamplingStream.Create(seed);
            SequenceSampling[] sequences = [.. Enumerable.Range(0, batch).Select(b => new SequenceSampling(options, stream, q?[b]))];
            return [.. new[] { SamplingTreeVerifier.Verify(input, par, tok, sequences), SamplingTreeVerifier.Verify(input, par, tok, sequences) }
                .Select(r => string.Join(";", r.Select(Describe)))];
        }
        foreach (Tensor? q in new[] { null, draft })
        {
            string[] a = Twice(42, q), b = Twice(42, q), c = Twice(43, q);
            Assert.Equal(a, b);
            Assert.NotEqual(a[0], a[1]);
            Assert.NotEqual(a[0], c[0]);
        }
    }

    /// <summary>
    /// Seed isolation: a seeded sequence gives the same outputs over 8 successive calls alone and inside two different
    /// batches (placed first or third; companions that are greedy, sample with the same seed in another options object,
    /// sample unseeded, carry draft distributions or not, and make the batch wider (T) and bushier (K)); its padding rows
    /// are NaN in one batch and random in another. Checked for a point-mass and a sampled draft of the sequence; the 8
    /// outputs are not all equal, so the randomness is live.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ASeededSequenceIgnoresItsCompanions(bool withDraft)
    {
        using var scope = NewDisposeScope();
        const int calls = 8, vocab = 50;
        var rng = new Random(123);
        int[] parents = [-1, 0, 0, 1, 2];
        int[] tokens = [0, 3, 7, 11, 5];
        float[] own = RandomLogits(rng, parents.Length, vocab, 1.0);
        Tensor q = softmax(tensor(RandomLogits(rng, 3, vocab, 1.0), [3, vocab]), -1); // rows for nodes 0..2, the ones with children
        var options = new SamplingOptions { Temperature = 1.1f, TopP = 0.97f, Seed = 2024 };

        // Each scenario: (the batch's width, the sequence's place, the companions' trees, options and drafts).
        string[] Scenario(int width, int place, int[][] companionParents, SamplingOptions[] companionOptions, bool[] companionDraft, float padding)
        {
            int batch = companionParents.Length + 1;
            var logits = new float[batch * width * vocab];
            var par = new int[batch][];
            var tok = new int[batch][];
            var sequences = new SequenceSampling[batch];
            var streams = companionOptions.Select(o => SamplingStream.Create(o.Seed)).ToArray();
            SamplingStream mine = SamplingStream.Create(options.Seed);
            for (int b = 0, c = 0; b < batch; b++)
            {
                float[] rows = b == place ? own : RandomLogits(rng, width, vocab, 2.0);
                rows.CopyTo(logits, b * width * vocab);
                if (b == place)
                {
                    logits.AsSpan((b * width + parents.Length) * vocab, (width - parents.Length) * vocab).Fill(padding);
                    (par[b], tok[b]) = (parents, tokens);
                    sequences[b] = new SequenceSampling(options, mine, withDraft ? q : null);
                    continue;
                }
                par[b] = companionParents[c];
                tok[b] = [.. par[b].Select((_, t) => (t * 7) % vocab)];
                Tensor? companionQ = companionDraft[c] ? softmax(randn(par[b].Length, vocab), -1) : null;
                sequences[b] = new SequenceSampling(companionOptions[c], streams[c], companionQ);
                c++;
            }
            using Tensor input = tensor(logits, [batch, width, vocab]);
            return [.. Enumerable.Range(0, calls).Select(_ => Describe(SamplingTreeVerifier.Verify(input, par, tok, sequences)[place]))];
        }

        string[] alone = Scenario(parents.Length, 0, [], [], [], 0f);
        string[] crowded = Scenario(9, 2,
            [[-1, 0, 0, 0, 0, 1, 1, 2, 3], [-1], [-1, 0, 1, 2, 3, 4]],
            [new() { Temperature = 0 }, new() { Temperature = 1.1f, TopP = 0.97f, Seed = 2024 }, new() { Temperature = 0.6f, TopK = 4 }],
            [true, false, true], float.NaN);
        string[] other = Scenario(7, 0,
            [[-1, 0, 1, 1, 1, 0, 5]],
            [new() { Temperature = 2f, Seed = 7 }],
            [false], 3.5f);
        Assert.Equal(alone, crowded);
        Assert.Equal(alone, other);
        Assert.True(alone.Distinct().Count() > 1, "8 calls gave one output: the case does not exercise the randomness");
    }

    /// <summary>The closed form for point-mass batches against the general loop, on the same uniforms: random trees with up
    /// to six children a node, random temperatures, top-k and top-p, greedy rows among them, and peaked rows where one
    /// child holds nearly all the mass (the residual-floor case). Every sample agrees.</summary>
    [Fact]
    public void TheClosedFormForPointMassesEqualsTheGeneralLoop()
    {
        using var scope = NewDisposeScope();
        var rng = new Random(77);
        const int vocab = 64, batch = 4, width = 12;
        int cases = 0, differentFromTheFirstChild = 0;
        for (int round = 0; round < 150; round++)
        {
            var parents = new int[batch][];
            var tokens = new int[batch][];
            var options = new SamplingOptions[batch];
            var logits = new float[batch * width * vocab];
            for (int b = 0; b < batch; b++)
            {
                int n = rng.Next(1, width + 1);
                parents[b] = new int[n];
                tokens[b] = new int[n];
                parents[b][0] = -1;
                var used = new HashSet<(int, int)>();
                for (int t = 1; t < n; t++)
                {
                    int parent = rng.Next(0, Math.Min(t, 3)); // bushy near the root: up to several children a node
                    int token;
                    do { token = rng.Next(vocab); } while (!used.Add((parent, token)));
                    (parents[b][t], tokens[b][t]) = (parent, token);
                }
                options[b] = rng.Next(5) switch
                {
                    0 => new SamplingOptions { Temperature = 0 },
                    1 => new SamplingOptions { Temperature = 0.7f, TopK = 5 },
                    2 => new SamplingOptions { Temperature = 1.3f, TopP = 0.9f },
                    _ => new SamplingOptions { Temperature = (float)(0.2 + rng.NextDouble()) },
                };
                float[] rows = RandomLogits(rng, width, vocab, rng.Next(2) == 0 ? 1.0 : 8.0); // 8: peaked rows
                rows.CopyTo(logits, b * width * vocab);
                // drafts worth verifying: most children hold a large share of their parent's mass, so rejections move
                // real mass and later ranks' acceptance depends on it; now and then one holds nearly all of it
                for (int t = 1; t < n; t++)
                {
                    if (rng.Next(4) != 0)
                    {
                        logits[(b * width + parents[b][t]) * vocab + tokens[b][t]] = (float)(4 + 3 * rng.NextDouble());
                    }
                }
                if (n > 1 && rng.Next(3) == 0)
                {
                    logits[(b * width + parents[b][1]) * vocab + tokens[b][1]] = 60f;
                }
            }
            using Tensor input = tensor(logits, [batch, width, vocab]);
            SequenceSampling[] Sequences(int seed) => [.. options.Select((o, b) => new SequenceSampling(o, o.IsGreedy ? null : SamplingStream.Create(seed + b), null))];
            TreeSample[] closed = SamplingTreeVerifier.Verify(input, parents, tokens, Sequences(round * 10), closedForm: true);
            TreeSample[] loop = SamplingTreeVerifier.Verify(input, parents, tokens, Sequences(round * 10), closedForm: false);
            for (int b = 0; b < batch; b++)
            {
                Assert.Equal(Describe(loop[b]), Describe(closed[b]));
                cases++;
                differentFromTheFirstChild += closed[b].AcceptedNodes.Length == 1 || closed[b].AcceptedNodes[1] != 1 ? 1 : 0;
            }
        }
        Assert.Equal(600, cases);
        Assert.True(differentFromTheFirstChild > 20, "the walks should reject and move past first children often");
    }
}
