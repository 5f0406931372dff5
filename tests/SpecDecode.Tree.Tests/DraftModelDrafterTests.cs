using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Tokenizers;
using SpecDecode.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// <see cref="DraftModelDrafter"/> on the tiny checkpoints and random models, on the CPU: drafts of the target's own
/// checkpoint are accepted to full depth, the incremental cache gives the trees a recomputation gives, a batch gives
/// what single proposals give, the greedy tree equals an independent reference built from verification forwards, the
/// sampled chain's registered distributions are right (and make a same-model draft fully accepted by the sampling
/// verifier), vocabularies are checked, and misuse gets typed errors.
/// </summary>
public sealed class DraftModelDrafterTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-draft-" + Guid.NewGuid().ToString("N"));

    public DraftModelDrafterTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static int[] Ints(long[] ids) => ids.Select(i => (int)i).ToArray();

    private static (int[] Prompt, int[] Continuation, int[] Second) Fixture(string name)
    {
        using var expected = SharedFixtures.Expected(SharedFixtures.TinyCheckpoint(name));
        return (Ints(SharedFixtures.Ids(expected, "prompt_ids")), Ints(SharedFixtures.Ids(expected, "greedy_continuation")),
            Ints(SharedFixtures.Ids(expected, "second_prompt_ids")));
    }

    private static DraftModelDrafter LoadDrafter(string name, int topK = 4, int beam = 8, int maxDepth = 6, int maxRequests = 4,
        int maxContext = 512, bool keepGreedy = true, ScalarType? dtype = null) =>
        DraftModelDrafter.Load(SharedFixtures.TinyCheckpoint(name), new DraftModelOptions
        {
            Device = CPU, DType = dtype, MaxRequests = maxRequests, MaxContext = maxContext, TopK = topK, Beam = beam,
            MaxDepth = maxDepth, KeepGreedyPath = keepGreedy,
        });

    private static TargetModel LoadTarget(string name, int maxContext = 512) =>
        TargetModel.Load(SharedFixtures.TinyCheckpoint(name), new TargetModelOptions { Device = CPU, MaxContext = maxContext });

    /// <summary>llama-gqa's shape with another vocabulary size.</summary>
    private static ModelConfig Config(int vocab)
    {
        string json = File.ReadAllText(Path.Combine(SharedFixtures.TinyCheckpoint("llama-gqa"), "config.json"))
            .Replace("\"vocab_size\": 1000", $"\"vocab_size\": {vocab}", StringComparison.Ordinal);
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(json));
        ModelConfig config = ModelConfig.Parse(stream, "random");
        Assert.Equal(vocab, config.VocabSize);
        return config;
    }

    private static DraftModelDrafter RandomDrafter(int vocab, long seed, DraftModelOptions options) =>
        DraftModelDrafter.Create(
            TargetModel.CreateRandom(Config(vocab), new TargetModelOptions { Device = CPU, MaxBatch = options.MaxRequests, MaxContext = options.MaxContext }, seed),
            options);

    private static void AssertSameTree(DraftTree expected, DraftTree actual, string what)
    {
        Assert.True(expected.Tokens.SequenceEqual(actual.Tokens),
            $"{what}: tokens [{string.Join(", ", expected.Tokens.ToArray())}] vs [{string.Join(", ", actual.Tokens.ToArray())}]");
        Assert.True(expected.Parents.SequenceEqual(actual.Parents), what + ": parents differ");
        for (int i = 0; i < expected.Count; i++)
        {
            float e = expected.Probabilities[i], a = actual.Probabilities[i];
            Assert.True(Math.Abs(e - a) <= 1e-4 * Math.Max(e, 1e-30f), $"{what}: node {i} probability {a} vs {e}");
        }
    }

    /// <summary>Parents precede children, probabilities do not grow along paths, siblings differ, within the budget.</summary>
    private static void AssertInvariants(DraftTree tree, int budget, int maxDepth, int vocab)
    {
        Assert.True(tree.Count <= budget, $"{tree.Count} nodes over the budget {budget}");
        Assert.True(tree.MaxDepth <= maxDepth);
        for (int i = 0; i < tree.Count; i++)
        {
            int parent = tree.Parents[i];
            Assert.True(parent < i);
            Assert.InRange(tree.Tokens[i], 0, vocab - 1);
            Assert.InRange(tree.Probabilities[i], 0f, 1f);
            if (parent >= 0)
            {
                Assert.True(tree.Probabilities[i] <= tree.Probabilities[parent], $"node {i} is more probable than its parent");
            }
        }
        for (int node = -1; node < tree.Count; node++)
        {
            int[] children = tree.Children(node).ToArray();
            Assert.Equal(children.Length, children.Select(c => tree.Tokens[c]).Distinct().Count());
        }
    }

    // ---------- same model: full acceptance ----------

    [Theory]
    [InlineData("llama-gqa", 1, 1, 5, 5)]    // a greedy chain
    [InlineData("llama-gqa", 4, 8, 4, 24)]   // a tree, budget above the depth
    [InlineData("qwen2-tied", 3, 4, 6, 3)]   // a tree cut by a budget below the depth
    [InlineData("qwen2-tied", 2, 3, 5, 12)]
    public void DraftOfTheTargetsOwnCheckpointIsAcceptedToFullDepthEveryStep(string name, int topK, int beam, int maxDepth, int budget)
    {
        (int[] prompt, int[] continuation, _) = Fixture(name);
        using TargetModel target = LoadTarget(name);
        using DraftModelDrafter drafter = LoadDrafter(name, topK, beam, maxDepth);
        drafter.EnsureSameVocabulary(target.Config);
        var request = new RequestId(1);
        drafter.StartRequest(request, prompt, null);
        target.Prefill([(0, prompt[..^1])]);
        int root = prompt[^1];
        var output = new List<int>();
        int expected = Math.Min(maxDepth, budget);
        for (int step = 0; output.Count + expected + 1 <= continuation.Length; step++)
        {
            DraftTree tree = drafter.Propose(request, budget);
            AssertInvariants(tree, budget, maxDepth, target.Config.VocabSize);
            VerifiedStep verified = target.VerifyGreedy([new TreeInput(0, root, tree)])[0];
            Assert.True(expected == verified.AcceptedCount, $"step {step}: accepted {verified.AcceptedCount} of a {tree.Count}-node tree, expected {expected}");
            output.AddRange(verified.Tokens);
            drafter.Observe(request, verified.Tokens);
            root = verified.Bonus;
        }
        Assert.True(output.Count >= 3 * (expected + 1));
        Assert.Equal(continuation[..output.Count], output.ToArray());
        // The draft cache holds the context except the tokens just observed and the last token it was fed.
        (_, int cached, int pending) = drafter.Inspect(request);
        Assert.Equal(prompt.Length + output.Count, cached + pending);
        Assert.Equal(expected + 2, pending);
    }

    // ---------- the incremental cache equals a recomputation ----------

    [Theory]
    [InlineData(4, 8, 5, 30, true)]
    [InlineData(3, 2, 4, 9, false)]
    [InlineData(1, 1, 6, 6, true)]
    public void IncrementalCacheGivesTheTreesOfAFreshRequestFedTheWholeContext(int topK, int beam, int maxDepth, int budget, bool keepGreedy)
    {
        (int[] prompt, _, _) = Fixture("llama-gqa");
        using DraftModelDrafter drafter = LoadDrafter("llama-gqa", topK, beam, maxDepth, maxRequests: 2, keepGreedy: keepGreedy);
        var rng = new Random(5);
        var request = new RequestId(1);
        var context = new List<int>(prompt);
        drafter.StartRequest(request, prompt, null);
        var acceptedLengths = new HashSet<int>();
        for (int step = 0; step < 10; step++)
        {
            DraftTree tree = drafter.Propose(request, budget);
            if (step % 2 == 1)
            {
                // Proposing again without new tokens drafts the same tree.
                AssertSameTree(tree, drafter.Propose(request, budget), $"step {step}, proposed again");
            }
            drafter.StartRequest(new RequestId(2), context.ToArray(), null);
            DraftTree fresh = drafter.Propose(new RequestId(2), budget);
            drafter.EndRequest(new RequestId(2));
            AssertSameTree(fresh, tree, $"step {step}");

            // A partial acceptance: a random root-to-node path (possibly empty), then a random bonus token; once, a
            // long stretch that goes through the chunked prefill.
            var emitted = new List<int>();
            int accept = rng.Next(0, tree.MaxDepth + 1);
            if (accept > 0)
            {
                int[] atDepth = Enumerable.Range(0, tree.Count).Where(i => tree.Depths[i] == accept).ToArray();
                emitted.AddRange(tree.TokensTo(atDepth[rng.Next(atDepth.Length)]));
            }
            acceptedLengths.Add(emitted.Count);
            emitted.Add(rng.Next(1000));
            if (step == 6)
            {
                emitted.AddRange(Enumerable.Range(0, DraftModelDrafter.ChainFeedLimit + 5).Select(_ => rng.Next(1000)));
            }
            drafter.Observe(request, emitted.ToArray());
            context.AddRange(emitted);
        }
        Assert.True(acceptedLengths.Count >= 3, "the steps should cover several acceptance lengths");
        (_, int cached, int pending) = drafter.Inspect(request);
        Assert.Equal(context.Count, cached + pending);
    }

    [Fact]
    public void ADifferentDraftModelStaysInStepAndLossless()
    {
        // Target: llama-gqa in float32; draft: the same checkpoint in bfloat16, whose rounding changes some argmaxes of
        // these random weights, so acceptance varies from step to step. Output must stay the target's greedy text.
        (int[] prompt, int[] continuation, _) = Fixture("llama-gqa");
        using TargetModel target = LoadTarget("llama-gqa");
        using DraftModelDrafter drafter = LoadDrafter("llama-gqa", 3, 4, 5, dtype: ScalarType.BFloat16);
        drafter.EnsureSameVocabulary(target.Config);
        var request = new RequestId(9);
        drafter.StartRequest(request, prompt, null);
        target.Prefill([(0, prompt[..^1])]);
        int root = prompt[^1];
        var output = new List<int>();
        var accepted = new List<int>();
        while (output.Count < continuation.Length)
        {
            DraftTree tree = drafter.Propose(request, 16);
            VerifiedStep verified = target.VerifyGreedy([new TreeInput(0, root, tree)])[0];
            accepted.Add(verified.AcceptedCount);
            output.AddRange(verified.Tokens);
            drafter.Observe(request, verified.Tokens);
            root = verified.Bonus;
        }
        Assert.Equal(continuation, output.Take(continuation.Length).ToArray());
        Assert.True(accepted.Distinct().Count() >= 2, "acceptance lengths: " + string.Join(", ", accepted));
        (_, int cached, int pending) = drafter.Inspect(request);
        Assert.Equal(prompt.Length + output.Count, cached + pending);
    }

    // ---------- an independent reference for the greedy tree ----------

    [Theory]
    [InlineData(3, 2, 3, 10, true)]
    [InlineData(4, 3, 3, 28, false)]
    [InlineData(2, 5, 4, 7, true)]
    public void GreedyTreeEqualsAReferenceBuiltFromVerificationForwards(int topK, int beam, int maxDepth, int budget, bool keepGreedy)
    {
        (int[] prompt, _, int[] second) = Fixture("qwen2-tied");
        using TargetModel reference = LoadTarget("qwen2-tied");
        using DraftModelDrafter drafter = LoadDrafter("qwen2-tied", topK, beam, maxDepth, keepGreedy: keepGreedy);
        foreach (int[] context in new[] { prompt, second[..5] })
        {
            var request = new RequestId(context.Length);
            drafter.StartRequest(request, context, null);
            DraftTree tree = drafter.Propose(request, budget);
            drafter.EndRequest(request);
            AssertSameTree(ReferenceTree(reference, context, topK, beam, maxDepth, budget, keepGreedy), tree, $"context of {context.Length}");
        }
    }

    /// <summary>EAGLE-2's tree as the drafter documents it, each node's distribution from its own verification forward
    /// of the whole context plus the path.</summary>
    private static DraftTree ReferenceTree(TargetModel model, int[] context, int topK, int beam, int maxDepth, int budget, bool keepGreedy)
    {
        var token = new List<int>();
        var parent = new List<int>();
        var probability = new List<double>();
        var greedy = new List<bool>();
        double[] Distribution(int node)
        {
            var path = new List<int>();
            for (int n = node; n >= 0; n = parent[n])
            {
                path.Insert(0, token[n]);
            }
            int[] sequence = [.. context, .. path];
            using Tensor logits = model.TreeLogits([new TreeInput(0, sequence[0], DraftTree.Chain(sequence[1..]))]);
            using Tensor last = logits[0, sequence.Length - 1].to(float64).softmax(-1);
            return last.data<double>().ToArray();
        }
        var frontier = new List<int> { -1 };
        for (int depth = 1; depth <= Math.Min(maxDepth, budget); depth++)
        {
            int first = token.Count;
            foreach (int f in frontier)
            {
                double[] p = Distribution(f);
                int[] best = Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).Take(topK).ToArray();
                for (int c = 0; c < best.Length; c++)
                {
                    token.Add(best[c]);
                    parent.Add(f);
                    probability.Add((f < 0 ? 1 : probability[f]) * p[best[c]]);
                    greedy.Add((f < 0 || greedy[f]) && c == 0);
                }
            }
            var ranked = Enumerable.Range(first, token.Count - first).OrderByDescending(i => probability[i]).ThenBy(i => i).ToList();
            frontier = ranked.Take(Math.Min(beam, budget)).ToList();
            int g = ranked.FindIndex(i => greedy[i]);
            if (keepGreedy && g >= frontier.Count)
            {
                frontier[^1] = ranked[g];
            }
            frontier.Sort();
        }
        // Best-first from the root: the greedy path first (when kept), then by probability, ties to the earlier node.
        var taken = new List<int>();
        var open = Enumerable.Range(0, token.Count).Where(i => parent[i] < 0).ToList();
        while (taken.Count < budget && open.Count > 0)
        {
            int next = open.OrderBy(i => keepGreedy && greedy[i] ? 0 : 1).ThenByDescending(i => probability[i]).ThenBy(i => i).First();
            open.Remove(next);
            taken.Add(next);
            open.AddRange(Enumerable.Range(0, token.Count).Where(i => parent[i] == next));
        }
        return DraftTree.Create(
            taken.Select(i => token[i]).ToArray(),
            taken.Select(i => parent[i] < 0 ? -1 : taken.IndexOf(parent[i])).ToArray(),
            taken.Select(i => (float)probability[i]).ToArray());
    }

    // ---------- batches ----------

    [Fact]
    public void ABatchOfRaggedRequestsGivesTheTreesOfSingleProposals()
    {
        (int[] prompt, _, int[] second) = Fixture("llama-gqa");
        using DraftModelDrafter batched = LoadDrafter("llama-gqa", 3, 4, 4, maxRequests: 5);
        using DraftModelDrafter single = LoadDrafter("llama-gqa", 3, 4, 4, maxRequests: 5);
        var sampled = new DraftRequestOptions { Sampling = new SamplingOptions { Temperature = 0.8f, TopK = 30, Seed = 11 } };
        var sampledOther = new DraftRequestOptions { Sampling = new SamplingOptions { Temperature = 1.3f, TopP = 0.95f, Seed = 12 } };
        var greedyOption = new DraftRequestOptions { Sampling = new SamplingOptions { Temperature = 0f } };
        (RequestId Id, int[] Prompt, DraftRequestOptions? Options, int Budget)[] requests =
        [
            (new RequestId(10), prompt[..9], null, 12),
            (new RequestId(11), prompt, greedyOption, 30),
            (new RequestId(12), second, sampled, 5),
            (new RequestId(13), prompt[..3], null, 0),
            (new RequestId(14), second[..7], sampledOther, 3),
        ];
        foreach (DraftModelDrafter drafter in new[] { batched, single })
        {
            foreach ((RequestId id, int[] p, DraftRequestOptions? o, _) in requests)
            {
                drafter.StartRequest(id, p, o);
            }
        }
        var rng = new Random(3);
        for (int step = 0; step < 4; step++)
        {
            IReadOnlyList<DraftTree> trees = batched.ProposeBatch(requests.Select(r => new DraftQuery(r.Id, r.Budget)).ToList());
            for (int i = 0; i < requests.Length; i++)
            {
                DraftTree alone = single.Propose(requests[i].Id, requests[i].Budget);
                AssertSameTree(alone, trees[i], $"step {step}, request {i}");
                if (DraftDistributions.TryGet(alone, out Tensor? q))
                {
                    Assert.True(DraftDistributions.TryGet(trees[i], out Tensor? qBatched));
                    Assert.True(q.allclose(qBatched!, rtol: 1e-4, atol: 1e-7), $"step {step}, request {i}: distributions differ");
                }
            }
            Assert.Same(DraftTree.Empty, trees[3]);
            for (int i = 0; i < requests.Length; i++)
            {
                DraftTree tree = trees[i];
                int[] emitted = tree.IsEmpty ? [rng.Next(1000)] : [.. tree.TokensTo(rng.Next(tree.Count)), rng.Next(1000)];
                batched.Observe(requests[i].Id, emitted);
                single.Observe(requests[i].Id, emitted);
            }
        }
    }

    // ---------- tree invariants ----------

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TreesKeepTheirInvariantsOverManyRandomSteps(bool keepGreedy)
    {
        var options = new DraftModelOptions { Device = CPU, MaxRequests = 3, MaxContext = 256, TopK = 5, Beam = 6, MaxDepth = 5, KeepGreedyPath = keepGreedy };
        using DraftModelDrafter drafter = RandomDrafter(1000, 21, options);
        Assert.Equal(5 + 25 + 3 * 30, drafter.MaxBudget);
        var rng = new Random(8);
        RequestId[] ids = [new(1), new(2), new(3)];
        foreach (RequestId id in ids)
        {
            drafter.StartRequest(id, Enumerable.Range(0, rng.Next(1, 40)).Select(_ => rng.Next(1000)).ToArray(), null);
        }
        for (int step = 0; step < 25; step++)
        {
            int[] budgets = ids.Select(_ => rng.Next(4) == 0 ? 0 : rng.Next(1, drafter.MaxBudget + 1)).ToArray();
            IReadOnlyList<DraftTree> trees = drafter.ProposeBatch(ids.Select((id, i) => new DraftQuery(id, budgets[i])).ToList());
            for (int i = 0; i < ids.Length; i++)
            {
                DraftTree tree = trees[i];
                if (budgets[i] == 0)
                {
                    Assert.Same(DraftTree.Empty, tree);
                }
                else
                {
                    AssertInvariants(tree, budgets[i], options.MaxDepth, 1000);
                    Assert.True(tree.Count >= Math.Min(budgets[i], options.TopK), "the budget should be used where candidates exist");
                    if (keepGreedy)
                    {
                        // The draft's greedy path: from the root, each level's first-taken child, to full depth.
                        Assert.Equal(Math.Min(options.MaxDepth, budgets[i]), tree.MaxDepth);
                    }
                }
                drafter.Observe(ids[i], [.. Enumerable.Range(0, rng.Next(1, 8)).Select(_ => rng.Next(1000))]);
            }
        }
    }

    [Fact]
    public void TreesGetShallowerNearTheContextLimitAndThenEmpty()
    {
        var options = new DraftModelOptions { Device = CPU, MaxRequests = 1, MaxContext = 40, TopK = 2, Beam = 3, MaxDepth = 4 };
        using DraftModelDrafter drafter = RandomDrafter(1000, 2, options);
        var id = new RequestId(1);
        drafter.StartRequest(id, Enumerable.Range(0, 30).ToArray(), null);
        var depths = new List<int>();
        for (int step = 0; step < 12; step++)
        {
            DraftTree tree = drafter.Propose(id, drafter.MaxBudget);
            depths.Add(tree.MaxDepth);
            drafter.Observe(id, [7]);
            (_, int cached, _) = drafter.Inspect(id);
            Assert.True(cached <= 40);
        }
        Assert.Equal(4, depths[0]);
        Assert.Contains(depths, d => d is > 0 and < 4);
        Assert.Equal(0, depths[^1]);
    }

    [Fact]
    public void AnEmptyPromptDraftsNothingUntilATokenIsObserved()
    {
        using DraftModelDrafter drafter = RandomDrafter(1000, 4, new DraftModelOptions { Device = CPU, MaxRequests = 1, MaxContext = 64 });
        var id = new RequestId(1);
        drafter.StartRequest(id, [], null);
        Assert.Same(DraftTree.Empty, drafter.Propose(id, 10));
        drafter.Observe(id, [5]);
        Assert.Equal(10, drafter.Propose(id, 10).Count);
    }

    // ---------- sampled chains ----------

    [Fact]
    public void SampledChainRegistersItsDistributions()
    {
        (int[] prompt, _, _) = Fixture("llama-gqa");
        using TargetModel reference = LoadTarget("llama-gqa");
        using DraftModelDrafter drafter = LoadDrafter("llama-gqa", maxDepth: 4);
        using DraftModelDrafter again = LoadDrafter("llama-gqa", maxDepth: 4);
        var sampling = new SamplingOptions { Temperature = 0.7f, TopK = 20, TopP = 0.9f, Seed = 42 };
        var id = new RequestId(1);
        drafter.StartRequest(id, prompt, new DraftRequestOptions { Sampling = sampling });
        again.StartRequest(id, prompt, new DraftRequestOptions { Sampling = sampling });
        var context = new List<int>(prompt);
        for (int step = 0; step < 3; step++)
        {
            DraftTree chain = drafter.Propose(id, 10);
            Assert.True(chain.IsChain);
            Assert.Equal(4, chain.Count);
            Assert.True(DraftDistributions.TryGet(chain, out Tensor? q));
            Assert.Equal([4L, 1000L], q.shape);
            Assert.Equal(ScalarType.Float32, q.dtype);
            Assert.Equal(DeviceType.CPU, q.device_type);
            float[] rows = q.data<float>().ToArray();
            float previous = 1;
            for (int j = 0; j < chain.Count; j++)
            {
                float[] row = rows[(j * 1000)..((j + 1) * 1000)];
                Assert.True(Math.Abs(row.Sum() - 1) < 1e-4, $"row {j} sums to {row.Sum()}");
                Assert.True(row.Count(v => v > 0) <= 20, "top-k 20 keeps at most 20 tokens");
                float chosen = row[chain.Tokens[j]];
                Assert.True(chosen > 0, $"draft token {j} has probability 0 under its row");
                Assert.Equal(previous * chosen, chain.Probabilities[j], 5);
                previous = chain.Probabilities[j];

                // Row j is the warped distribution after the context and the draft tokens before j.
                int[] sequence = [.. context, .. chain.Tokens[..j]];
                using Tensor logits = reference.TreeLogits([new TreeInput(0, sequence[0], DraftTree.Chain(sequence[1..]))]);
                using Tensor expected = SamplingTreeVerifier.TargetProbabilities(logits[0, sequence.Length - 1], 0.7f, 20, 0.9f);
                Assert.True(expected.allclose(q[j], rtol: 1e-3, atol: 1e-6), $"row {j} is not the warped draft distribution");
            }
            // Seeded: the same context draws the same chain in another drafter.
            DraftTree same = again.Propose(id, 10);
            AssertSameTree(chain, same, $"step {step}, seeded replay");

            int[] emitted = [.. chain.TokensTo(step % chain.Count), 3];
            drafter.Observe(id, emitted);
            again.Observe(id, emitted);
            context.AddRange(emitted);
            Assert.False(DraftDistributions.TryGet(chain, out _), "Observe releases the last draft's distributions");
        }
        // Another seed draws differently (over three chains of four tokens, surely somewhere).
        var other = new RequestId(2);
        drafter.StartRequest(other, prompt, new DraftRequestOptions { Sampling = new SamplingOptions { Temperature = 0.7f, TopK = 20, TopP = 0.9f, Seed = 43 } });
        var seed42 = new RequestId(3);
        drafter.StartRequest(seed42, prompt, new DraftRequestOptions { Sampling = sampling });
        bool differs = false;
        for (int step = 0; step < 3; step++)
        {
            IReadOnlyList<DraftTree> pair = drafter.ProposeBatch([new DraftQuery(other, 4), new DraftQuery(seed42, 4)]);
            differs |= !pair[0].Tokens.SequenceEqual(pair[1].Tokens);
            drafter.Observe(other, [1]);
            drafter.Observe(seed42, [1]);
        }
        Assert.True(differs);
    }

    [Fact]
    public void SamplingVerifierAcceptsASameModelChainThroughTheRegisteredDistributions()
    {
        // With the target's own checkpoint and the same warping, q = p up to rounding, so every draft token is accepted
        // (probability min(1, p/q) = 1); rows laid out one off would reject most of them.
        (int[] prompt, _, _) = Fixture("qwen2-tied");
        using TargetModel target = LoadTarget("qwen2-tied");
        using DraftModelDrafter drafter = LoadDrafter("qwen2-tied", maxDepth: 5);
        drafter.EnsureSameVocabulary(target.Config);
        var sampling = new SamplingOptions { Temperature = 1f, Seed = 5 };
        var verifying = new SamplingOptions { Temperature = 1f, Seed = 6 };
        var id = new RequestId(1);
        drafter.StartRequest(id, prompt, new DraftRequestOptions { Sampling = sampling });
        target.Prefill([(0, prompt[..^1])]);
        int root = prompt[^1];
        for (int step = 0; step < 6; step++)
        {
            DraftTree chain = drafter.Propose(id, 5);
            Assert.True(DraftDistributions.TryGet(chain, out Tensor? q));
            // The registered [r, V] tensor as it is: row 0 = the root's children, row j + 1 = node j's children.
            VerifiedStep verified = target.VerifySampled([new TreeInput(0, root, chain)], [verifying], [q])[0];
            Assert.Equal(chain.Count, verified.AcceptedCount);
            drafter.Observe(id, verified.Tokens);
            root = verified.Bonus;
        }
    }

    // ---------- vocabulary ----------

    [Fact]
    public void VocabularySizesMustMatchWithoutTokenizers()
    {
        using DraftModelDrafter drafter = RandomDrafter(1000, 1, new DraftModelOptions { Device = CPU, MaxRequests = 1, MaxContext = 32 });
        drafter.EnsureSameVocabulary(Config(1000));
        var e = Assert.Throws<VocabularyMismatchException>(() => drafter.EnsureSameVocabulary(Config(1200)));
        Assert.Equal(1200, e.TargetVocabSize);
        Assert.Equal(1000, e.DraftVocabSize);
        Assert.Contains("pass both tokenizers", e.Message, StringComparison.Ordinal);
        Tokenizer tokenizer = CheckpointTokenizer.Load(WriteTokenizer("one", [("T", "h"), ("Th", "e")]));
        // One tokenizer is not enough to compare.
        Assert.Throws<VocabularyMismatchException>(() => drafter.EnsureSameVocabulary(Config(1200), tokenizer, null));
        Assert.Equal(1000, drafter.TargetVocabSize);
    }

    [Fact]
    public void SameTokenizerWithDifferentlyPaddedModelsIsAcceptedAndProposalsStayInTheTargetsVocabulary()
    {
        (string, string)[] merges = [("T", "h"), ("Th", "e"), ("q", "u"), ("i", "c")];
        Tokenizer target = CheckpointTokenizer.Load(WriteTokenizer("target", merges));
        Tokenizer draft = CheckpointTokenizer.Load(WriteTokenizer("draft", merges));
        var options = new DraftModelOptions { Device = CPU, MaxRequests = 2, MaxContext = 64, TopK = 16, Beam = 8, MaxDepth = 3 };
        // The draft pads to 1200 rows, the target to 900: ids 900.. are padding of the draft and must never be proposed.
        using DraftModelDrafter drafter = RandomDrafter(1200, 3, options);
        drafter.EnsureSameVocabulary(Config(900), target, draft);
        Assert.Equal(900, drafter.TargetVocabSize);
        var greedy = new RequestId(1);
        var sampled = new RequestId(2);
        drafter.StartRequest(greedy, [1, 2, 3], null);
        drafter.StartRequest(sampled, [1, 2, 3], new DraftRequestOptions { Sampling = new SamplingOptions { Seed = 1 } });
        for (int step = 0; step < 5; step++)
        {
            IReadOnlyList<DraftTree> trees = drafter.ProposeBatch([new DraftQuery(greedy, drafter.MaxBudget), new DraftQuery(sampled, 3)]);
            Assert.True(trees[0].Count > 100);
            Assert.All(trees.SelectMany(t => t.Tokens.ToArray()), t => Assert.InRange(t, 0, 899));
            Assert.True(DraftDistributions.TryGet(trees[1], out Tensor? q));
            Assert.Equal([3L, 900L], q.shape);
            drafter.Observe(greedy, [899, 5]);
            drafter.Observe(sampled, [899, 5]);
        }
        // The other way round (the target pads more): ids the draft has no row for are accepted in the context.
        using DraftModelDrafter small = RandomDrafter(900, 3, options);
        small.EnsureSameVocabulary(Config(1200), target, draft);
        small.StartRequest(greedy, [1, 1100], null);
        small.Observe(greedy, [1150]);
        Assert.All(small.Propose(greedy, 30).Tokens.ToArray(), t => Assert.InRange(t, 0, 899));
        Assert.Throws<ArgumentException>(() => small.Observe(greedy, [1200]));
    }

    [Fact]
    public void DifferentTokenizersAreRefused()
    {
        Tokenizer baseline = CheckpointTokenizer.Load(WriteTokenizer("a", [("T", "h"), ("q", "u"), ("u", "i")]));
        // One merged token differs: id 257 is "qu" in one vocabulary and "ui" in the other.
        Tokenizer renamed = CheckpointTokenizer.Load(WriteTokenizer("b", [("T", "h"), ("u", "i"), ("q", "u")]));
        // Same token table, other merge priority: "qui" splits as "qu"+"i" in one and "q"+"ui" in the other.
        Tokenizer reordered = CheckpointTokenizer.Load(WriteTokenizer("c", [("T", "h"), ("q", "u"), ("u", "i")],
            vocabularyOrder: [("T", "h"), ("q", "u"), ("u", "i")], mergeOrder: [("T", "h"), ("u", "i"), ("q", "u")]));
        using DraftModelDrafter drafter = RandomDrafter(300, 1, new DraftModelOptions { Device = CPU, MaxRequests = 1, MaxContext = 32 });
        drafter.EnsureSameVocabulary(Config(300), baseline, baseline);

        var e = Assert.Throws<VocabularyMismatchException>(() => drafter.EnsureSameVocabulary(Config(300), baseline, renamed));
        Assert.Equal(257, e.TokenId);
        Assert.Contains("draft model trained with the target's tokenizer", e.Message, StringComparison.Ordinal);

        e = Assert.Throws<VocabularyMismatchException>(() => drafter.EnsureSameVocabulary(Config(300), baseline, reordered));
        Assert.Null(e.TokenId);
        Assert.Contains("probe text", e.Message, StringComparison.Ordinal);

        // A tokenizer with more tokens than the draft model has rows.
        using DraftModelDrafter tiny = RandomDrafter(258, 1, new DraftModelOptions { Device = CPU, MaxRequests = 1, MaxContext = 32 });
        e = Assert.Throws<VocabularyMismatchException>(() => tiny.EnsureSameVocabulary(Config(300), baseline, baseline));
        Assert.Contains("the draft model's vocab_size is 258", e.Message, StringComparison.Ordinal);
    }

    /// <summary>A byte-level BPE tokenizer.json: the 256 byte tokens, then one token per merge (ids 256..), plus the
    /// special token &lt;|end|&gt; at id 280.</summary>
    private string WriteTokenizer(string name, (string Left, string Right)[] merges,
        (string Left, string Right)[]? vocabularyOrder = null, (string Left, string Right)[]? mergeOrder = null)
    {
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++)
        {
            vocab[ByteLevelAlphabet.ToChar((byte)b).ToString()] = b;
        }
        int next = 256;
        foreach ((string left, string right) in vocabularyOrder ?? merges)
        {
            vocab[left + right] = next++;
        }
        var mergeList = new JsonArray();
        foreach ((string left, string right) in mergeOrder ?? merges)
        {
            mergeList.Add(JsonValue.Create(left + " " + right));
        }
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 280, ["content"] = "<|end|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
                ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = mergeList,
            },
        };
        string folder = Path.Combine(_root, name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString());
        return folder;
    }

    // ---------- lifecycle and options ----------

    [Fact]
    public void LifecycleMisuseGetsTypedExceptions()
    {
        var options = new DraftModelOptions { Device = CPU, MaxRequests = 2, MaxContext = 64 };
        DraftModelDrafter drafter = RandomDrafter(1000, 1, options);
        Assert.Equal("draft-model", drafter.Name);
        Assert.Equal(4 + 16 + 4 * 32, drafter.MaxBudget);
        RequestId a = new(1), b = new(2), c = new(3);
        drafter.StartRequest(a, [1, 2], null);
        Assert.Throws<DuplicateRequestException>(() => drafter.StartRequest(a, [1], null));
        drafter.StartRequest(b, [3], null);
        var full = Assert.Throws<DraftSlotsExhaustedException>(() => drafter.StartRequest(c, [1], null));
        Assert.Equal(2, full.Slots);
        Assert.Throws<UnknownRequestException>(() => drafter.Propose(c, 3));
        Assert.Throws<UnknownRequestException>(() => drafter.Observe(c, [1]));
        Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(c));
        Assert.Throws<UnknownRequestException>(() => drafter.ProposeBatch([new DraftQuery(a, 2), new DraftQuery(c, 2)]));
        Assert.Throws<ArgumentException>(() => drafter.ProposeBatch([new DraftQuery(a, 2), new DraftQuery(a, 2)]));
        Assert.Throws<ArgumentOutOfRangeException>(() => drafter.Propose(a, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => drafter.Propose(a, drafter.MaxBudget + 1));
        Assert.Throws<ArgumentException>(() => drafter.StartRequest(RequestId.Invalid, [1], null));
        Assert.Throws<ArgumentException>(() => drafter.StartRequest(c, [-1], null));
        Assert.Throws<ArgumentException>(() => drafter.Observe(a, [1000]));
        Assert.Equal(2, drafter.ActiveRequests);

        // Ending a request frees its slot for the next one, whose cache starts empty.
        (int slotOfA, _, _) = drafter.Inspect(a);
        Assert.Equal(3, drafter.Propose(a, 3).Count);
        drafter.EndRequest(a);
        Assert.Throws<UnknownRequestException>(() => drafter.EndRequest(a));
        drafter.StartRequest(c, [4, 5, 6], null);
        Assert.Equal((slotOfA, 0, 3), drafter.Inspect(c));

        drafter.Dispose();
        drafter.Dispose();
        Assert.Throws<ObjectDisposedException>(() => drafter.Propose(b, 1));
        Assert.Throws<ObjectDisposedException>(() => drafter.StartRequest(a, [1], null));
    }

    [Fact]
    public void OptionsAreValidatedUpFront()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        DraftModelOptions[] bad =
        [
            new() { MaxRequests = 0 },
            new() { MaxContext = 1 },
            new() { TopK = 0 },
            new() { Beam = DraftModelOptions.MaxTreeSetting + 1 },
            new() { MaxDepth = 0 },
            new() { PrefillChunk = 0 },
            new() { DType = ScalarType.Int32 },
        ];
        foreach (DraftModelOptions options in bad)
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => DraftModelDrafter.Load(folder, options));
        }
        Assert.Throws<ArgumentNullException>(() => DraftModelDrafter.Load(folder, null!));
        Assert.Throws<ArgumentException>(() => DraftModelDrafter.Load("", new DraftModelOptions()));
    }
}
