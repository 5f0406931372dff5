using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The causal prefill path (an empty slot's first chunk with plain causal attention and no mask) against the masked
/// path it replaces (<see cref="TargetModelOptions.CausalPrefillChunk"/> = 0): the same cached keys and values and the
/// same logits of the verification forward that follows, in float32 on the CPU, scripted and eager.
/// </summary>
public sealed class CausalPrefillTests
{
    /// <summary>Largest |ours − reference| over the largest |reference| allowed in float32: the two paths differ only in
    /// how attention and the matrix products are blocked, so they agree to a few float32 roundings (≤ 1e-6 seen).</summary>
    private const double Float32Tolerance = 5e-6;

    /// <summary>The masked path, in small chunks: what every prefill did before the causal path.</summary>
    private const int ReferenceChunk = 5;

    private static int[] Ids(string folder, string field)
    {
        using var expected = SharedFixtures.Expected(folder);
        return SharedFixtures.Ids(expected, field).Select(i => (int)i).ToArray();
    }

    /// <summary>
    /// The scenarios: named prefill calls (each a list of slot and tokens, run one after another on a fresh model),
    /// then one verification forward of each slot's root and a chain of the next prompt tokens.
    /// </summary>
    internal static ((int Slot, int[] Tokens)[][] Calls, TreeInput[] Next) Scenario(string name, string folder)
    {
        int[] prompt = Ids(folder, "prompt_ids"); // 37 tokens
        int[] second = Ids(folder, "second_prompt_ids"); // 23 tokens
        return name switch
        {
            // Shorter than any chunk: one forward either way.
            "short" => ([[(0, prompt[..10])]], [new TreeInput(0, prompt[10], DraftTree.Chain(prompt[11..14]))]),
            // The whole prompt but its last token.
            "long" => ([[(0, prompt[..^1])]], [new TreeInput(0, prompt[^1], DraftTree.Empty)]),
            // Two prompts of different lengths in the same forwards (the shorter one padded), in slots 2 and 0 (a causal
            // forward has rows for these two only, in this order).
            "batch" => ([[(2, prompt[..^4]), (0, second[..^1])]],
                [new TreeInput(2, prompt[^4], DraftTree.Chain(prompt[^3..])), new TreeInput(0, second[^1], DraftTree.Empty)]),
            // Lengths 36 and 3: the causal chunks go in two forwards (padding 3 to 36 would be mostly waste).
            "uneven" => ([[(1, prompt[..^1]), (3, second[..3])]],
                [new TreeInput(1, prompt[^1], DraftTree.Empty), new TreeInput(3, second[3], DraftTree.Chain(second[4..8]))]),
            // A prefill that continues cached tokens (slot 0), beside a fresh slot (1) in the same call.
            "continued" => ([[(0, prompt[..12])], [(0, prompt[12..30]), (1, second[..^1])]],
                [new TreeInput(0, prompt[30], DraftTree.Chain(prompt[31..])), new TreeInput(1, second[^1], DraftTree.Empty)]),
            _ => throw new ArgumentException(name),
        };
    }

    internal static (float[][] Caches, float[] Logits) Run(string folder, string scenario, bool scripted, int chunk, int causalChunk,
        ScalarType dtype = ScalarType.Float32, PrefillAttention prefill = PrefillAttention.Auto, int kvBlock = 64)
    {
        using TargetModel model = TargetModel.Load(folder, new TargetModelOptions
        {
            Device = CPU, DType = dtype, MaxBatch = 4, MaxContext = 64, PrefillChunk = chunk, CausalPrefillChunk = causalChunk,
            ScriptedLayers = scripted, PrefillAttention = prefill, KvBlockSize = kvBlock,
        });
        Assert.Equal(scripted, model.UsesScriptedLayers);
        ((int Slot, int[] Tokens)[][] calls, TreeInput[] next) = Scenario(scenario, folder);
        foreach ((int Slot, int[] Tokens)[] call in calls)
        {
            model.Prefill(call);
        }
        float[][] caches = next.Select(n =>
        {
            int expected = calls.SelectMany(c => c).Where(c => c.Slot == n.Slot).Sum(c => c.Tokens.Length);
            Assert.Equal(expected, model.CachedLength(n.Slot));
            using Tensor kv = model.CachedKeysAndValues(n.Slot);
            return kv.data<float>().ToArray();
        }).ToArray();
        using Tensor logits = model.TreeLogits(next);
        return (caches, logits.data<float>().ToArray());
    }

    internal static void AssertClose(float[] reference, float[] ours, double tolerance, string what)
    {
        Assert.Equal(reference.Length, ours.Length);
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < reference.Length; i++)
        {
            Assert.False(float.IsNaN(ours[i]), $"{what}: NaN at {i}");
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - reference[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs(reference[i]));
        }
        Assert.True(maxDiff <= tolerance * maxAbs, $"{what}: relative difference {maxDiff / maxAbs:E2} (tolerance {tolerance:E0})");
    }

    public static TheoryData<string, string, bool, int, int> Cases()
    {
        var data = new TheoryData<string, string, bool, int, int>();
        foreach (string fixture in new[] { "llama-gqa", "qwen2-tied" })
        {
            foreach (bool scripted in new[] { true, false })
            {
                foreach (string scenario in new[] { "short", "long", "batch", "uneven", "continued" })
                {
                    data.Add(fixture, scenario, scripted, 512, 8192); // the defaults: every empty slot's prompt in one causal forward
                    data.Add(fixture, scenario, scripted, 5, 8); // a causal first chunk of 8, then masked chunks of 5
                }
                data.Add(fixture, "long", scripted, 512, 1); // a one-token causal chunk
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CausalPrefillCachesAndLogitsEqualTheMaskedPath(string fixture, string scenario, bool scripted, int chunk, int causalChunk)
    {
        string folder = SharedFixtures.TinyCheckpoint(fixture);
        (float[][] referenceCaches, float[] referenceLogits) = Run(folder, scenario, scripted, ReferenceChunk, causalChunk: 0);
        (float[][] caches, float[] logits) = Run(folder, scenario, scripted, chunk, causalChunk);
        for (int i = 0; i < caches.Length; i++)
        {
            AssertClose(referenceCaches[i], caches[i], Float32Tolerance, $"{fixture} {scenario}: cache of sequence {i}");
        }
        AssertClose(referenceLogits, logits, Float32Tolerance, $"{fixture} {scenario}: logits after prefill");
    }

    [Theory]
    [InlineData("llama-gqa", true)]
    [InlineData("llama-gqa", false)]
    public void CausalPrefillInBFloat16StaysWithinTheHalfPrecisionTolerance(string fixture, bool scripted)
    {
        string folder = SharedFixtures.TinyCheckpoint(fixture);
        (float[][] referenceCaches, float[] referenceLogits) = Run(folder, "batch", scripted, ReferenceChunk, causalChunk: 0, ScalarType.BFloat16);
        (float[][] caches, float[] logits) = Run(folder, "batch", scripted, 512, 8192, ScalarType.BFloat16);
        AssertClose(referenceCaches[0], caches[0], 2e-2, fixture + " bfloat16 cache");
        AssertClose(referenceLogits, logits, 2e-2, fixture + " bfloat16 logits");
    }

    [Fact]
    public void ACausalPlanHasRowsForItsSequencesOnlyAndRefusesACachedSlot()
    {
        (int, ReadOnlyMemory<int>)[] chunks = [(3, new[] { 1, 2 }), (1, new[] { 3 })];
        StepPlan plan = StepPlan.ForCausalChunks(chunks, [0, 0, 0, 0], capacity: 8);
        Assert.True(plan.Causal);
        Assert.Equal((2, 2, 2), (plan.Batch, plan.Width, plan.KeyCount));
        Assert.Equal([3L, 1L], plan.Packed[^2..]); // the rows' slots
        StepPlan masked = StepPlan.ForChunks(chunks, [0, 4, 0, 0], capacity: 8);
        Assert.False(masked.Causal);
        Assert.Equal(4, masked.Batch); // row = slot
        Assert.Throws<InvalidOperationException>(() => StepPlan.ForCausalChunks(chunks, [0, 4, 0, 0], capacity: 8));
    }

    [Theory]
    [InlineData(new[] { 36, 22 }, 8192, "0,1")] // similar lengths share a forward
    [InlineData(new[] { 36, 3 }, 8192, "0|1")] // 3 padded to 36 would be mostly waste
    [InlineData(new[] { 3, 36, 20, 18, 17 }, 8192, "1,2,3|4|0")] // longest first; 17 < 36 / 2 and 3 < 17 / 2 start new forwards
    [InlineData(new[] { 8, 8, 8, 8, 8 }, 16, "0,1|2,3|4")] // at most 16 rows × width per forward
    [InlineData(new[] { 16 }, 16, "0")]
    public void CausalChunksAreGroupedByLengthWithinTheRowBudget(int[] lengths, int maxRows, string expected)
    {
        List<List<int>> groups = TargetModel.CausalGroups(lengths, maxRows);
        Assert.Equal(expected, string.Join('|', groups.Select(g => string.Join(',', g))));
    }

    [Fact]
    public void ANegativeCausalChunkIsRefused()
    {
        string folder = SharedFixtures.TinyCheckpoint("llama-gqa");
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => TargetModel.Load(folder, new TargetModelOptions { Device = CPU, CausalPrefillChunk = -1 }));
        Assert.Equal(nameof(TargetModelOptions.CausalPrefillChunk), e.ParamName);
    }
}
