namespace SpecDecode.Tree.Tests;

/// <summary>
/// Batched speculative greedy decoding through <see cref="TargetModel"/> (ragged prefixes, ragged trees, one forward per
/// step, device-side acceptance and KV compaction) emits exactly what plain greedy decoding of each sequence emits.
/// </summary>
public sealed class BatchedLosslessTests
{
    private const int Count = 40;

    /// <summary>Draft shapes: every kind the verifier must handle.</summary>
    private enum Shape { Empty, Right, PartlyRight, Wrong, DeepChain, Wide, Mixed }

    /// <summary>A draft of <paramref name="shape"/>, built from the known continuation <paramref name="future"/> (what plain greedy emits next).</summary>
    private static DraftTree Draft(Shape shape, ReadOnlySpan<int> future, int vocab, Random rng)
    {
        int Wrong(int right) => (right + 1 + rng.Next(vocab - 1)) % vocab;
        var tokens = new List<int>();
        var parents = new List<int>();
        void Chain(int parent, IEnumerable<int> chain)
        {
            foreach (int token in chain)
            {
                tokens.Add(token);
                parents.Add(parent);
                parent = tokens.Count - 1;
            }
        }
        int n = future.Length;
        switch (shape)
        {
            case Shape.Empty:
                break;
            case Shape.Right:
                Chain(-1, future[..Math.Min(n, rng.Next(1, 9))].ToArray());
                break;
            case Shape.PartlyRight:
            {
                int k = Math.Min(n, rng.Next(0, 6));
                Chain(-1, [.. future[..k].ToArray(), .. Enumerable.Range(0, rng.Next(1, 5)).Select(_ => rng.Next(vocab))]);
                if (k < n && tokens.Count > k)
                {
                    tokens[k] = Wrong(future[k]); // the first token past the right prefix is surely wrong
                }
                break;
            }
            case Shape.Wrong:
                Chain(-1, [Wrong(future[0]), .. Enumerable.Range(0, rng.Next(0, 6)).Select(_ => rng.Next(vocab))]);
                break;
            case Shape.DeepChain:
                Chain(-1, future.ToArray());
                break;
            case Shape.Wide:
            {
                // Wrong siblings around the right token at each of three levels.
                int parent = -1;
                for (int level = 0; level < Math.Min(3, n); level++)
                {
                    int right = rng.Next(0, 5);
                    int rightNode = -1;
                    var used = new HashSet<int>();
                    for (int s = 0; s < 5; s++)
                    {
                        int token = s == right ? future[level] : Wrong(future[level]);
                        if (!used.Add(token))
                        {
                            continue;
                        }
                        tokens.Add(token);
                        parents.Add(parent);
                        if (s == right)
                        {
                            rightNode = tokens.Count - 1;
                        }
                    }
                    parent = rightNode;
                }
                break;
            }
            case Shape.Mixed:
            {
                // A wrong branch first, then a right chain, then random nodes hanging anywhere.
                Chain(-1, [Wrong(future[0]), rng.Next(vocab)]);
                Chain(-1, future[..Math.Min(n, 4)].ToArray());
                for (int i = 0; i < 6; i++)
                {
                    int parent = rng.Next(-1, tokens.Count);
                    int token = rng.Next(vocab);
                    bool clash = Enumerable.Range(0, tokens.Count).Any(j => parents[j] == parent && tokens[j] == token);
                    if (!clash)
                    {
                        tokens.Add(token);
                        parents.Add(parent);
                    }
                }
                break;
            }
        }
        return tokens.Count == 0 ? DraftTree.Empty : DraftTree.Create(tokens.ToArray(), parents.ToArray(), []);
    }

    [Theory]
    [InlineData("llama-gqa", 1)]
    [InlineData("llama-gqa", 2)]
    [InlineData("qwen2-tied", 3)]
    public void RandomDraftsOnARaggedBatchEmitPlainGreedy(string name, int seed)
    {
        string folder = SharedFixtures.TinyCheckpoint(name);
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = SharedFixtures.Ids(expected, "prompt_ids").Select(i => (int)i).ToArray();
        int[] second = SharedFixtures.Ids(expected, "second_prompt_ids").Select(i => (int)i).ToArray();
        int[] continuation = SharedFixtures.Ids(expected, "greedy_continuation").Select(i => (int)i).ToArray();
        int[][] prompts = [prompt, second, prompt[..9], [.. second, .. prompt]];
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = TorchSharp.torch.CPU, MaxBatch = 5, MaxContext = 160, PrefillChunk = 16 });

        // Plain greedy of every prompt, one at a time with empty drafts; the first is transformers' own continuation.
        int[][] plain = prompts.Select(p => TargetModelTests.Generate(model, 4, p, Count, _ => DraftTree.Empty)).ToArray();
        Assert.Equal(continuation, plain[0]);

        // All four in slots 0..3 (slot 4 stays idle with a cache of its own), verified together every step.
        var rng = new Random(seed);
        model.Prefill(prompts.Select((p, slot) => (slot, p[..^1])).ToList());
        int[] roots = prompts.Select(p => p[^1]).ToArray();
        var outputs = prompts.Select(_ => new List<int>()).ToArray();
        int idleLength = model.CachedLength(4);
        var shapes = Enum.GetValues<Shape>();
        int steps = 0, accepted = 0;
        while (outputs.Any(o => o.Count < Count))
        {
            var inputs = new List<TreeInput>();
            for (int slot = 0; slot < prompts.Length; slot++)
            {
                int done = outputs[slot].Count;
                if (done >= Count)
                {
                    continue;
                }
                // Drafts may run past the 40 known tokens; they are only used while there is a known future.
                ReadOnlySpan<int> future = plain[slot].AsSpan(done);
                inputs.Add(new TreeInput(slot, roots[slot], Draft(shapes[rng.Next(shapes.Length)], future, model.Config.VocabSize, rng)));
            }
            foreach (VerifiedStep step in model.VerifyGreedy(inputs))
            {
                outputs[step.Slot].AddRange(step.Tokens);
                roots[step.Slot] = step.Bonus;
                accepted += step.AcceptedCount;
            }
            steps++;
        }
        for (int slot = 0; slot < prompts.Length; slot++)
        {
            Assert.Equal(plain[slot], outputs[slot].Take(Count).ToArray());
            Assert.Equal(prompts[slot].Length - 1 + outputs[slot].Count, model.CachedLength(slot));
        }
        Assert.Equal(idleLength, model.CachedLength(4));
        Assert.True(accepted > 0, "no draft token was ever accepted: the test exercised no compaction");
        Assert.True(steps < Count, $"{steps} steps for {Count} tokens: right drafts were not accepted");
    }

    [Fact]
    public void RollingBackAndRegeneratingGivesTheSameTokens()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using var expected = SharedFixtures.Expected(folder);
        int[] prompt = SharedFixtures.Ids(expected, "prompt_ids").Select(i => (int)i).ToArray();
        int[] continuation = SharedFixtures.Ids(expected, "greedy_continuation").Select(i => (int)i).ToArray();
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = TorchSharp.torch.CPU, MaxContext = 128 });
        model.Prefill([(0, prompt[..^1])]);
        int root = prompt[^1];
        var output = new List<int>();
        while (output.Count < 20)
        {
            VerifiedStep step = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Chain(continuation.AsSpan(output.Count, Math.Min(5, Count - output.Count))))])[0];
            output.AddRange(step.Tokens);
            root = step.Bonus;
        }
        // Roll back to prompt + 10 generated tokens (the 10th is the root, not cached), then continue plainly.
        model.Truncate(0, prompt.Length + 9);
        root = continuation[9];
        var again = new List<int>(continuation[..10]);
        while (again.Count < Count)
        {
            VerifiedStep step = model.VerifyGreedy([new TreeInput(0, root, DraftTree.Empty)])[0];
            again.AddRange(step.Tokens);
            root = step.Bonus;
        }
        Assert.Equal(continuation, again.Take(Count).ToArray());
    }

    [Fact]
    public void BadInputGetsTypedErrorsAndLeavesTheCacheAlone()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = TorchSharp.torch.CPU, MaxBatch = 2, MaxContext = 16 });
        model.Prefill([(0, [1, 2, 3])]);
        var slot = Assert.Throws<ArgumentOutOfRangeException>(() => model.VerifyGreedy([new TreeInput(2, 1, DraftTree.Empty)]));
        Assert.Contains("MaxBatch", slot.Message);
        var twice = Assert.Throws<ArgumentException>(() => model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Empty), new TreeInput(0, 2, DraftTree.Empty)]));
        Assert.Contains("twice", twice.Message);
        var vocab = Assert.Throws<ArgumentException>(() => model.VerifyGreedy([new TreeInput(0, model.Config.VocabSize, DraftTree.Empty)]));
        Assert.Contains("vocabulary", vocab.Message);
        var full = Assert.Throws<InvalidOperationException>(() => model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Chain(Enumerable.Range(1, 13).ToArray()))]));
        Assert.Contains("MaxContext", full.Message);
        Assert.Throws<InvalidOperationException>(() => model.Prefill([(1, Enumerable.Range(1, 17).ToArray())]));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Truncate(0, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new TargetModelOptions { MaxBatch = 0 }.Validate());
        var graphs = Assert.Throws<ArgumentOutOfRangeException>(() => new TargetModelOptions { MaxCudaGraphs = 0 }.Validate());
        Assert.Contains("MaxCudaGraphs", graphs.Message);
        Assert.Equal(3, model.CachedLength(0));
        Assert.Equal(0, model.CachedLength(1));
        // Still usable: a full 12-node chain fits exactly (3 cached + root + 12 = 16).
        Assert.Single(model.VerifyGreedy([new TreeInput(0, 1, DraftTree.Chain(Enumerable.Range(1, 12).ToArray()))]));
    }
}
