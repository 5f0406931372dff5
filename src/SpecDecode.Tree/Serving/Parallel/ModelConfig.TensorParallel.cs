namespace SpecDecode.Tree;

public sealed partial class ModelConfig
{
    /// <summary>
    /// The shape one rank of a tensor-parallel model computes (docs/tensor-parallel.md): this configuration with
    /// <paramref name="heads"/> query heads, <paramref name="keyValueHeads"/> key/value heads and an MLP of
    /// <paramref name="intermediate"/> columns, everything else unchanged. The rank's output head is a vocabulary shard
    /// that the rank holds apart from the decoder's weights, so the rank's configuration says
    /// <see cref="TieWordEmbeddings"/> (its weights then carry no <c>lm_head</c> of the whole vocabulary).
    /// </summary>
    internal ModelConfig ForTensorParallelRank(int heads, int keyValueHeads, int intermediate) => new()
    {
        Architecture = Architecture,
        HiddenSize = HiddenSize,
        IntermediateSize = intermediate,
        LayerCount = LayerCount,
        HeadCount = heads,
        KeyValueHeadCount = keyValueHeads,
        HeadDim = HeadDim,
        VocabSize = VocabSize,
        MaxPositionEmbeddings = MaxPositionEmbeddings,
        RmsNormEps = RmsNormEps,
        RopeTheta = RopeTheta,
        Rope = Rope,
        RopeFactor = RopeFactor,
        RopeLowFreqFactor = RopeLowFreqFactor,
        RopeHighFreqFactor = RopeHighFreqFactor,
        RopeOriginalMaxPositions = RopeOriginalMaxPositions,
        TieWordEmbeddings = true,
        QkvBias = QkvBias,
        OutputBias = OutputBias,
        MlpBias = MlpBias,
        QkNorm = QkNorm,
        DType = DType,
        BosTokenId = BosTokenId,
        EosTokenIds = EosTokenIds,
    };
}
