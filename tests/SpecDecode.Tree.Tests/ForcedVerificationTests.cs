using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// <see cref="TargetModel.VerifyForced"/> with draft trees (the benchmarks' replay of recorded text): the recorded token
/// counts as the target's choice after the root and after each node at its depth, so the recorded path through the tree
/// is accepted, the first recorded token the tree lacks is the bonus, and past the recording the argmax decides.
/// </summary>
public sealed class ForcedVerificationTests
{
    // root r; chain a → b → c; d a sibling of a
    private static readonly DraftTree Tree = DraftTree.Create([11, 12, 13, 14], [-1, 0, 1, -1], []);

    private static TargetModel Model()
    {
        var model = TargetModel.Load(SharedFixtures.TinyCheckpoint("llama-gqa"), new TargetModelOptions { Device = CPU, MaxContext = 64 });
        model.Prefill([(0, new[] { 1, 2, 3 })]);
        return model;
    }

    [Fact]
    public void TheRecordedPathIsAcceptedAndItsNextTokenIsTheBonus()
    {
        using TargetModel model = Model();
        VerifiedStep step = model.VerifyForced([new TreeInput(0, 5, Tree)], [[11, 12, 40, 41]])[0];
        Assert.Equal(new[] { 0, 1 }, step.AcceptedNodes);
        Assert.Equal(new[] { 11, 12, 40 }, step.Tokens);
        Assert.Equal(3 + 1 + 2, model.CachedLength(0));
    }

    [Fact]
    public void ARecordingThatLeavesTheTreeAtOnceAcceptsNothing()
    {
        using TargetModel model = Model();
        VerifiedStep step = model.VerifyForced([new TreeInput(0, 5, Tree)], [[14, 99]])[0];
        Assert.Equal(new[] { 3 }, step.AcceptedNodes); // d, the root's other child
        Assert.Equal(new[] { 14, 99 }, step.Tokens);
        step = model.VerifyForced([new TreeInput(0, 99, Tree)], [[7]])[0];
        Assert.Empty(step.AcceptedNodes);
        Assert.Equal(new[] { 7 }, step.Tokens);
    }

    [Fact]
    public void PastTheRecordingTheArgmaxDecides()
    {
        using TargetModel forced = Model();
        using TargetModel plain = Model();
        VerifiedStep step = forced.VerifyForced([new TreeInput(0, 5, Tree)], [[11]])[0];
        Assert.Equal(11, step.Tokens[0]);
        // after a, the target's own choice: the same as verifying a's subtree greedily after feeding 5 and 11
        plain.VerifyForced([new TreeInput(0, 5, DraftTree.Empty)], [[11]]);
        int next = plain.VerifyGreedy([new TreeInput(0, 11, DraftTree.Empty)])[0].Bonus;
        Assert.Equal(next, step.Tokens[1]);
        Assert.Equal(next == 12 ? new[] { 0, 1 } : new[] { 0 }, step.AcceptedNodes[..Math.Min(step.AcceptedNodes.Length, 2)]);
    }
}
