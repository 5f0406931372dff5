namespace SpecDecode.Tree;

/// <summary>What the coordinator asks every other rank to replay.</summary>
internal enum RankCommandKind
{
    /// <summary>Leave the command loop (the model is being disposed).</summary>
    Stop = 1,

    /// <summary><see cref="TargetModel.Prefill"/>.</summary>
    Prefill,

    /// <summary>A verification step (greedy, forced or sampled: the other ranks run the same forward and follow the
    /// coordinator's decision, so the rule does not travel).</summary>
    Verify,

    /// <summary><see cref="TargetModel.TreeLogits"/>.</summary>
    TreeLogits,

    /// <summary><see cref="TargetModel.Truncate"/>.</summary>
    Truncate,

    /// <summary><see cref="TargetModel.ReusePrefix"/>.</summary>
    ReusePrefix,

    /// <summary><see cref="TargetModel.TryReserve"/>.</summary>
    TryReserve,

    /// <summary><see cref="TargetModel.SetLengthForBenchmark"/>.</summary>
    SetLength,

    /// <summary><see cref="TargetModel.FillCacheForBenchmark"/>.</summary>
    FillCache,

    /// <summary><see cref="TargetModel.DropCachedPrefixes"/>.</summary>
    DropCachedPrefixes,
}

/// <summary>
/// The command stream of a tensor-parallel model: every call that changes a rank's state (its KV cache's blocks and
/// lengths, its cached keys and values), encoded as a flat array of numbers that the coordinator broadcasts and every
/// other rank decodes and replays on its own <see cref="TargetModel"/>. Replaying the same calls on the same state keeps
/// the ranks' host bookkeeping (block tables, lengths, the prefix index) identical without sending it, and the trees
/// travel in the command, so drafters run on the coordinator only and ranks can never draft differently.
/// </summary>
/// <remarks>Layout: <c>[kind, arguments...]</c>; a tree is <c>slot, root, node count, tokens..., parents...</c>, a token list
/// its count then the tokens. Draft probabilities and sampling settings do not travel: only the coordinator accepts.</remarks>
internal static class RankCommand
{
    public static long[] Stop() => [(long)RankCommandKind.Stop];

    /// <summary>A prefill; <paramref name="logitsAfter"/> marks the sequences whose next token the coordinator chooses
    /// (every rank takes part in the last layer's rows and the head's gather for them).</summary>
    public static long[] Prefill(IReadOnlyList<(int Slot, int[] Tokens)> sequences, IReadOnlyList<bool>? logitsAfter = null)
    {
        var w = new Writer(RankCommandKind.Prefill);
        w.Add(sequences.Count);
        for (int i = 0; i < sequences.Count; i++)
        {
            w.Add(sequences[i].Slot);
            w.AddTokens(sequences[i].Tokens);
            w.Add(logitsAfter?[i] == true ? 1 : 0);
        }
        return w.ToArray();
    }

    public static long[] Verify(IReadOnlyList<TreeInput> inputs, RankCommandKind kind = RankCommandKind.Verify)
    {
        var w = new Writer(kind);
        w.Add(inputs.Count);
        foreach (TreeInput input in inputs)
        {
            w.Add(input.Slot);
            w.Add(input.Root);
            w.AddTokens(input.Draft.Tokens);
            foreach (int parent in input.Draft.Parents)
            {
                w.Add(parent);
            }
        }
        return w.ToArray();
    }

    public static long[] Truncate(int slot, int length) => [(long)RankCommandKind.Truncate, slot, length];

    public static long[] ReusePrefix(int slot, ReadOnlySpan<int> tokens)
    {
        var w = new Writer(RankCommandKind.ReusePrefix);
        w.Add(slot);
        w.AddTokens(tokens);
        return w.ToArray();
    }

    public static long[] TryReserve(int slot, long tokens) => [(long)RankCommandKind.TryReserve, slot, tokens];

    public static long[] SetLength(int slot, int length) => [(long)RankCommandKind.SetLength, slot, length];

    public static long[] FillCache(int length) => [(long)RankCommandKind.FillCache, length];

    public static long[] DropCachedPrefixes() => [(long)RankCommandKind.DropCachedPrefixes];

    /// <summary>The command's kind.</summary>
    /// <exception cref="TensorParallelException">Not a command (the ranks' streams are out of step).</exception>
    public static RankCommandKind KindOf(long[] command) =>
        command is [long kind, ..] && Enum.IsDefined((RankCommandKind)kind)
            ? (RankCommandKind)kind
            : throw new TensorParallelException($"not a rank command: [{string.Join(", ", command.Take(8))}{(command.Length > 8 ? ", ..." : "")}]");

    /// <summary>Replays <paramref name="command"/> on <paramref name="model"/>, a rank other than the coordinator.</summary>
    public static void Apply(TargetModel model, long[] command)
    {
        var r = new Reader(command);
        switch (KindOf(command))
        {
            case RankCommandKind.Prefill:
                var sequences = new (int, int[])[r.Int()];
                var marks = new bool[sequences.Length];
                for (int i = 0; i < sequences.Length; i++)
                {
                    sequences[i] = (r.Int(), r.Tokens());
                    marks[i] = r.Int() != 0;
                }
                model.PrefillOnRank(sequences, marks);
                break;
            case RankCommandKind.Verify:
                model.VerifyGreedy(ReadInputs(ref r));
                break;
            case RankCommandKind.TreeLogits:
                model.TreeLogits(ReadInputs(ref r)).Dispose();
                break;
            case RankCommandKind.Truncate:
                model.Truncate(r.Int(), r.Int());
                break;
            case RankCommandKind.ReusePrefix:
                model.ReusePrefix(r.Int(), r.Tokens());
                break;
            case RankCommandKind.TryReserve:
                model.TryReserve(r.Int(), r.Long());
                break;
            case RankCommandKind.SetLength:
                model.SetLengthForBenchmark(r.Int(), r.Int());
                break;
            case RankCommandKind.FillCache:
                model.FillCacheForBenchmark(r.Int());
                break;
            case RankCommandKind.DropCachedPrefixes:
                model.DropCachedPrefixes();
                break;
            default:
                throw new TensorParallelException($"rank command {KindOf(command)} cannot be replayed.");
        }
    }

    /// <summary>Decodes a <see cref="Verify"/> command's inputs.</summary>
    public static TreeInput[] ReadInputs(long[] command)
    {
        var r = new Reader(command);
        return ReadInputs(ref r);
    }

    private static TreeInput[] ReadInputs(ref Reader r)
    {
        var inputs = new TreeInput[r.Int()];
        for (int i = 0; i < inputs.Length; i++)
        {
            int slot = r.Int(), root = r.Int();
            int[] tokens = r.Tokens();
            var parents = new int[tokens.Length];
            for (int j = 0; j < parents.Length; j++)
            {
                parents[j] = r.Int();
            }
            inputs[i] = new TreeInput(slot, root, tokens.Length == 0 ? DraftTree.Empty : DraftTree.Create(tokens, parents, []));
        }
        return inputs;
    }

    private sealed class Writer
    {
        private readonly List<long> _values = [];

        public Writer(RankCommandKind kind) => _values.Add((long)kind);

        public void Add(long value) => _values.Add(value);

        public void AddTokens(ReadOnlySpan<int> tokens)
        {
            _values.Add(tokens.Length);
            foreach (int token in tokens)
            {
                _values.Add(token);
            }
        }

        public long[] ToArray() => [.. _values];
    }

    private struct Reader(long[] values)
    {
        private int _next = 1; // after the kind

        public long Long() => _next < values.Length
            ? values[_next++]
            : throw new TensorParallelException($"rank command {(RankCommandKind)values[0]} ends after {values.Length} numbers: the ranks' streams are out of step.");

        public int Int() => checked((int)Long());

        public int[] Tokens()
        {
            var tokens = new int[Int()];
            for (int i = 0; i < tokens.Length; i++)
            {
                tokens[i] = Int();
            }
            return tokens;
        }
    }
}
