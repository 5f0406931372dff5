namespace SpecDecode.Tree.Tests.Parallel;

/// <summary>The command stream and the coordinator's decisions survive their encoding, and a stream out of step is
/// refused instead of replayed.</summary>
public sealed class RankCommandTests
{
    [Fact]
    public void VerifyCommandsCarryEveryTree()
    {
        TreeInput[] inputs =
        [
            new TreeInput(3, 17, DraftTree.Create([5, 6, 7, 8], [-1, 0, 0, 2], [0.5f, 0.4f, 0.3f, 0.2f])),
            new TreeInput(0, 2, DraftTree.Empty),
            new TreeInput(1, 999, DraftTree.Chain([4, 4, 4])),
        ];
        long[] command = RankCommand.Verify(inputs);
        Assert.Equal(RankCommandKind.Verify, RankCommand.KindOf(command));
        TreeInput[] decoded = RankCommand.ReadInputs(command);
        Assert.Equal(inputs.Length, decoded.Length);
        for (int i = 0; i < inputs.Length; i++)
        {
            Assert.Equal((inputs[i].Slot, inputs[i].Root), (decoded[i].Slot, decoded[i].Root));
            Assert.Equal(inputs[i].Draft.Tokens.ToArray(), decoded[i].Draft.Tokens.ToArray());
            Assert.Equal(inputs[i].Draft.Parents.ToArray(), decoded[i].Draft.Parents.ToArray());
        }
        Assert.Equal(RankCommandKind.TreeLogits, RankCommand.KindOf(RankCommand.Verify(inputs, RankCommandKind.TreeLogits)));
    }

    [Fact]
    public void StreamsOutOfStepAreRefused()
    {
        Assert.Throws<TensorParallelException>(() => RankCommand.KindOf([]));
        Assert.Throws<TensorParallelException>(() => RankCommand.KindOf([42, 1, 2]));
        long[] truncated = RankCommand.Verify([new TreeInput(0, 1, DraftTree.Chain([2, 3]))])[..^1];
        Assert.Contains("out of step", Assert.Throws<TensorParallelException>(() => RankCommand.ReadInputs(truncated)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DecisionsRoundTripAndMustFitTheInputs()
    {
        TreeInput[] inputs = [new TreeInput(2, 1, DraftTree.Create([5, 6, 7], [-1, -1, 1], [])), new TreeInput(0, 1, DraftTree.Empty)];
        VerifiedStep[] steps = [new VerifiedStep(2, [1, 2], [6, 7, 40]), new VerifiedStep(0, [], [13])];
        VerifiedStep[] decoded = TensorParallelBackend.DecodeDecision(TensorParallelBackend.EncodeDecision(steps), inputs);
        for (int i = 0; i < steps.Length; i++)
        {
            Assert.Equal(steps[i].Slot, decoded[i].Slot);
            Assert.Equal(steps[i].AcceptedNodes, decoded[i].AcceptedNodes);
            Assert.Equal(steps[i].Tokens, decoded[i].Tokens);
        }
        // a decision for other inputs (more accepted nodes than the tree has, or numbers left over)
        Assert.Throws<TensorParallelException>(() => TensorParallelBackend.DecodeDecision(TensorParallelBackend.EncodeDecision([steps[0], steps[0]]), inputs));
        Assert.Throws<TensorParallelException>(() => TensorParallelBackend.DecodeDecision([.. TensorParallelBackend.EncodeDecision(steps), 0], inputs));
    }
}
