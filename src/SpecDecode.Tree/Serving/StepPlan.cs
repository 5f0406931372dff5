namespace SpecDecode.Tree;

/// <summary>
/// One forward's host-side description, packed for a single host-to-device copy: B rows of T entries (tokens, parents,
/// depths, validity), each row's cached length and its KV-cache slot. Row b is slot b (slots 0 .. B-1, those not in the
/// step idle), except in a <see cref="Causal"/> plan, whose rows are just the step's sequences. Entry 0 of a row is the
/// root (the last accepted token), entries 1 .. n its draft tree (node i at entry i + 1) or a chunk of prompt tokens as
/// a chain. Padding entries and idle slots point at themselves as parents and are marked invalid: they write their keys
/// and values to a scratch position past the capacity and attend to key 0 only, so they never touch a sequence's cache
/// and no attention row is ever fully masked.
/// </summary>
internal sealed class StepPlan
{
    private StepPlan(int batch, int width)
    {
        Batch = batch;
        Width = width;
        Packed = new long[4 * batch * width + 2 * batch];
        for (int b = 0; b < batch; b++)
        {
            Packed[SlotsOffset + b] = b;
            for (int t = 0; t < width; t++)
            {
                Packed[ParentsOffset + b * width + t] = t;
            }
        }
    }

    /// <summary>Rows: the highest slot used + 1, or in a <see cref="Causal"/> plan the sequences of the step.</summary>
    public int Batch { get; }

    /// <summary>Entries per row (the longest row).</summary>
    public int Width { get; }

    /// <summary>tokens [B*T], parents [B*T], depths [B*T], valid [B*T], lengths [B], slots [B].</summary>
    public long[] Packed { get; }

    /// <summary>Entries used per row (0 for slots not in the step).</summary>
    public int[] Used { get; private set; } = [];

    /// <summary>The longest root-to-leaf path (root = depth 0) over the batch.</summary>
    public int MaxDepth { get; private set; }

    /// <summary>Keys the attention must see: max over the slots in the step of cached length + entries used.</summary>
    public int KeyCount { get; private set; }

    /// <summary>
    /// Every row is a chain of prompt tokens starting at an empty cache (<see cref="ForCausalChunks"/>), so entry t sees
    /// exactly entries 0 .. t of its own row: attention is plain causal attention over the step's own keys, with no
    /// ancestor matrix, no mask and no cache read. Padding entries sit after a row's last token, where no valid entry
    /// sees them. Rows are the step's sequences only (no idle slots), and their keys and values are written to the
    /// slots the plan's slots section names.
    /// </summary>
    public bool Causal { get; private set; }

    private int ParentsOffset => Batch * Width;

    private int DepthsOffset => 2 * Batch * Width;

    private int ValidOffset => 3 * Batch * Width;

    private int LengthsOffset => 4 * Batch * Width;

    private int SlotsOffset => 4 * Batch * Width + Batch;

    /// <summary>A verification step: each input's root and draft tree.</summary>
    public static StepPlan ForTrees(IReadOnlyList<TreeInput> inputs, int[] lengths, int capacity)
    {
        int batch = inputs.Max(i => i.Slot) + 1;
        int width = inputs.Max(i => i.Draft.Count) + 1;
        var plan = new StepPlan(batch, width) { Used = new int[batch] };
        foreach (TreeInput input in inputs)
        {
            DraftTree tree = input.Draft;
            int row = input.Slot * width;
            plan.Set(row, 0, input.Root, 0, 0);
            for (int i = 0; i < tree.Count; i++)
            {
                plan.Set(row, i + 1, tree.Tokens[i], tree.Parents[i] + 1, tree.Depths[i]);
                plan.MaxDepth = Math.Max(plan.MaxDepth, tree.Depths[i]);
            }
            plan.Used[input.Slot] = tree.Count + 1;
        }
        plan.Finish(lengths, capacity);
        return plan;
    }

    /// <summary>A masked prefill step: each slot's chunk of tokens as a chain after its cached tokens.</summary>
    public static StepPlan ForChunks(IReadOnlyList<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, int[] lengths, int capacity)
    {
        int batch = chunks.Max(c => c.Slot) + 1;
        int width = chunks.Max(c => c.Tokens.Length);
        var plan = new StepPlan(batch, width) { Used = new int[batch] };
        foreach ((int slot, ReadOnlyMemory<int> tokens) in chunks)
        {
            plan.SetChain(slot, tokens.Span);
        }
        plan.Finish(lengths, capacity);
        return plan;
    }

    /// <summary>A <see cref="Causal"/> prefill step: row r is chunks[r], the first tokens of a slot with an empty cache.</summary>
    /// <exception cref="InvalidOperationException">A slot has cached tokens.</exception>
    public static StepPlan ForCausalChunks(IReadOnlyList<(int Slot, ReadOnlyMemory<int> Tokens)> chunks, int[] lengths, int capacity)
    {
        var plan = new StepPlan(chunks.Count, chunks.Max(c => c.Tokens.Length)) { Used = new int[chunks.Count], Causal = true };
        for (int row = 0; row < chunks.Count; row++)
        {
            (int slot, ReadOnlyMemory<int> tokens) = chunks[row];
            if (lengths[slot] != 0)
            {
                throw new InvalidOperationException($"Slot {slot} caches {lengths[slot]} tokens; a causal prefill chunk needs an empty cache.");
            }
            if (tokens.Length > capacity)
            {
                throw new InvalidOperationException($"Slot {slot}: {tokens.Length} tokens exceed the KV cache's capacity of {capacity}.");
            }
            plan.SetChain(row, tokens.Span);
            plan.Packed[plan.SlotsOffset + row] = slot;
        }
        plan.KeyCount = plan.Width;
        return plan;
    }

    private void SetChain(int row, ReadOnlySpan<int> tokens)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            Set(row * Width, t, tokens[t], Math.Max(t - 1, 0), t);
        }
        Used[row] = tokens.Length;
        MaxDepth = Math.Max(MaxDepth, tokens.Length - 1);
    }

    private void Set(int row, int t, int token, int parent, int depth)
    {
        Packed[row + t] = token;
        Packed[ParentsOffset + row + t] = parent;
        Packed[DepthsOffset + row + t] = depth;
        Packed[ValidOffset + row + t] = 1;
    }

    private void Finish(int[] lengths, int capacity)
    {
        KeyCount = 1;
        for (int b = 0; b < Batch; b++)
        {
            if (Used[b] == 0)
            {
                continue; // an idle slot: length 0 in the plan, so nothing of its cache is touched
            }
            CheckRoom(b, lengths[b], Used[b], capacity);
            Packed[LengthsOffset + b] = lengths[b];
            KeyCount = Math.Max(KeyCount, lengths[b] + Used[b]);
        }
    }

    /// <summary>Throws when a step adding <paramref name="adding"/> tokens to <paramref name="slot"/>, which holds
    /// <paramref name="length"/>, would pass the cache's <paramref name="capacity"/> (every verification path checks here).</summary>
    /// <exception cref="InvalidOperationException">The step does not fit.</exception>
    public static void CheckRoom(int slot, int length, int adding, int capacity)
    {
        if (length + adding > capacity)
        {
            throw new InvalidOperationException(
                $"Slot {slot} holds {length} tokens and this step adds {adding}, past the KV cache's capacity of {capacity}. " +
                (adding > 1 ? "Raise TargetModelOptions.MaxContext, draft smaller trees, or truncate the sequence."
                    : "Raise TargetModelOptions.MaxContext, or truncate the sequence."));
        }
    }
}
