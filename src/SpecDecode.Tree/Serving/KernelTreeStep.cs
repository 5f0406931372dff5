using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>One sequence of a kernel tree step: its slot, cached length, root and draft, and per entry the token that
/// counts as the target's choice after it (forced acceptance; -1 or null: the argmax).</summary>
internal readonly record struct TreeStepSequence(int Slot, int Length, int Root, DraftTree Draft, long[]? Forced = null)
{
    /// <summary>Rows the sequence takes: its root and its draft nodes.</summary>
    public int Entries => Draft.Count + 1;
}

/// <summary>The launch shape of a kernel tree step, which its CUDA graph is captured for: the padded rows, the widest
/// sequence's entries and the sequences (both rounded up to a power of two), and the keys attention covers.</summary>
internal readonly record struct TreeStepShape(int Rows, int Width, int Sequences, long Keys)
{
    /// <summary>The shape of a step over <paramref name="sequences"/> whose attention covers <paramref name="keys"/> keys.</summary>
    public static TreeStepShape For(IReadOnlyList<TreeStepSequence> sequences, long keys) =>
        new(KernelTreeStep.PaddedRows(sequences.Sum(s => s.Entries)), PowerOfTwo(sequences.Max(s => s.Entries)), PowerOfTwo(sequences.Count), keys);

    private static int PowerOfTwo(int n) => (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)n);
}

/// <summary>
/// One tree verification step of up to 64 sequences (each a root and its draft nodes, at most 64 entries a sequence;
/// a batch of plain decoding steps is a batch of roots without drafts) through the tree kernels of
/// <c>Kernels/tree_step.cuh</c>: tree-masked attention over each sequence's own paged cache, the argmax per row, greedy
/// acceptance and the compaction of each accepted path's keys and values. Steps of up to 64 rows in all (padded to 8,
/// 16, 32 or 64) take every product on the kernels' own tensor-core products too (the weights read once for all rows),
/// in 3 + (9 or 10) × layers launches and no libtorch op. Wider steps (padded to 128, 256 or 512 rows:
/// <see cref="MaxStepRows"/>) take their products from cuBLAS through libtorch (<see cref="WideProducts"/>) between the
/// same kernels. Either way the step can be captured: its inputs are one int64 array on the device
/// (<see cref="PackState"/>), so one graph serves every batch of its <see cref="TreeStepShape"/>, whatever the slots; its
/// result is <see cref="Result"/>.
/// </summary>
internal sealed class KernelTreeStep : KernelStep
{
    /// <summary>Entries (roots included) per sequence at most: an ancestor set is one 64-bit word. Also the rows the
    /// kernels' own products take (wider steps take cuBLAS's).</summary>
    public const int MaxRows = 64;

    /// <summary>Rows (roots and draft nodes of all sequences) per step at most: 32 trees of 16, the widest step issue 18
    /// asks for. Steps of more than <see cref="MaxRows"/> rows take their products from cuBLAS.</summary>
    public const int MaxStepRows = 512;

    /// <summary>Set to <c>off</c> to keep steps of more than <see cref="MaxRows"/> rows off the tree kernels (the libtorch
    /// path takes them, as before wide steps existed), for A/B measurements.</summary>
    public const string WideVariable = "SPECDECODE_WIDE_TREE_STEPS";

    /// <summary>Rows a step takes on the tree kernels here: <see cref="MaxStepRows"/>, or <see cref="MaxRows"/> with
    /// <see cref="WideVariable"/> off.</summary>
    public static readonly int StepRowLimit =
        string.Equals(Environment.GetEnvironmentVariable(WideVariable), "off", StringComparison.OrdinalIgnoreCase) ? MaxRows : MaxStepRows;

    /// <summary>Chunk × row planes of the attention partials: the 32 chunks of a 64-row step; wider steps take fewer
    /// chunks (<see cref="AttentionChunk"/>), their grid being wide already.</summary>
    private const int PartialRows = MaxChunks * MaxRows;

    /// <summary>Sequences per step at most.</summary>
    public const int MaxSequences = 64;

    /// <summary>int64 per sequence in <see cref="Result"/>.</summary>
    public const int ResultStride = 2 + 2 * MaxRows;

    /// <summary>Attention chunks per (kv head, row group) at most (the partial buffers' size).</summary>
    public const int MaxChunks = 32;

    private const int Threads = 128;

    /// <summary>Product and attention blocks per multiprocessor the work is cut for: 2 with four shared-memory stages per
    /// product block (96 KB at 64 rows), 3 with three (72 KB); <see cref="BlocksVariable"/> overrides the default.</summary>
    private static readonly int BlocksPerMultiprocessor =
        Environment.GetEnvironmentVariable(BlocksVariable) is "3" ? 3 : 2;

    /// <summary>Set to 3 to cut the tree step's work for three blocks per multiprocessor (three stages each) instead of
    /// two (for measurements).</summary>
    public const string BlocksVariable = "SPECDECODE_TREE_BLOCKS_PER_SM";

    private static int Stages => BlocksPerMultiprocessor == 3 ? 3 : 4;
    private const int Tile = 128;
    private const int StagedChunk = 512;   // k per split at least

    /// <summary>Dynamic shared memory of an attention block: two sub-chunks of 64 keys and values, rows padded by 8.</summary>
    public static int AttentionSharedBytes(int headDim) => 4 * 64 * (headDim + 8) * 2;

    /// <summary>Dynamic shared memory of a product block: three or four stages of 64 k of its 128 weight rows and of the
    /// input rows, and 1 KB to start them on a 1,024-byte boundary (the swizzle's period, which wgmma needs).</summary>
    public static int SharedBytes(int rows) => Stages * (Tile + rows) * 64 * 2 + 1024;

    private readonly int _mlp;   // the MLP size rounded up to 64 (padded weights below when it is not already)
    private readonly Tensor[]? _gate, _up, _down;
    private readonly Tensor _hidden, _normed, _q, _attention, _act, _work, _product, _partialO, _partialMl;
    private Tensor? _logits;

    public KernelTreeStep(ModelConfig config, CausalLMWeights weights, KvCache cache, Tensor cos, Tensor sin)
        : base("tree", config, weights, cache, cos, sin)
    {
        ModelConfig c = config;
        _mlp = Mlp(c);
        if (_mlp != c.IntermediateSize)
        {
            // Products take k in runs of 64 and gate/up in tiles of 64 features: zero rows and columns change nothing.
            int pad = _mlp - c.IntermediateSize;
            _gate = weights.Layers.Select(l => Keep(nn.functional.pad(l.Mlp.GateProj.Weight, [0, 0, 0, pad]).contiguous())).ToArray();
            _up = weights.Layers.Select(l => Keep(nn.functional.pad(l.Mlp.UpProj.Weight, [0, 0, 0, pad]).contiguous())).ToArray();
            _down = weights.Layers.Select(l => Keep(nn.functional.pad(l.Mlp.DownProj.Weight, [0, pad]).contiguous())).ToArray();
        }
        int attentionWidth = c.HeadCount * c.HeadDim;
        _hidden = Buffer((long)MaxStepRows * c.HiddenSize, ScalarType.BFloat16);
        _normed = Buffer((long)MaxStepRows * c.HiddenSize, ScalarType.BFloat16);
        _q = Buffer((long)MaxStepRows * attentionWidth, ScalarType.BFloat16);
        _attention = Buffer((long)MaxStepRows * attentionWidth, ScalarType.BFloat16);
        _act = Buffer((long)MaxStepRows * _mlp, ScalarType.BFloat16);
        _work = Buffer(WorkElements(c, Module.Multiprocessors), ScalarType.Float32);
        _product = Buffer(WideProductElements(c), ScalarType.BFloat16);
        _partialO = Buffer((long)PartialRows * attentionWidth, ScalarType.Float32);
        _partialMl = Buffer((long)PartialRows * c.HeadCount * 2, ScalarType.Float32);
        Argmax = Buffer(MaxStepRows, ScalarType.Int64);
        Result = Buffer((long)MaxSequences * ResultStride, ScalarType.Int64);
        State = Buffer(StateLength(MaxStepRows), ScalarType.Int64);
    }

    /// <summary>float32 elements of the work buffer: the largest product's split sums (the head leaves none) in a step of
    /// the kernels' products, or the one plane of q/k/v or of a hidden-size product in a wide step (gate and up finish in
    /// bf16 there).</summary>
    private static long WorkElements(ModelConfig c, int multiprocessors)
    {
        int mlp = Mlp(c), attentionWidth = c.HeadCount * c.HeadDim, qkv = QkvWidth(c);
        (string Kernel, int N, int K)[] products =
            [("tree_qkv", qkv, c.HiddenSize), ("tree_rows", c.HiddenSize, attentionWidth), ("tree_gate_up", 2 * mlp, c.HiddenSize), ("tree_rows", c.HiddenSize, mlp)];
        long kernels = products.Max(p => (long)ProductSplits(p.Kernel, p.N, p.K, multiprocessors) * MaxRows * p.N);
        return Math.Max(kernels, (long)MaxStepRows * Math.Max(qkv, c.HiddenSize));
    }

    /// <summary>Output rows of the q/k/v product: q, k and v heads × head dimension.</summary>
    private static int QkvWidth(ModelConfig c) => (c.HeadCount + 2 * c.KeyValueHeadCount) * c.HeadDim;

    /// <summary>bf16 elements of a wide step's product outputs before they reach the work buffer (q/k/v, a hidden-size
    /// product, or up beside gate in the activation buffer).</summary>
    private static long WideProductElements(ModelConfig c) => (long)MaxStepRows * Math.Max(Math.Max(QkvWidth(c), c.HiddenSize), c.IntermediateSize);

    /// <summary>The MLP size rounded up to 64.</summary>
    private static int Mlp(ModelConfig c) => (c.IntermediateSize + 63) / 64 * 64;

    /// <summary>Bytes a tree step of <paramref name="c"/> keeps on the device on a GPU of <paramref name="multiprocessors"/>
    /// multiprocessors (more multiprocessors, more k splits: <see cref="int.MaxValue"/> gives the most any GPU needs):
    /// its activation rows, split sums, wide products, attention partials, inputs and logits (a wide step's argmax reads
    /// them; <see cref="MaxStepRows"/> rows of the vocabulary), and the zero-padded MLP weights of a model whose MLP size
    /// is not a multiple of 64.</summary>
    public static long BufferBytes(ModelConfig c, int multiprocessors)
    {
        int mlp = Mlp(c), attentionWidth = c.HeadCount * c.HeadDim;
        long rows = (long)MaxStepRows * (2L * c.HiddenSize + 2L * attentionWidth + mlp) * 2;
        long partials = (long)PartialRows * (attentionWidth + c.HeadCount * 2L) * 4;
        long inputs = (MaxStepRows + (long)MaxSequences * ResultStride + StateLength(MaxStepRows)) * 8L;
        long padded = mlp == c.IntermediateSize ? 0 : 3L * c.LayerCount * mlp * c.HiddenSize * 2;
        long logits = (long)MaxStepRows * c.VocabSize * 2;
        return rows + WorkElements(c, multiprocessors) * 4 + WideProductElements(c) * 2 + partials + inputs + padded + logits;
    }

    /// <summary>The step's inputs on the device: <see cref="StateLength"/>(rows) int64 (<see cref="PackState"/>).</summary>
    public Tensor State { get; }

    /// <summary>[64 × <see cref="ResultStride"/>] int64, per sequence of the step: accepted count, bonus token, the accepted
    /// tokens by depth (from index 2), their entries by depth (from index 2 + 64).</summary>
    public Tensor Result { get; }

    /// <summary>The argmax of every row, packed as <see cref="KernelDecodeStep.Unpack"/> reads it.</summary>
    public Tensor Argmax { get; }

    private int QkvRows => QkvWidth(Config);

    /// <summary>The row counts a step is padded to: 8, 16, 32, 64 (one set of product kernels each), then 128, 256 and 512
    /// (cuBLAS's products).</summary>
    public static int PaddedRows(int entries)
    {
        if (entries < 1 || entries > MaxStepRows)
        {
            throw new ArgumentOutOfRangeException(nameof(entries), entries, $"a kernel tree step takes 1 to {MaxStepRows} entries");
        }
        return Math.Max(8, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)entries));
    }

    /// <summary>Whether a step of <paramref name="rows"/> padded rows takes its products from cuBLAS
    /// (<see cref="WideProducts"/>).</summary>
    public static bool IsWide(int rows) => rows > MaxRows;

    /// <summary>int64 values in a step's input array for <paramref name="rows"/> rows.</summary>
    public static int StateLength(int rows) => 2 + 6 * rows + 4 * MaxSequences;

    /// <summary>Why the tree kernels cannot run a model that the decode-step kernels run, or null.</summary>
    public static string? Unsupported(ModelConfig c)
    {
        if (c.HeadCount * c.HeadDim % Tile != 0 || c.KeyValueHeadCount * c.HeadDim % Tile != 0)
        {
            return $"the tree kernels compute q, k and v in tiles of {Tile} rows and need the query and key/value widths to be multiples of it";
        }
        if (c.HiddenSize % 64 != 0)
        {
            return "the tree kernels need the hidden size to be a multiple of 64";
        }
        return null;
    }

    /// <summary>
    /// The step's input array (tree_step.cuh): [sequences, entries, tokens, depths, parents, ancestor sets, forced tokens,
    /// sequence of each row], each of the last six <paramref name="rows"/> long, then per sequence (64 each): cached
    /// length, first row, entries, slot. Sequence i's entries are consecutive rows, its root first, then draft node j at
    /// its root's row + j + 1; depths count from the root, parents index the step's rows, ancestor sets the sequence's own
    /// entries (bit e: entry e, 0 the root).
    /// Padding rows past the entries belong to no sequence (-1): token 0, depth 0.
    /// </summary>
    public static long[] PackState(IReadOnlyList<TreeStepSequence> sequences, int rows)
    {
        int total = sequences.Sum(q => q.Entries);
        if (sequences.Count is 0 or > MaxSequences)
        {
            throw new ArgumentOutOfRangeException(nameof(sequences), sequences.Count, $"a kernel tree step takes 1 to {MaxSequences} sequences");
        }
        if (total > rows || rows > MaxStepRows)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows, $"the step has {total} entries; a kernel tree step takes at most {MaxStepRows}");
        }
        int widest = sequences.Max(q => q.Entries);
        if (widest > MaxRows)
        {
            throw new ArgumentOutOfRangeException(nameof(sequences), widest, $"a sequence of a kernel tree step takes at most {MaxRows} entries");
        }
        var s = new long[StateLength(rows)];
        s[0] = sequences.Count;
        s[1] = total;
        int tokens = 2, depths = 2 + rows, parents = 2 + 2 * rows, ancestors = 2 + 3 * rows, forcedAt = 2 + 4 * rows, sequenceOf = 2 + 5 * rows;
        int lengths = 2 + 6 * rows, firsts = lengths + MaxSequences, entries = firsts + MaxSequences, slots = entries + MaxSequences;
        for (int r = 0; r < rows; r++)
        {
            s[forcedAt + r] = -1;
            s[sequenceOf + r] = -1;
        }
        int[] firstRows = FirstRows(sequences.Select(q => q.Entries));
        for (int q = 0; q < sequences.Count; q++)
        {
            (int slot, int length, int root, DraftTree draft, long[]? forced) = sequences[q];
            int first = firstRows[q];
            s[lengths + q] = length;
            s[firsts + q] = first;
            s[entries + q] = draft.Count + 1;
            s[slots + q] = slot;
            for (int e = 0; e <= draft.Count; e++)
            {
                int r = first + e;
                s[sequenceOf + r] = q;
                s[forcedAt + r] = forced is not null && e < forced.Length ? forced[e] : -1;
                if (e == 0)
                {
                    s[tokens + r] = root;
                    s[parents + r] = r;
                    s[ancestors + r] = 1L;
                    continue;
                }
                int parent = first + draft.Parents[e - 1] + 1;
                s[tokens + r] = draft.Tokens[e - 1];
                s[depths + r] = draft.Depths[e - 1];
                s[parents + r] = parent;
                s[ancestors + r] = s[ancestors + parent] | (1L << e);
            }
        }
        return s;
    }

    /// <summary>Each sequence's first row in a step, for sequences of <paramref name="entries"/> entries in step order: a
    /// sequence's entries are consecutive rows (<see cref="PackState"/>), and the step's logits and argmax follow its rows.</summary>
    public static int[] FirstRows(IEnumerable<int> entries)
    {
        var first = new List<int>();
        int row = 0;
        foreach (int n in entries)
        {
            first.Add(row);
            row += n;
        }
        return [.. first];
    }

    /// <summary>Splits of k for a product of <paramref name="tiles"/> row tiles: as many blocks as fit in one wave
    /// (<see cref="BlocksPerMultiprocessor"/> per multiprocessor), at most 8 and at most one per 512 of k, and a divisor
    /// of k / 64.</summary>
    internal static int Splits(int k, int tiles, int multiprocessors)
    {
        int want = (int)Math.Clamp((long)BlocksPerMultiprocessor * multiprocessors / tiles, 1, int.MaxValue);
        int splits = Math.Clamp(want, 1, Math.Max(1, Math.Min(8, k / StagedChunk)));
        while (splits > 1 && k / 64 % splits != 0)
        {
            splits--;
        }
        return splits;
    }

    /// <summary>Keys per attention block for <paramref name="keys"/> keys in a step of <paramref name="rows"/> padded rows:
    /// one wave of blocks (two per multiprocessor), but at least one block per 1,024 keys and at most
    /// <see cref="MaxChunks"/> chunks (fewer past 64 rows, as many as the partial buffers hold); a multiple of 64.</summary>
    internal static int AttentionChunk(long keys, int rowGroups, int kvHeads, int multiprocessors, int rows = MaxRows)
    {
        int perChunk = rowGroups * kvHeads;
        int chunks = Math.Max(Math.Max(1, BlocksPerMultiprocessor * multiprocessors / perChunk), (int)((keys + 1023) / 1024));
        chunks = Math.Min(chunks, Math.Min(MaxChunks, PartialRows / Math.Max(rows, MaxRows)));
        long runs = (keys + 63) / 64;
        return (int)((runs + chunks - 1) / chunks) * 64;
    }

    private static int Tiles(int n) => (n + Tile - 1) / Tile;

    /// <summary>Row tiles of a product: gate/up tiles hold 64 gate and the same 64 up rows.</summary>
    private static int ProductTiles(string kernel, int n) => kernel == "tree_gate_up" ? n / Tile : Tiles(n);

    /// <summary>Splits of k for the product <paramref name="kernel"/> of <paramref name="n"/> output rows: the head keeps
    /// its tiles whole (its argmax needs them), the others fill one wave (<see cref="Splits(int, int, int)"/>).</summary>
    private static int ProductSplits(string kernel, int n, int k, int multiprocessors) =>
        kernel == "tree_head_argmax" ? 1 : Splits(k, ProductTiles(kernel, n), multiprocessors);

    /// <summary>The last <see cref="Enqueue"/> with logits on (and every wide step's): [<see cref="MaxStepRows"/> × vocab]
    /// bf16, row-major from the step's first row; rows past the step's entries meaningless.</summary>
    public Tensor Logits => _logits ?? throw new InvalidOperationException("No step has kept its logits.");

    /// <summary>Allocates <see cref="Logits"/> (before a capture: a graph must not allocate what outlives it).</summary>
    public void EnsureLogits() => _logits ??= Buffer((long)MaxStepRows * Config.VocabSize, ScalarType.BFloat16);

    /// <summary>
    /// Launches a step of <paramref name="shape"/> with <see cref="State"/> already holding its inputs (<see cref="PackState"/>
    /// for shape.Rows rows; at most shape.Sequences sequences, none wider than shape.Width entries, none reaching past
    /// shape.Keys keys). <paramref name="accept"/> false stops after the argmax (for logits comparisons: nothing is moved
    /// in the cache); <paramref name="keepLogits"/> writes every row's logits to <see cref="Logits"/>.
    /// </summary>
    public void Enqueue(TreeStepShape shape, bool accept = true, bool keepLogits = false)
    {
        (int rows, int width, int sequences, long keys) = shape;
        ModelConfig c = Config;
        bool wide = IsWide(rows);
        if (keepLogits || wide)
        {
            EnsureLogits();
        }
        // a wide step's libtorch views and argmax live until the step is enqueued
        using var scope = wide ? NewDisposeScope() : null;
        using var noGrad = wide ? no_grad() : null;
        KernelAddressing kv = Cache.Addressing;
        IntPtr tables = kv.Tables;
        IntPtr state = P(State), hidden = P(_hidden), normed = P(_normed);
        float eps = (float)c.RmsNormEps;
        int sms = Module.Multiprocessors, attentionWidth = c.HeadCount * c.HeadDim, shared = SharedBytes(rows);
        // attention: a warp per 16 query rows of a kv head of one sequence, at most four per block, as many as the widest
        // sequence needs; blocks (chunk, kv head, sequence × row group)
        (int attentionWarps, int seqGroups) = AttentionBlocks(c.HeadCount / c.KeyValueHeadCount * width);
        int rowGroups = sequences * seqGroups;
        int chunk = AttentionChunk(keys, rowGroups, c.KeyValueHeadCount, sms, rows);
        int chunks = (int)((keys + chunk - 1) / chunk);

        // a product (its splits' sums into the work buffer, or for the head the argmax), then its epilogue
        int Product(string kernel, IntPtr x, int k, int n, IntPtr w0, IntPtr w1 = default, IntPtr w2 = default, IntPtr y = default)
        {
            int splits = ProductSplits(kernel, n, k, Module.Multiprocessors);
            Module.Launch(kernel + "_" + rows, ProductTiles(kernel, n), splits, Threads, new TreeGemmParams
            {
                X = x, K = k, N = n, Rows = rows, KSplit = k / splits, W0 = w0, W1 = w1, W2 = w2, Work = P(_work), Y = y,
                Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, HeadDim = c.HeadDim, Argmax = P(Argmax), Stages = Stages,
            }, shared);
            return splits;
        }
        TreeFinishParams Finish(int splits, int n, IntPtr y) => new()
        {
            Work = P(_work), Splits = splits, N = n, Rows = rows, Y = y, Eps = eps, State = state, Cos = P(Cos), Sin = P(Sin),
            Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, HeadDim = c.HeadDim,
        };
        // residual add and the next RMSNorm, a block per row
        void FinishRows(int splits, Tensor norm) =>
            Module.Launch("tree_finish_rows", rows, 1, DecodeKernels.NormThreads, Finish(splits, c.HiddenSize, hidden) with { Norm = P(norm), Normed = normed });
        static int Blocks(long items) => (int)((items + 255) / 256);

        Module.Launch("tree_norm", rows, 1, DecodeKernels.NormThreads, new TreeNormParams
        {
            State = state, Rows = rows, Embed = P(Weights.EmbedTokens), Norm = P(Weights.Layers[0].InputNorm.Weight), Eps = eps, K = c.HiddenSize,
            Hidden = hidden, Normed = normed, Argmax = P(Argmax),
        });
        int qkvItems = (c.HeadCount + c.KeyValueHeadCount) * c.HeadDim / 2 / 4 + c.KeyValueHeadCount * c.HeadDim / 4;
        for (int i = 0; i < c.LayerCount; i++)
        {
            DecoderLayerWeights layer = Weights.Layers[i];
            AttentionWeights a = layer.Attention;
            IntPtr kCache = kv.Layer(i, 0), vCache = kv.Layer(i, 1);
            int splits = wide ? WideQkv(rows, a)
                : Product("tree_qkv", normed, c.HiddenSize, QkvRows, P(a.QProj.Weight), P(a.KProj.Weight), P(a.VProj.Weight));
            Module.Launch("tree_finish_qkv", Blocks((long)rows * qkvItems), 1, 256, Finish(splits, QkvRows, P(_q)) with
            {
                B0 = Optional(a.QProj.Bias), B1 = Optional(a.KProj.Bias), B2 = Optional(a.VProj.Bias), KCache = kCache, VCache = vCache,
                HeadStride = kv.HeadStride, RowStride = kv.RowStride, Tables = tables, BlockShift = kv.BlockShift, TableStride = kv.TableStride,
            });
            var attention = new TreeAttentionParams
            {
                Q = P(_q), KCache = kCache, VCache = vCache, HeadStride = kv.HeadStride, RowStride = kv.RowStride, Tables = tables,
                BlockShift = kv.BlockShift, TableStride = kv.TableStride, State = state, PartialO = P(_partialO), PartialMl = P(_partialMl),
                Out = P(_attention), Rows = rows, Heads = c.HeadCount, KvHeads = c.KeyValueHeadCount, Chunk = chunk, Chunks = chunks,
                SeqGroups = seqGroups, Scale = (float)(1.0 / Math.Sqrt(c.HeadDim)),
            };
            Module.Launch("tree_attention_" + c.HeadDim, chunks, c.KeyValueHeadCount, attentionWarps * 32, attention, AttentionSharedBytes(c.HeadDim), gridZ: rowGroups);
            Module.Launch("tree_attention_merge_" + c.HeadDim, (rows * c.HeadCount + 3) / 4, 1, Threads, attention);
            FinishRows(wide ? WideRows(rows, _attention, attentionWidth, a.OProj.Weight)
                : Product("tree_rows", P(_attention), attentionWidth, c.HiddenSize, P(a.OProj.Weight)), layer.PostAttentionNorm.Weight);
            Tensor next = i + 1 < c.LayerCount ? Weights.Layers[i + 1].InputNorm.Weight : Weights.Norm.Weight;
            if (wide)
            {
                WideGateUp(rows, layer.Mlp);
                FinishRows(WideRows(rows, _act, c.IntermediateSize, layer.Mlp.DownProj.Weight), next);
                continue;
            }
            // in one split the product finishes silu(gate) · up itself
            splits = Product("tree_gate_up", normed, c.HiddenSize, 2 * _mlp, P(_gate?[i] ?? layer.Mlp.GateProj.Weight), P(_up?[i] ?? layer.Mlp.UpProj.Weight),
                y: P(_act));
            if (splits > 1)
            {
                Module.Launch("tree_finish_gate_up", Blocks((long)rows * _mlp / 4), 1, 256, Finish(splits, 2 * _mlp, P(_act)));
            }
            FinishRows(Product("tree_rows", P(_act), _mlp, c.HiddenSize, P(_down?[i] ?? layer.Mlp.DownProj.Weight)), next);
        }
        if (wide)
        {
            WideHead(rows);
        }
        else
        {
            Product("tree_head_argmax", normed, c.HiddenSize, c.VocabSize, P(Weights.Head), y: keepLogits ? P(_logits!) : IntPtr.Zero);
        }
        if (accept)
        {
            Module.Launch("tree_accept", c.KeyValueHeadCount, 2, Threads, new TreeAcceptParams
            {
                State = state, Rows = rows, Argmax = P(Argmax), Cache = kv.Base, LayerStride = kv.LayerStride, KvStride = kv.KvStride,
                RowStride = kv.RowStride, HeadStride = kv.HeadStride, Tables = tables, BlockShift = kv.BlockShift, TableStride = kv.TableStride,
                HeadDim = c.HeadDim, Layers = c.LayerCount, Result = P(Result),
            }, gridZ: sequences * c.LayerCount);
        }
    }

    // A wide step's products (WideProducts: cuBLAS through libtorch) on the step's buffers, seen as [rows, width].

    /// <summary>q, k and v into the work buffer's one plane; returns the splits (1).</summary>
    private int WideQkv(int rows, AttentionWeights a) =>
        WideProducts.Qkv(Rows(_normed, rows, Config.HiddenSize), Rows(_product, rows, QkvRows), Rows(_work, rows, QkvRows),
            a.QProj.Weight, a.KProj.Weight, a.VProj.Weight);

    /// <summary>A hidden-size product (o or down) into the work buffer's one plane; returns the splits (1).</summary>
    private int WideRows(int rows, Tensor input, int k, Tensor weight) =>
        WideProducts.Plain(Rows(input, rows, k), Rows(_product, rows, Config.HiddenSize), Rows(_work, rows, Config.HiddenSize), weight);

    /// <summary>silu(gate) · up into the activation buffer as [rows, MLP size] (down reads it so).</summary>
    private void WideGateUp(int rows, MlpWeights m) =>
        WideProducts.GateUp(Rows(_normed, rows, Config.HiddenSize), Rows(_act, rows, Config.IntermediateSize),
            Rows(_product, rows, Config.IntermediateSize), m.GateProj.Weight, m.UpProj.Weight);

    /// <summary>The logits into <see cref="Logits"/> and their packed argmax into <see cref="Argmax"/>.</summary>
    private void WideHead(int rows) =>
        WideProducts.HeadArgmax(Rows(_normed, rows, Config.HiddenSize), Rows(_logits!, rows, Config.VocabSize), Argmax.narrow(0, 0, rows), Weights.Head);

    private static Tensor Rows(Tensor buffer, int rows, long cols) => WideProducts.RowsOf(buffer, rows, cols);

    /// <summary>Reads sequence <paramref name="sequence"/>'s part of a step's <see cref="Result"/> (copied to the host) into
    /// the accepted nodes and tokens of <paramref name="slot"/>.</summary>
    public static VerifiedStep Read(int slot, long[] result, int sequence)
    {
        ReadOnlySpan<long> r = result.AsSpan(sequence * ResultStride, ResultStride);
        int count = (int)r[0];
        return GreedyAcceptance.Path(slot, r.Slice(2, count), r.Slice(2 + MaxRows, count), r[1]);
    }

    /// <summary>Warps per attention block and row groups per sequence for sequences of <paramref name="queryRows"/> query rows
    /// per kv head (query heads of a group × entries): a warp per 16 rows, at most four warps a block.</summary>
    internal static (int Warps, int Groups) AttentionBlocks(int queryRows)
    {
        int warps = Math.Min(4, (queryRows + 15) / 16);
        return (warps, (queryRows + warps * 16 - 1) / (warps * 16));
    }
}
