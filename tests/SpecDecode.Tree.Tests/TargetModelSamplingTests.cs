using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// <c>TargetModel.VerifySampled</c> end to end: the forward, the sampling verifier and the KV commit together, for the
/// single-options overload and the per-sequence one (options and draft distributions per input, in input order).
/// </summary>
public sealed class TargetModelSamplingTests
{
    private static int[] Ints(long[] ids) => ids.Select(i => (int)i).ToArray();

    private static (string Folder, int[] Prompt) LlamaGqa()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        return (folder, Ints(SharedFixtures.Ids(expected, "prompt_ids")));
    }

    private static int Argmax(Tensor row) => (int)row.argmax().item<long>();

    private static string Describe(VerifiedStep s) => $"{s.Slot}:{string.Join(",", s.AcceptedNodes)}|{string.Join(",", s.Tokens)}";

    [Fact]
    public void TemperatureZeroReproducesTheGreedyContinuation()
    {
        string folder = SharedFixtures.TinyCheckpoint("qwen2-tied");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] continuation = Ints(SharedFixtures.Ids(expected, "greedy_continuation"));
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 128 });
        model.Prefill([(0, prompt[..^1])]);
        var greedy = new SamplingOptions { Temperature = 0 };
        int root = prompt[^1];
        var output = new List<int>();
        while (output.Count < continuation.Length)
        {
            // The right next two tokens with a wrong sibling first, so acceptance has to skip a child.
            int done = output.Count;
            int[] next = continuation[done..Math.Min(done + 2, continuation.Length)];
            int wrong = (next[0] + 1) % model.Config.VocabSize;
            DraftTree draft = DraftTree.Create([wrong, .. next], [-1, -1, .. next.Length > 1 ? new[] { 1 } : []], []);
            VerifiedStep step = model.VerifySampled([new TreeInput(0, root, draft)], greedy)[0];
            output.AddRange(step.Tokens);
            root = step.Bonus;
        }
        Assert.Equal(continuation, output.Take(continuation.Length).ToArray());
        Assert.Equal(prompt.Length - 1 + output.Count, model.CachedLength(0));
    }

    [Fact]
    public void FirstTokenFollowsTheTargetDistributionAcrossABatch()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        const int slots = 64, rounds = 40, topK = 4;
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = slots, MaxContext = 64 });
        model.Prefill(Enumerable.Range(0, slots).Select(s => (s, prompt[..^1])).ToList());

        // The target distribution at the root: softmax over the top 4 logits (temperature 1).
        using Tensor rootLogits = model.TreeLogits([new TreeInput(0, prompt[^1], DraftTree.Empty)])[0][0];
        (Tensor values, Tensor indices) = rootLogits.topk(topK);
        float[] p = values.softmax(0).data<float>().ToArray();
        int[] top = indices.data<long>().Select(i => (int)i).ToArray();

        // Point-mass drafts: the likeliest token, the least likely of the four, and a token outside the top 4.
        int outside = Enumerable.Range(0, model.Config.VocabSize).First(t => !top.Contains(t));
        DraftTree draft = DraftTree.Create([top[0], top[3], outside], [-1, -1, -1], []);
        var options = new SamplingOptions { Temperature = 1, TopK = topK, Seed = 11 };
        var counts = new Dictionary<int, int>();
        var inputs = Enumerable.Range(0, slots).Select(s => new TreeInput(s, prompt[^1], draft)).ToArray();
        for (int round = 0; round < rounds; round++)
        {
            foreach (VerifiedStep step in model.VerifySampled(inputs, options))
            {
                counts[step.Tokens[0]] = counts.GetValueOrDefault(step.Tokens[0]) + 1;
                Assert.Equal(prompt.Length + step.AcceptedCount, model.CachedLength(step.Slot));
                model.Truncate(step.Slot, prompt.Length - 1);
            }
        }
        int n = slots * rounds;
        Assert.DoesNotContain(outside, counts.Keys);
        Assert.All(counts.Keys, t => Assert.Contains(t, top));
        double tv = 0.5 * top.Select((t, i) => Math.Abs(counts.GetValueOrDefault(t) / (double)n - p[i])).Sum();
        // Hoeffding + union bound over the 2^4 subsets: P(TV >= eps) <= 2^4 exp(-2 n eps^2) = 1e-6 at eps ~ 0.073 for n = 2560.
        double eps = Math.Sqrt((topK * Math.Log(2) + Math.Log(1e6)) / (2.0 * n));
        Assert.True(tv < eps, $"first-token TV {tv:F4} >= {eps:F4}; counts {string.Join(", ", top.Select(t => counts.GetValueOrDefault(t)))}, p {string.Join(", ", p)}");
    }

    [Fact]
    public void SameSeedSameTokens()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = Ints(SharedFixtures.Ids(expected, "prompt_ids"));
        int[] Run()
        {
            using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 96 });
            model.Prefill([(0, prompt[..^1])]);
            var options = new SamplingOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 3 };
            var output = new List<int>();
            int root = prompt[^1];
            for (int i = 0; i < 15; i++)
            {
                VerifiedStep step = model.VerifySampled([new TreeInput(0, root, DraftTree.Chain([root, root]))], options)[0];
                output.AddRange(step.Tokens);
                root = step.Bonus;
            }
            return output.ToArray();
        }
        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void DraftProbabilitiesOfTheWrongShapeAreRefused()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 32 });
        using Tensor q = ones([1, 3, model.Config.VocabSize]);
        var e = Assert.Throws<ArgumentException>(() => model.VerifySampled([new TreeInput(0, 1, DraftTree.Chain([2]))], new SamplingOptions(), q));
        Assert.Contains("[1, 2,", e.Message);
        Assert.Equal(0, model.CachedLength(0));
    }

    /// <summary>
    /// Eight slots with ragged prompts verified in one call per round, inputs listed out of slot order, for 6 rounds:
    /// three greedy slots (one with draft distributions), two slots sampling at temperature 1.7 with top-k 1 (one with
    /// draft distributions), three sampling at temperature 1 (one with top-p 0.9, one with draft distributions). Drafts
    /// hold the two-token greedy continuation, a wrong guess or random tokens, so acceptance and rejection both happen.
    /// Every greedy and top-k-1 slot emits exactly what <see cref="TargetModel.VerifyGreedy"/> emits for the same inputs
    /// (run first, then rolled back) and caches as much; the sampling slots leave the greedy path at least once.
    /// </summary>
    [Fact]
    public void GreedyRowsOfAMixedBatchEqualVerifyGreedy()
    {
        (string folder, int[] prompt) = LlamaGqa();
        const int slots = 8, rounds = 6;
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = slots, MaxContext = 96 });
        int vocab = model.Config.VocabSize;
        model.Prefill([.. Enumerable.Range(0, slots).Select(s => (s, prompt[..(prompt.Length - 1 - s % 4)]))]);
        int[] roots = [.. Enumerable.Range(0, slots).Select(s => prompt[prompt.Length - 1 - s % 4])];
        // Kinds per slot: greedy, top-k 1 at temperature 1.7, sampling at temperature 1.
        SamplingOptions greedy = new() { Temperature = 0 };
        SamplingOptions[] options =
        [
            greedy, new() { Temperature = 1, Seed = 1 }, new() { Temperature = 1.7f, TopK = 1, Seed = 2 }, greedy,
            new() { Temperature = 1, TopP = 0.9f, Seed = 4 }, new() { Temperature = 1.7f, TopK = 1, TopP = 0.5f }, greedy, new() { Temperature = 1 },
        ];
        bool[] followsGreedy = [.. options.Select(o => o.IsGreedy || o.TopK == 1)];
        bool[] withDraft = [false, false, false, true, false, true, false, true];
        int[] order = [5, 0, 3, 7, 1, 6, 2, 4];
        var rng = new Random(5);
        int sampledLeft = 0;
        for (int round = 0; round < rounds; round++)
        {
            // The greedy two-token continuation of every slot, from two logits-only forwards.
            using Tensor first = model.TreeLogits([.. Enumerable.Range(0, slots).Select(s => new TreeInput(s, roots[s], DraftTree.Empty))]);
            int[] g1 = [.. Enumerable.Range(0, slots).Select(s => Argmax(first[s][0]))];
            using Tensor second = model.TreeLogits([.. Enumerable.Range(0, slots).Select(s => new TreeInput(s, roots[s], DraftTree.Chain([g1[s]])))]);
            int[] g2 = [.. Enumerable.Range(0, slots).Select(s => Argmax(second[s][1]))];
            TreeInput[] inputs = [.. order.Select(s =>
            {
                int wrong = (g1[s] + 1 + s) % vocab;
                DraftTree draft = ((s + round) % 3) switch
                {
                    0 => DraftTree.Create([wrong, g1[s], g2[s]], [-1, -1, 1], []),
                    1 => DraftTree.Create([g1[s], (g2[s] + 1) % vocab], [-1, 0], []),
                    _ => DraftTree.Create([rng.Next(vocab / 2), vocab / 2 + rng.Next(vocab / 2)], [-1, -1], []),
                };
                return new TreeInput(s, roots[s], draft);
            })];
            int[] before = [.. Enumerable.Range(0, slots).Select(model.CachedLength)];
            VerifiedStep[] reference = model.VerifyGreedy(inputs);
            int[] greedyLengths = [.. Enumerable.Range(0, slots).Select(model.CachedLength)];
            for (int s = 0; s < slots; s++)
            {
                model.Truncate(s, before[s]);
            }
            using var scope = NewDisposeScope();
            Tensor?[] drafts = [.. inputs.Select(i => withDraft[i.Slot] ? softmax(randn(i.Draft.Count + 1, vocab) * 3, -1) : null)];
            VerifiedStep[] mixed = model.VerifySampled(inputs, [.. inputs.Select(i => options[i.Slot])], drafts);
            for (int i = 0; i < inputs.Length; i++)
            {
                int s = inputs[i].Slot;
                Assert.Equal(s, mixed[i].Slot);
                Assert.Equal(before[s] + 1 + mixed[i].AcceptedCount, model.CachedLength(s));
                if (followsGreedy[s])
                {
                    Assert.Equal(Describe(reference[i]), Describe(mixed[i]));
                    Assert.Equal(greedyLengths[s], model.CachedLength(s));
                }
                else
                {
                    sampledLeft += Describe(reference[i]) == Describe(mixed[i]) ? 0 : 1;
                }
                roots[s] = mixed[i].Bonus;
            }
        }
        Assert.True(sampledLeft > 0, "the sampling slots always emitted the greedy tokens: the case does not show they sample");
    }

    /// <summary>
    /// Seed isolation end to end: a point-mass sequence (seed 3) and one with draft distributions (seed 4) emit the same
    /// 12 steps of tokens alone (each in slot 0 of its own model) and together in one batch at slots 2 and 4, beside a
    /// greedy sequence, an unseeded one with draft distributions and one with the same seed in another options object,
    /// whose trees are bigger (so the batch is wider and bushier). Another seed gives other tokens. (The batched forward may
    /// round a row's logits differently from the lone one; a uniform within that rounding of a threshold would flip a
    /// token, which the fixed seeds here do not meet.)
    /// </summary>
    [Fact]
    public void ASeededSequenceGetsTheSameTokensWhateverSharesTheBatch()
    {
        (string folder, int[] prompt) = LlamaGqa();
        const int steps = 12;
        int vocab;
        using (TargetModel probe = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 16 }))
        {
            vocab = probe.Config.VocabSize;
        }
        // A's draft: the chain (root, root); B's: the chain (root, root + 1) with fixed draft distributions (2 rows: node 1 is a leaf).
        var qRng = new Random(17);
        float[] qHost = new float[2 * vocab];
        for (int i = 0; i < qHost.Length; i++)
        {
            qHost[i] = (float)Math.Exp(3 * qRng.NextDouble());
        }
        using Tensor qRaw = tensor(qHost, [2, vocab]);
        using Tensor q = qRaw / qRaw.sum(1, keepdim: true);
        DraftTree DraftA(int root) => DraftTree.Chain([root, root]);
        DraftTree DraftB(int root) => DraftTree.Chain([root, (root + 1) % vocab]);

        // Runs the sequences named by `seeded` (A and/or B) at the given slots, with or without companions.
        Dictionary<char, string> Run((char Name, int Slot)[] seeded, bool companions, long seedA = 3)
        {
            using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 6, MaxContext = 160 });
            var a = new SamplingOptions { Temperature = 0.9f, TopP = 0.95f, Seed = seedA };
            var b = new SamplingOptions { Temperature = 1.2f, TopK = 40, Seed = 4 };
            var others = new (int Slot, SamplingOptions Options, bool Draft)[]
            {
                (0, new SamplingOptions { Temperature = 0 }, false),
                (1, new SamplingOptions { Temperature = 0.8f }, true),
                (3, new SamplingOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 3 }, false),
            };
            // A's context is the prompt, B's the prompt less one token, a companion's the prompt less slot + 2 tokens.
            var contexts = seeded.Select(x => (x.Slot, Cut: x.Name == 'A' ? 1 : 2))
                .Concat(companions ? others.Select(o => (o.Slot, Cut: o.Slot + 2)) : []).ToArray();
            model.Prefill([.. contexts.Select(c => (c.Slot, prompt[..^c.Cut]))]);
            var roots = contexts.ToDictionary(c => c.Slot, c => prompt[^c.Cut]);
            var output = seeded.ToDictionary(x => x.Name, _ => new List<int>());
            var rng = new Random(9);
            for (int step = 0; step < steps; step++)
            {
                using var scope = NewDisposeScope();
                var inputs = new List<TreeInput>();
                var options = new List<SamplingOptions>();
                var drafts = new List<Tensor?>();
                foreach ((char name, int slot) in seeded)
                {
                    inputs.Add(new TreeInput(slot, roots[slot], name == 'A' ? DraftA(roots[slot]) : DraftB(roots[slot])));
                    options.Add(name == 'A' ? a : b);
                    drafts.Add(name == 'A' ? null : q);
                }
                if (companions)
                {
                    foreach ((int slot, SamplingOptions o, bool draft) in others)
                    {
                        DraftTree tree = DraftTree.Create([.. Enumerable.Range(0, 6).Select(_ => rng.Next(vocab))], [-1, 0, 0, 0, 0, 1], []);
                        inputs.Insert(0, new TreeInput(slot, roots[slot], tree));
                        options.Insert(0, o);
                        drafts.Insert(0, draft ? softmax(randn(tree.Count + 1, vocab), -1) : null);
                    }
                }
                foreach (VerifiedStep result in model.VerifySampled(inputs, options, drafts))
                {
                    roots[result.Slot] = result.Bonus;
                    foreach ((char name, int slot) in seeded.Where(x => x.Slot == result.Slot))
                    {
                        output[name].AddRange(result.Tokens);
                    }
                }
            }
            return output.ToDictionary(kv => kv.Key, kv => string.Join(",", kv.Value));
        }

        string aloneA = Run([('A', 0)], false)['A'];
        string aloneB = Run([('B', 0)], false)['B'];
        Dictionary<char, string> together = Run([('A', 2), ('B', 4)], true);
        Assert.Equal(aloneA, together['A']);
        Assert.Equal(aloneB, together['B']);
        Assert.NotEqual(aloneA, Run([('A', 0)], false, seedA: 5)['A']); // the seed matters: the tokens are sampled
    }

    /// <summary>
    /// An options object's stream advances from call to call, and setting its seed to another number restarts it from
    /// that number: the same state verified again with seed 3 set anew repeats the first call's tokens, and seed 4
    /// repeats what a fresh options object with seed 4 gives.
    /// </summary>
    [Fact]
    public void SettingAnotherSeedRestartsTheStream()
    {
        (string folder, int[] prompt) = LlamaGqa();
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxContext = 64 });
        model.Prefill([(0, prompt[..^1])]);
        int cached = prompt.Length - 1;
        string Step(SamplingOptions options)
        {
            VerifiedStep step = model.VerifySampled([new TreeInput(0, prompt[^1], DraftTree.Chain([prompt[^1], prompt[^1]]))], [options])[0];
            model.Truncate(0, cached);
            return Describe(step);
        }
        var options = new SamplingOptions { Temperature = 1.5f, Seed = 3 };
        string first = Step(options);
        string[] later = [.. Enumerable.Range(0, 4).Select(_ => Step(options))];
        Assert.Contains(later, s => s != first); // the stream advances
        options.Seed = 4;
        string four = Step(options);
        Assert.Equal(Step(new SamplingOptions { Temperature = 1.5f, Seed = 4 }), four);
        options.Seed = 3;
        Assert.Equal(first, Step(options));
    }

    /// <summary>
    /// <c>draftDistributions[i]</c> belongs to <c>inputs[i]</c>, not to a slot: five slots with different contexts, inputs
    /// listed out of slot order, one-token drafts, one of them model-free and the others with q = the target's own
    /// distribution for that input (from a logits-only forward of the same inputs), given as 1 or 2 rows. With q = p every
    /// drafted token is accepted (p/q = 1). Negative control: the same q handed to the wrong inputs (rotated) rejects at
    /// least one, for tokens chosen so that each is far less likely under the rotated q (all accepted with probability
    /// below 1e-3).
    /// </summary>
    [Fact]
    public void DraftDistributionsBelongToTheirInputs()
    {
        (string folder, int[] prompt) = LlamaGqa();
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 5, MaxContext = 64 });
        int vocab = model.Config.VocabSize;
        model.Prefill([.. Enumerable.Range(0, 5).Select(s => (s, prompt[..(prompt.Length - 1 - 3 * s)]))]);
        int[] order = [3, 0, 4, 1, 2];
        int[] roots = [.. order.Select(s => prompt[prompt.Length - 1 - 3 * s])];
        int[] withQ = [0, 1, 3, 4]; // positions in `order` with draft distributions; position 2 (slot 4) is model-free
        int Rotated(int k) => withQ[(Array.IndexOf(withQ, k) + 1) % withQ.Length];
        var options = new SamplingOptions { Temperature = 1, Seed = 8 };
        using var scope = NewDisposeScope();

        // The target's distribution after each root (row 0 does not depend on the draft).
        TreeInput[] bare = [.. order.Select((s, k) => new TreeInput(s, roots[k], DraftTree.Empty))];
        using Tensor bareLogits = model.TreeLogits(bare);
        using Tensor p0 = SamplingTreeVerifier.TargetProbabilities(bareLogits, [.. Enumerable.Repeat(options, 5)]);
        float[][] pRow = [.. order.Select(s => p0[s][0].data<float>().ToArray())];
        // Token k: the one most unlikely under the rotated q relative to its own p.
        int[] token = [.. order.Select((_, k) => withQ.Contains(k)
            ? Enumerable.Range(0, vocab).MaxBy(x => pRow[Rotated(k)][x] / pRow[k][x])
            : (roots[k] + 1) % vocab)];
        double allAcceptedIfRotated = withQ.Aggregate(1.0, (acc, k) => acc * Math.Min(1, pRow[k][token[k]] / (double)pRow[Rotated(k)][token[k]]));
        Assert.True(allAcceptedIfRotated < 1e-3, $"the control is weak: rotated q accepts everything with probability {allAcceptedIfRotated}");

        TreeInput[] inputs = [.. order.Select((s, k) => new TreeInput(s, roots[k], DraftTree.Chain([token[k]])))];
        using Tensor logits = model.TreeLogits(inputs);
        using Tensor p = SamplingTreeVerifier.TargetProbabilities(logits, [.. Enumerable.Repeat(options, 5)]);
        Tensor?[] q = [.. order.Select((s, k) => withQ.Contains(k) ? p[s].narrow(0, 0, 1 + k % 2) : null)];
        int[] before = [.. Enumerable.Range(0, 5).Select(model.CachedLength)];

        VerifiedStep[] matched = model.VerifySampled(inputs, [.. Enumerable.Repeat(options, 5)], q);
        foreach (int k in withQ)
        {
            Assert.Equal(order[k], matched[k].Slot);
            Assert.Equal([0], matched[k].AcceptedNodes);
            Assert.Equal(token[k], matched[k].Tokens[0]);
        }
        for (int s = 0; s < 5; s++)
        {
            model.Truncate(s, before[s]);
        }
        Tensor?[] rotated = [.. order.Select((_, k) => withQ.Contains(k) ? q[Rotated(k)] : null)];
        VerifiedStep[] wrong = model.VerifySampled(inputs, [.. Enumerable.Repeat(options, 5)], rotated);
        Assert.Contains(withQ, k => wrong[k].AcceptedCount == 0);
    }

    /// <summary>
    /// The per-sequence overload refuses, before anything is cached, options or draft distributions that are not one per
    /// input, a null options entry, and draft distributions of the wrong rank, vocabulary, dtype, device or row count, with
    /// a message that says what to pass; a trailing childless node may go without a row.
    /// </summary>
    [Fact]
    public void PerSequenceArgumentsAreValidated()
    {
        (string folder, int[] prompt) = LlamaGqa();
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 2, MaxContext = 64 });
        int vocab = model.Config.VocabSize;
        model.Prefill([(0, prompt[..^1]), (1, prompt[..^1])]);
        int cached = prompt.Length - 1;
        // Slot 0: root's children 5 and 6, node 1 (6) has child 7: rows for the root and node 1 needed (2 + 1 = 3 rows, at most 4).
        TreeInput[] inputs = [new(0, prompt[^1], DraftTree.Create([5, 6, 7], [-1, -1, 1], [])), new(1, prompt[^1], DraftTree.Empty)];
        SamplingOptions[] two = [new() { Seed = 1 }, new() { Temperature = 0 }];
        using var scope = NewDisposeScope();
        Tensor Q(long rows, long v = -1) => ones(rows, v < 0 ? vocab : v) / vocab;
        ArgumentException Refused(IReadOnlyList<SamplingOptions> options, IReadOnlyList<Tensor?>? drafts)
        {
            var e = Assert.ThrowsAny<ArgumentException>(() => model.VerifySampled(inputs, options, drafts));
            Assert.Equal(cached, model.CachedLength(0));
            Assert.Equal(cached, model.CachedLength(1));
            return e;
        }

        Assert.Contains("one SamplingOptions per input", Refused([two[0]], null).Message);
        Assert.Contains("options[1] is null", Refused([two[0], null!], null).Message);
        Assert.Contains("one per input", Refused(two, [Q(3)]).Message);
        Assert.Contains($"[3..4, {vocab}]", Refused(two, [Q(3, vocab + 1), null]).Message);
        Assert.Contains("row 0 for the root's children", Refused(two, [ones(1, 3, vocab), null]).Message);
        Assert.Contains("floating point", Refused(two, [ones(3, vocab, ScalarType.Int32), null]).Message);
        Assert.Contains("is on meta", Refused(two, [empty(3, vocab, device: META), null]).Message);
        string missing = Refused(two, [Q(2), null]).Message;
        Assert.Contains("draft node 1 has children", missing);
        Assert.Contains("row 2 is missing", missing);
        Assert.Contains("for a tree of 3 nodes", Refused(two, [Q(5), null]).Message);
        Assert.Contains("0..1", Refused(two, [Q(3), Q(2)]).Message); // an empty draft takes 0 or 1 rows

        // Three rows (node 2 is a leaf) and four rows both work; the greedy sequence may carry a row too.
        VerifiedStep[] ok = model.VerifySampled(inputs, two, [Q(3), Q(1)]);
        Assert.Equal(2, ok.Length);
        Assert.Equal(cached + 1 + ok[0].AcceptedCount, model.CachedLength(0));
        model.Truncate(0, cached);
        model.Truncate(1, cached);
        Assert.Equal(2, model.VerifySampled(inputs, two, [Q(4), null]).Length);
    }
}
