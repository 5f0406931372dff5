using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// Packed prefill (<see cref="PackedPrefillPlan"/>): every sequence's next chunk end to end in one forward, attention per
/// sequence causal and aligned at the bottom right, which is what libtorch's variable-length flash attention computes on
/// a GPU. On the CPU the script's reference attention stands in for flash (<see cref="PrefillAttention.Packed"/>), so
/// these tests hold the packing, the cache rows and the scheduling to the masked path's caches and logits; the flash
/// kernel itself is checked against the same reference on the GPU (TreeBench <c>prefill-attention</c>, and the probe at
/// load).
/// </summary>
public sealed class PackedPrefillTests
{
    private const double Float32Tolerance = 5e-6; // as CausalPrefillTests: a few float32 roundings

    public static TheoryData<string, string, int> Cases()
    {
        var data = new TheoryData<string, string, int>();
        foreach (string fixture in new[] { "llama-gqa", "qwen2-tied" })
        {
            foreach (string scenario in new[] { "short", "long", "batch", "uneven", "continued" })
            {
                data.Add(fixture, scenario, 8192); // every sequence's prompt in one forward
                data.Add(fixture, scenario, 7);    // forwards of 7 tokens: prompts cut across forwards, and sequences sharing one
            }
            data.Add(fixture, "batch", 1); // one token per forward
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PackedPrefillCachesAndLogitsEqualTheMaskedPath(string fixture, string scenario, int budget)
    {
        string folder = SharedFixtures.TinyCheckpoint(fixture);
        // blocks of 16: the 37-token prompt spans three, so rows are read and written through the block table
        (float[][] referenceCaches, float[] referenceLogits) = CausalPrefillTests.Run(folder, scenario, scripted: true, chunk: 5, causalChunk: 0,
            prefill: PrefillAttention.Masked, kvBlock: 16);
        (float[][] caches, float[] logits) = CausalPrefillTests.Run(folder, scenario, scripted: true, chunk: 512, causalChunk: budget,
            prefill: PrefillAttention.Packed, kvBlock: 16);
        for (int i = 0; i < caches.Length; i++)
        {
            CausalPrefillTests.AssertClose(referenceCaches[i], caches[i], Float32Tolerance, $"{fixture} {scenario}: cache of sequence {i}");
        }
        CausalPrefillTests.AssertClose(referenceLogits, logits, Float32Tolerance, $"{fixture} {scenario}: logits after prefill");
    }

    [Fact]
    public void PackedPrefillInBFloat16StaysWithinTheHalfPrecisionTolerance()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        (float[][] referenceCaches, float[] referenceLogits) = CausalPrefillTests.Run(folder, "continued", true, 5, 0, ScalarType.BFloat16, PrefillAttention.Masked, 16);
        (float[][] caches, float[] logits) = CausalPrefillTests.Run(folder, "continued", true, 512, 7, ScalarType.BFloat16, PrefillAttention.Packed, 16);
        CausalPrefillTests.AssertClose(referenceCaches[0], caches[0], 2e-2, "bfloat16 cache");
        CausalPrefillTests.AssertClose(referenceLogits, logits, 2e-2, "bfloat16 logits");
    }

    [Theory]
    [InlineData(new[] { 10, 4 }, 8192, "0:0+10,1:0+4")]
    [InlineData(new[] { 10, 4 }, 7, "0:0+7|0:7+3,1:0+4")]              // cut where the budget ends, continued first
    [InlineData(new[] { 3, 0, 5 }, 4, "0:0+3,2:0+1|2:1+4")]            // an empty prompt takes no piece
    [InlineData(new[] { 8 }, 4, "0:0+4|0:4+4")]                        // exactly full forwards: no empty one after
    [InlineData(new int[0], 4, "")]
    public void TheScheduleFillsEachForwardToTheBudgetInPromptOrder(int[] lengths, int budget, string expected)
    {
        List<List<(int Sequence, int Start, int Count)>> forwards = PackedPrefillPlan.Schedule(lengths, budget);
        string actual = string.Join("|", forwards.Select(f => string.Join(",", f.Select(p => $"{p.Sequence}:{p.Start}+{p.Count}"))));
        Assert.Equal(expected, actual);
        Assert.All(forwards, f => Assert.InRange(f.Sum(p => p.Count), 1, budget));
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedPrefillPlan.Schedule(lengths, 0));
    }

    [Fact]
    public void APlanPacksRowsAndKeysWithoutPaddingThroughTheBlockTables()
    {
        ModelConfig config = ModelConfig.Load(SharedFixtures.TinyCheckpoint("llama-gqa"));
        using var cache = new KvCache(config, slots: 3, capacity: 64, blockSize: 16, blockCount: 12, prefixCaching: false, ScalarType.Float32, CPU);
        cache.Reserve(2, 10); // slot 2 takes the first blocks, so slot 1's rows are not its positions
        cache.Reserve(1, 25);
        cache.AppendUnknown(1, 20); // slot 1 caches 20 tokens; its chunk of 5 follows
        cache.Reserve(0, 3);
        PackedPrefillPlan plan = PackedPrefillPlan.For([(1, new[] { 7, 8, 9, 10, 11 }), (0, new[] { 4, 5, 6 })], cache);
        Assert.Equal((8, 20 + 5 + 3, 2, 5, 25), (plan.Rows, plan.Keys, plan.Sequences, plan.MaxRows, plan.MaxKeys));
        long[] p = plan.Packed;
        Assert.Equal([7L, 8, 9, 10, 11, 4, 5, 6], p[..8]);                   // tokens
        Assert.Equal([20L, 21, 22, 23, 24, 0, 1, 2], p[8..16]);              // positions
        long[] writes = [.. Enumerable.Range(20, 5).Select(q => cache.Row(1, q)), .. Enumerable.Range(0, 3).Select(q => cache.Row(0, q))];
        Assert.Equal(writes, p[16..24]);
        long[] reads = [.. Enumerable.Range(0, 25).Select(q => cache.Row(1, q)), .. Enumerable.Range(0, 3).Select(q => cache.Row(0, q))];
        Assert.Equal(reads, p[24..(24 + 28)]);
        Assert.NotEqual(20L, cache.Row(1, 20)); // slot 1's blocks are not the first: the rows really come from its table
        Assert.Equal([0L, 5, 8, 0, 25, 28], p[plan.StartsOffset..]);        // row starts, key starts
        Assert.Throws<ArgumentException>(() => PackedPrefillPlan.For([(0, new[] { 1 }), (0, new[] { 2 })], cache));
        Assert.Throws<ArgumentException>(() => PackedPrefillPlan.For([(0, Array.Empty<int>())], cache));
    }

    [Fact]
    public void OnTheCpuPrefillTakesMaskedChunks_FlashIsRefused_AndEagerLayersCannotPack()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        using (TargetModel auto = TargetModel.Load(folder, new TargetModelOptions { Device = CPU }))
        {
            Assert.Contains("prefill: masked chunks (flash attention needs a CUDA device)", auto.StepPaths, StringComparison.Ordinal);
        }
        using (TargetModel packed = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, PrefillAttention = PrefillAttention.Packed }))
        {
            Assert.Contains("prefill: packed chunks", packed.StepPaths, StringComparison.Ordinal);
        }
        using (TargetModel eager = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, ScriptedLayers = false, PrefillAttention = PrefillAttention.Packed }))
        {
            Assert.Contains("prefill: masked chunks (packed prefill needs the scripted layers)", eager.StepPaths, StringComparison.Ordinal);
        }
        var e = Assert.Throws<NotSupportedException>(() => TargetModel.Load(folder, new TargetModelOptions { Device = CPU, DType = ScalarType.BFloat16, PrefillAttention = PrefillAttention.Flash }));
        Assert.Contains("needs a CUDA device", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "Auto")]
    [InlineData("", "Auto")]
    [InlineData("masked", "Masked")]
    [InlineData("FLASH", "Flash")]
    [InlineData("packed", "Packed")]
    public void TheEnvironmentOverrideNamesAPath(string? value, string expected) =>
        Assert.Equal(expected, TargetModel.PrefillOverride(value).ToString());

    [Theory]
    [InlineData("fast")]
    [InlineData("1")] // Enum.TryParse takes numbers; the override does not
    public void AnUnknownEnvironmentOverrideIsRefusedWithTheNames(string value) =>
        Assert.Contains("use auto, masked, packed or flash", Assert.Throws<ArgumentException>(() => TargetModel.PrefillOverride(value)).Message, StringComparison.Ordinal);

    [Fact]
    public void TheFlashProbeReportsWhyItCannotRun_InsteadOfThrowing()
    {
        // libtorch has no CPU kernel for aten::_flash_attention_forward: the probe's call fails and says so
        ModelConfig config = ModelConfig.Load(SharedFixtures.TinyCheckpoint("llama-gqa"));
        using var weights = new CausalLMWeights(config, ScalarType.Float32, CPU); // the probe reads only the shape
        ScriptedDecoder scripted = ScriptedDecoder.TryCreate(config, weights, 8192)!;
        string? why = scripted.ProbeFlash(CPU, ScalarType.BFloat16);
        Assert.NotNull(why);
        Assert.StartsWith("its probe failed", why, StringComparison.Ordinal);
    }
}
