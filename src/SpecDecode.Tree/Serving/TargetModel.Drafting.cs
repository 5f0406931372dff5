using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// One slot's rows of a draft forward (<see cref="TargetModel.DraftLogits"/>). The slot's <em>draft region</em> is the
/// cache after its cached length: entries 0 .. <see cref="RegionBefore"/>-1 were written by earlier forwards of the same
/// proposal and stay there; this forward appends <see cref="Tokens"/> as entries <see cref="RegionBefore"/> onwards.
/// </summary>
/// <param name="Slot">The KV-cache slot; each slot at most once per forward.</param>
/// <param name="RegionBefore">Entries of the draft region already written (0 for the first forward of a proposal).</param>
/// <param name="RegionParents">For every region entry, old and new (<c>RegionBefore + Tokens.Length</c> values): the
/// entry of its parent, or -1 for an entry that hangs off the cached prefix. Parents precede their children.</param>
/// <param name="Tokens">The new entries' tokens.</param>
/// <param name="Offsets">The new entries' positions relative to the cached length (position = length + offset): a
/// chain fed right after the prefix has offsets 0, 1, 2, ...; a tree node at depth d below a root at offset 0 has d.</param>
/// <param name="RegionTokens">The tokens of the earlier entries (<see cref="RegionBefore"/> of them), or null. The tree
/// kernels run a forward only with them: they feed the whole region again (<see cref="TargetModel.KernelDraftStep"/>).</param>
internal sealed record DraftRows(int Slot, int RegionBefore, int[] RegionParents, int[] Tokens, int[] Offsets, int[]? RegionTokens = null);

public sealed partial class TargetModel
{
    /// <summary>
    /// A forward for a draft model (<see cref="DraftModelDrafter"/>): writes the new entries' keys and values into each
    /// slot's draft region (after its cached length, which does not change) and returns the logits of the requested
    /// rows only. A new entry attends to the slot's cached prefix and to itself and its ancestors in the draft region,
    /// including entries written by earlier forwards, so a tree can grow depth by depth with each node fed once.
    /// </summary>
    /// <param name="inputs">Each slot's new rows.</param>
    /// <param name="logitRows">The rows whose logits are wanted, in the order of the result: (slot, index into that
    /// slot's <see cref="DraftRows.Tokens"/>).</param>
    /// <returns>Logits [N, vocab] in the model's dtype on the model's device, N = <paramref name="logitRows"/>.Count;
    /// moved to the caller's dispose scope.</returns>
    /// <exception cref="ArgumentException">A slot is out of range or repeated, a token is outside the vocabulary, the
    /// arrays are inconsistent, or a logit row does not exist.</exception>
    /// <exception cref="InvalidOperationException">A slot's region would pass the cache's capacity.</exception>
    internal Tensor DraftLogits(IReadOnlyList<DraftRows> inputs, IReadOnlyList<(int Slot, int Row)> logitRows)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(logitRows);
        RefuseTensorParallel("serve as a draft model");
        if (inputs.Count == 0 || logitRows.Count == 0)
        {
            throw new ArgumentException("A draft forward needs at least one row and one logit row.", nameof(inputs));
        }
        CheckInputs(inputs.Select(i => i.Slot), inputs.SelectMany(i => i.Tokens));

        (int maxHops, int keys) = CheckDraftRows(inputs, logitRows);
        _cache.SyncTables();
        if (KernelDraftRefusal(inputs, logitRows, out TreeInput[] trees, out (int Input, int Entry)[] stepRows) is null)
        {
            using var kernelScope = NewDisposeScope();
            return _treeKernels!.DraftLogits(trees, stepRows).MoveToOuterDisposeScope();
        }

        int batch = inputs.Max(i => i.Slot) + 1;
        int width = Math.Max(1, inputs.Max(i => i.Tokens.Length));
        int window = Math.Max(1, inputs.Max(i => i.RegionParents.Length));
        int n = logitRows.Count;
        // tokens, entry, offset, valid [B*T]; lengths [B]; region parents [B*W]; logit rows [N]
        int bt = batch * width;
        var packed = new long[4 * bt + batch + batch * window + n];
        int entryAt = bt, offsetAt = 2 * bt, validAt = 3 * bt, lengthAt = 4 * bt, parentAt = 4 * bt + batch, rowAt = parentAt + batch * window;
        for (int w = 0; w < batch * window; w++)
        {
            packed[parentAt + w] = w % window; // padding entries are their own parents
        }
        foreach (DraftRows input in inputs)
        {
            int b = input.Slot;
            for (int e = 0; e < input.RegionParents.Length; e++)
            {
                int parent = input.RegionParents[e];
                packed[parentAt + b * window + e] = parent < 0 ? e : parent;
            }
            for (int t = 0; t < input.Tokens.Length; t++)
            {
                int at = b * width + t;
                packed[at] = input.Tokens[t];
                packed[entryAt + at] = input.RegionBefore + t;
                packed[offsetAt + at] = input.Offsets[t];
                packed[validAt + at] = 1;
            }
            packed[lengthAt + b] = _cache.Length(b);
        }
        for (int i = 0; i < n; i++)
        {
            packed[rowAt + i] = logitRows[i].Slot * width + logitRows[i].Row;
        }

        ModelConfig c = Config;
        int groups = c.HeadCount / c.KeyValueHeadCount;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor all = tensor(packed).to(Device); // the forward's one upload
        Tensor tokens = all.narrow(0, 0, bt).view(batch, width);
        Tensor entries = all.narrow(0, entryAt, bt).view(batch, width);
        Tensor offsets = all.narrow(0, offsetAt, bt).view(batch, width);
        Tensor valid = all.narrow(0, validAt, bt).view(batch, width).to(ScalarType.Bool);
        Tensor lengths = all.narrow(0, lengthAt, batch);
        Tensor parents = all.narrow(0, parentAt, batch * window).view(batch, window);
        Tensor rows = all.narrow(0, rowAt, n);

        // visible[b, t, w]: region entry w is row t's entry or one of its ancestors.
        Tensor ancestors = _reference.Ancestors(parents, maxHops);
        Tensor visible = ancestors.gather(1, entries.view(batch, width, 1).expand(batch, width, window));
        using Scalar batchSize = batch; // held for the call (TorchScalars)
        Tensor slots = arange(batchSize, int64, Device); // row b is slot b
        Tensor writeRows = where(valid, _cache.Rows(slots, lengths.view(batch, 1).Plus(entries)), full_like(entries, _cache.ScratchRowScalar)).view(-1);
        Tensor readRows = _cache.ReadRows(slots, keys);
        Tensor mask = _reference.AttentionMask(visible, lengths, valid, keys, groups);
        Tensor positions = lengths.view(batch, 1).Plus(offsets).view(-1);
        Tensor cos = _cos.index_select(0, positions).view(batch, width, 1, c.HeadDim).to(DType);
        Tensor sin = _sin.index_select(0, positions).view(batch, width, 1, c.HeadDim).to(DType);

        Tensor x = _weights.EmbedTokens.index_select(0, tokens.view(-1)).view(batch, width, c.HiddenSize);
        x = _scripted is not null
            ? _scripted.Forward(x, _cache.Data, writeRows, readRows, mask, cos, sin)
            : _reference.EagerLayers(x, writeRows, readRows, mask, cos, sin);
        // The output projection for the wanted rows only (a vocabulary-wide projection of every row would dominate a
        // small model's forward).
        Tensor hidden = x.view(batch * width, c.HiddenSize).index_select(0, rows);
        return nn.functional.linear(hidden, _weights.Head).MoveToOuterDisposeScope();
    }

    /// <summary>Checks a draft forward's rows (<see cref="DraftLogits"/>) and reserves each slot's region in the cache,
    /// before either path runs.</summary>
    /// <returns>The deepest region entry's hops from its root, and the keys the widest slot attends to (cached tokens
    /// and region).</returns>
    private (int MaxHops, int Keys) CheckDraftRows(IReadOnlyList<DraftRows> inputs, IReadOnlyList<(int Slot, int Row)> logitRows)
    {
        int batch = inputs.Max(i => i.Slot) + 1;
        var rowsOfSlot = new int[batch];
        int maxHops = 0, keys = 1;
        foreach (DraftRows input in inputs)
        {
            int b = input.Slot, count = input.Tokens.Length, region = input.RegionParents.Length;
            if (input.RegionBefore < 0 || region != input.RegionBefore + count || input.Offsets.Length != count)
            {
                throw new ArgumentException(
                    $"Slot {b}: {input.RegionBefore} region entries before, {count} tokens, {input.Offsets.Length} offsets and {region} region parents do not fit together.",
                    nameof(inputs));
            }
            int length = _cache.Length(b);
            if (length + region > Capacity)
            {
                throw new InvalidOperationException(
                    $"Slot {b} holds {length} tokens and its draft region {region}, past the KV cache's capacity of {Capacity}: draft smaller trees or raise the context.");
            }
            var hops = new int[region];
            for (int e = 0; e < region; e++)
            {
                int parent = input.RegionParents[e];
                if (parent < -1 || parent >= e)
                {
                    throw new ArgumentException($"Slot {b}: region entry {e} has parent {parent}; parents must precede their children.", nameof(inputs));
                }
                hops[e] = parent < 0 ? 0 : hops[parent] + 1;
                maxHops = Math.Max(maxHops, hops[e]);
            }
            for (int t = 0; t < count; t++)
            {
                if (input.Offsets[t] < 0 || length + input.Offsets[t] >= Capacity)
                {
                    throw new ArgumentException($"Slot {b}: row {t} has the position offset {input.Offsets[t]}, outside the cache.", nameof(inputs));
                }
            }
            rowsOfSlot[b] = count;
            keys = Math.Max(keys, length + region);
        }
        foreach ((int slot, int row) in logitRows)
        {
            if ((uint)slot >= (uint)batch || (uint)row >= (uint)rowsOfSlot[slot])
            {
                throw new ArgumentException($"Logit row ({slot}, {row}) is not a row of this forward.", nameof(logitRows));
            }
        }
        // only once every check passed: a refused forward reserves nothing
        foreach (DraftRows input in inputs)
        {
            _cache.Reserve(input.Slot, _cache.Length(input.Slot) + input.RegionParents.Length);
        }
        return (maxHops, keys);
    }

    /// <summary>Which path <see cref="DraftLogits"/> takes for these rows: "tree kernels, N steps", or "libtorch path" and
    /// why; for benchmarks and logs.</summary>
    internal string DraftForwardPath(IReadOnlyList<DraftRows> inputs, IReadOnlyList<(int Slot, int Row)> logitRows) =>
        KernelDraftRefusal(inputs, logitRows, out TreeInput[] trees, out _) is { } why ? $"libtorch path ({why})"
            : $"tree kernels, {TreeKernelBackend.DraftSteps(trees).Count} step(s)";

    /// <summary>Null when the tree kernels run this draft forward (<paramref name="trees"/> and <paramref name="stepRows"/>
    /// as <see cref="KernelDraftStep"/> makes them), else why the libtorch path runs it: no tree kernels here, a forward
    /// of another form, or a step past the kernels' limits.</summary>
    private string? KernelDraftRefusal(IReadOnlyList<DraftRows> inputs, IReadOnlyList<(int Slot, int Row)> logitRows,
        out TreeInput[] trees, out (int Input, int Entry)[] stepRows)
    {
        if (!UsesTreeKernels)
        {
            trees = [];
            stepRows = [];
            return "no tree kernels";
        }
        return KernelDraftStep(inputs, logitRows, out trees, out stepRows) ?? _treeKernels!.RefusesDraft(trees);
    }

    /// <summary>
    /// A draft forward (checked by <see cref="DraftLogits"/>) as tree-kernel steps, or why it is not one. The
    /// kernels know no draft region: a step's entries sit right after each sequence's cached length, the first one the
    /// root, the others a tree below it, each roped at length + its depth. So every slot's whole region is fed again:
    /// root = region entry 0, draft = entries 1 .. region − 1 (their keys and values are written again where earlier
    /// forwards wrote them). That fits when entry 0 is the only entry hanging off the cached prefix and every new row's
    /// offset is its depth below entry 0, as <see cref="DraftModelDrafter"/>'s forwards are (the first feeds the pending
    /// chain, the later ones tree nodes below the last context token); the kernels' own limits are the backend's to check
    /// (it runs a forward of more than a step's rows as several steps).
    /// </summary>
    /// <param name="inputs">The forward's rows, checked.</param>
    /// <param name="logitRows">The rows whose logits are wanted.</param>
    /// <param name="trees">One tree input per slot, in the order of <paramref name="inputs"/>.</param>
    /// <param name="stepRows">Per logit row, its input (index into <paramref name="trees"/>) and entry (0 the root).</param>
    /// <returns>Null when the forward maps to tree inputs, else the reason it does not.</returns>
    internal static string? KernelDraftStep(IReadOnlyList<DraftRows> inputs, IReadOnlyList<(int Slot, int Row)> logitRows,
        out TreeInput[] trees, out (int Input, int Entry)[] stepRows)
    {
        trees = [];
        stepRows = [];
        var built = new TreeInput[inputs.Count];
        var inputOfSlot = new Dictionary<int, int>(inputs.Count);
        for (int i = 0; i < inputs.Count; i++)
        {
            DraftRows input = inputs[i];
            int region = input.RegionParents.Length, before = input.RegionBefore;
            if (before > 0 && input.RegionTokens?.Length != before)
            {
                return $"slot {input.Slot}: the tokens of its {before} earlier region entries are not given";
            }
            var depths = new int[region];
            var parents = new int[region - 1];
            for (int e = 1; e < region; e++)
            {
                int parent = input.RegionParents[e];
                if (parent < 0)
                {
                    return $"slot {input.Slot}: region entry {e} hangs off the cached prefix beside entry 0";
                }
                depths[e] = depths[parent] + 1;
                parents[e - 1] = parent - 1; // entry 0 is the root (-1 in the draft), entry e is draft node e − 1
            }
            for (int t = 0; t < input.Tokens.Length; t++)
            {
                if (input.Offsets[t] != depths[before + t])
                {
                    return $"slot {input.Slot}: row {t} is roped at offset {input.Offsets[t]}, not at its depth {depths[before + t]}";
                }
            }
            int[] tokens = before == 0 ? input.Tokens : [.. input.RegionTokens!, .. input.Tokens];
            DraftTree draft;
            try
            {
                draft = region == 1 ? DraftTree.Empty : DraftTree.Create(tokens.AsSpan(1), parents, []);
            }
            catch (InvalidDraftTreeException e)
            {
                return $"slot {input.Slot}: its region is no draft tree ({e.Message})";
            }
            built[i] = new TreeInput(input.Slot, tokens[0], draft);
            inputOfSlot[input.Slot] = i;
        }
        var rows = new (int, int)[logitRows.Count];
        for (int n = 0; n < rows.Length; n++)
        {
            (int slot, int row) = logitRows[n];
            int i = inputOfSlot[slot];
            rows[n] = (i, inputs[i].RegionBefore + row);
        }
        trees = built;
        stepRows = rows;
        return null;
    }

    /// <summary>Adds the first <paramref name="tokens"/>.Length entries of <paramref name="slot"/>'s draft region to its
    /// cached prefix: the entries a draft forward wrote there at their final positions (a chain fed from the root, whose
    /// tokens these are) become context.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The slot is out of range, or the length would leave 0 .. capacity.</exception>
    internal void CommitDraftRegion(int slot, ReadOnlySpan<int> tokens)
    {
        RefuseTensorParallel("serve as a draft model");
        CheckSlot(slot);
        int length = _cache.Length(slot);
        if (length + tokens.Length > Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens.Length, $"Slot {slot} caches {length} of {Capacity} tokens.");
        }
        _cache.Append(slot, tokens);
    }
}
