using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// <see cref="TargetModel.KernelDraftStep"/>: a draft forward as the tree step the kernels run (each slot's whole draft
/// region fed again as root and tree). On the CPU the step goes through the reference path's verification forward
/// (<see cref="TargetModel.TreeLogits"/>), which the GPU checks hold equal to the kernels; its rows at the mapped step rows
/// must be the draft forward's logits. Forwards the kernels cannot take get a reason.
/// </summary>
public sealed class KernelDraftStepTests
{
    private static TargetModel Load() =>
        TargetModel.Load(SharedFixtures.TinyCheckpoint("llama-gqa"), new TargetModelOptions { Device = CPU, MaxBatch = 3, MaxContext = 128 });

    [Fact]
    public void TheMappedTreeStep_GivesEachDraftForwardsLogits_AtTheMappedRows()
    {
        using TargetModel model = Load();
        var random = new Random(3);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => random.Next(1, model.Config.VocabSize)).ToArray();
        int[] lengths = [9, 17, 30];
        for (int s = 0; s < 3; s++)
        {
            model.Prefill([(s, Tokens(lengths[s]))]);
        }
        // A proposal's forwards as the drafter runs them: pending chains (1, 2, 3 tokens), then the chains but their last
        // token committed, then nodes below the root, then a level below those with the earlier entries' tokens given.
        DraftRows[] chains = Enumerable.Range(0, 3).Select(s =>
            new DraftRows(s, 0, Enumerable.Range(-1, s + 1).ToArray(), Tokens(s + 1), Enumerable.Range(0, s + 1).ToArray())).ToArray();
        AssertSameLogits(model, chains, chains.Select(c => (c.Slot, c.Tokens.Length - 1)).ToArray());
        int[] roots = chains.Select(c => c.Tokens[^1]).ToArray();
        for (int s = 0; s < 3; s++)
        {
            model.CommitDraftRegion(s, chains[s].Tokens.AsSpan(0, chains[s].Tokens.Length - 1));
        }
        int[][] level1 = [[11, 12, 13], [21, 22, 23], [31, 32, 33]];
        DraftRows[] first = Enumerable.Range(0, 3).Select(s => new DraftRows(s, 1, [-1, 0, 0, 0], level1[s], [1, 1, 1], [roots[s]])).ToArray();
        AssertSameLogits(model, first, [(0, 0), (1, 2), (2, 1), (0, 2)]);
        // the second level: two children of entry 1, one of entry 3; slot 1 sits this level out
        DraftRows[] second = new[] { 0, 2 }.Select(s => new DraftRows(s, 4, [-1, 0, 0, 0, 1, 1, 3], [41, 42, 43], [2, 2, 2], [roots[s], .. level1[s]])).ToArray();
        AssertSameLogits(model, second, [(2, 2), (0, 0), (0, 1), (2, 0)]);
    }

    /// <summary>The draft forward's logits (reference path) against the mapped tree step's rows; the step first, so that the
    /// forward reads keys and values the step wrote again at the same places (as the kernels do).</summary>
    private static void AssertSameLogits(TargetModel model, DraftRows[] inputs, (int Slot, int Row)[] rows)
    {
        Assert.Null(TargetModel.KernelDraftStep(inputs, rows, out TreeInput[] trees, out (int Input, int Entry)[] stepRows));
        Assert.Equal(inputs.Select(i => i.Slot), trees.Select(t => t.Slot));
        Assert.Equal(inputs.Select(i => i.RegionParents.Length), trees.Select(t => t.Draft.Count + 1));
        using var scope = NewDisposeScope();
        Tensor step = model.TreeLogits(trees); // [slots, widest, vocab], row t of slot b after entry t
        Tensor mapped = stack(stepRows.Select(r => step[trees[r.Input].Slot][r.Entry]).ToArray());
        Tensor draft = model.DraftLogits(inputs, rows).to(ScalarType.Float32);
        Assert.Equal(rows.Length, (int)draft.shape[0]);
        double relative = ((mapped - draft).norm() / draft.norm()).item<float>();
        Assert.True(relative < 1e-4, $"relative difference {relative:E2} between the mapped tree step and the draft forward");
        Assert.Equal(draft.argmax(-1).data<long>().ToArray(), mapped.argmax(-1).data<long>().ToArray());
    }

    [Fact]
    public void ARefusedDraftForward_TakesNoCacheBlocks()
    {
        using TargetModel model = Load();
        model.Prefill([(0, [5, 6, 7]), (1, [8, 9])]);
        int free = model.KvCache.FreeBlocks;
        // slot 0's rows are fine and come first; slot 1's logit row does not exist
        DraftRows[] inputs = [new DraftRows(0, 0, [.. Enumerable.Range(-1, 70)], [.. Enumerable.Range(1, 70)], [.. Enumerable.Range(0, 70)]),
            new DraftRows(1, 0, [-1], [3], [0])];
        Assert.Throws<ArgumentException>(() => model.DraftLogits(inputs, [(0, 69), (1, 1)]));
        Assert.Equal(free, model.KvCache.FreeBlocks);
        // the same forward with a real row reserves slot 0's 70-entry region (3 cached tokens and 70 pass a 64-token block)
        using Tensor logits = model.DraftLogits(inputs, [(0, 69), (1, 0)]);
        Assert.True(model.KvCache.FreeBlocks < free, "the accepted forward reserved its region");
    }

    [Fact]
    public void ForwardsTheKernelsCannotFeed_GetAReason()
    {
        // earlier region entries without their tokens
        Assert.Contains("tokens of its 1 earlier region entries",
            TargetModel.KernelDraftStep([new DraftRows(0, 1, [-1, 0], [5], [1])], [(0, 0)], out _, out _));
        // a second entry hanging off the cached prefix
        Assert.Contains("hangs off the cached prefix",
            TargetModel.KernelDraftStep([new DraftRows(0, 0, [-1, -1], [5, 6], [0, 0])], [(0, 1)], out _, out _));
        // a row roped away from its depth
        Assert.Contains("not at its depth 1",
            TargetModel.KernelDraftStep([new DraftRows(0, 0, [-1, 0], [5, 6], [0, 3])], [(0, 1)], out _, out _));
        // siblings sharing a token are no draft tree
        Assert.Contains("no draft tree",
            TargetModel.KernelDraftStep([new DraftRows(0, 0, [-1, 0, 0], [5, 6, 6], [0, 1, 1])], [(0, 1)], out _, out _));
    }

    private static TreeInput Region(int slot, int entries) =>
        new(slot, 1, entries == 1 ? DraftTree.Empty : DraftTree.Chain(Enumerable.Range(2, entries - 1).ToArray()));

    [Fact]
    public void AForwardPastAStepsRows_RunsAsSeveralSteps_OfConsecutiveInputs()
    {
        // a deep level at batch 32: 21 entries a sequence, 672 rows: 24 sequences (504 rows), then 8
        TreeInput[] deep = Enumerable.Range(0, 32).Select(s => Region(s, 21)).ToArray();
        List<int[]> steps = TreeKernelBackend.DraftSteps(deep);
        Assert.Equal([24, 8], steps.Select(s => s.Length));
        Assert.Equal(Enumerable.Range(0, 32), steps.SelectMany(s => s));
        Assert.All(steps, s => Assert.True(s.Sum(i => deep[i].Draft.Count + 1) <= KernelTreeStep.StepRowLimit));
        // sequences past a step's 64 split too; a forward that fits is one step
        Assert.Equal([64, 6], TreeKernelBackend.DraftSteps(Enumerable.Range(0, 70).Select(s => Region(s, 1)).ToArray()).Select(s => s.Length));
        Assert.Single(TreeKernelBackend.DraftSteps(Enumerable.Range(0, 32).Select(s => Region(s, 13)).ToArray()));
        // an input wider than a sequence of a step takes: its step is refused, so the forward takes the libtorch path
        TreeInput[] wide = [Region(0, 3), Region(1, 65), Region(2, 3)];
        int[] withWide = Assert.Single(TreeKernelBackend.DraftSteps(wide));
        Assert.Contains("65 entries", TreeKernelBackend.Refuses(withWide.Select(i => wide[i]).ToArray(), AcceptanceRule.Sampled, suspended: false));
    }

    [Fact]
    public void TheGatherPlan_PutsEveryWantedRowBackInItsPlace()
    {
        // 30 inputs of 20 entries (600 rows: steps of 25 and 5); wanted rows in an order that crosses the steps
        TreeInput[] inputs = Enumerable.Range(0, 30).Select(s => Region(s, 20)).ToArray();
        List<int[]> steps = TreeKernelBackend.DraftSteps(inputs);
        Assert.Equal(2, steps.Count);
        (int Input, int Entry)[] rows = [(29, 19), (0, 0), (12, 7), (26, 1), (24, 19), (25, 0)];
        (long[][] stepRows, long[] order) = TreeKernelBackend.GatherPlan(inputs, steps, rows);
        // play the gather with each step row standing for (input, entry): the result must be the wanted rows in order
        var gathered = new List<(int, int)>();
        for (int s = 0; s < steps.Count; s++)
        {
            var atRow = steps[s].SelectMany(i => Enumerable.Range(0, inputs[i].Draft.Count + 1).Select(e => (i, e))).ToArray();
            gathered.AddRange(stepRows[s].Select(r => atRow[r]));
        }
        Assert.Equal(rows, order.Select(o => gathered[(int)o]));
    }
}
