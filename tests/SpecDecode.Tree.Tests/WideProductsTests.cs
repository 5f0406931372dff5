using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The libtorch half of a wide tree step (<see cref="WideProducts"/>): products written in place into slices of flat
/// buffers, laid out as the kernels' epilogues read them, and the head's argmax packed as <c>tree_accept</c> reads it.
/// The kernels between them run only on a GPU (TreeBench batch-kernels checks whole wide steps against the usual path).
/// </summary>
public sealed class WideProductsTests
{
    private static Tensor Random(Generator g, params long[] shape) => randn(shape, generator: g);

    [Theory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.BFloat16, 1e-2)]
    public void QkvLandsAsQThenKThenVPerRowInBothBuffers(ScalarType type, double tolerance)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        int rows = 5, hidden = 16;
        Tensor x = Random(g, rows, hidden).to(type), q = Random(g, 8, hidden).to(type), k = Random(g, 4, hidden).to(type), v = Random(g, 4, hidden).to(type);
        // flat buffers larger than the step, as the step's are (sized for 512 rows)
        Tensor productBuffer = full(100 * 16, float.NaN).to(type), workBuffer = full(100 * 16, float.NaN);
        Tensor product = WideProducts.RowsOf(productBuffer, rows, 16), work = WideProducts.RowsOf(workBuffer, rows, 16);

        Assert.Equal(1, WideProducts.Qkv(x, product, work, q, k, v));

        Tensor expected = cat([nn.functional.linear(x, q), nn.functional.linear(x, k), nn.functional.linear(x, v)], 1).to(float32);
        Assert.True(product.to(float32).allclose(expected, rtol: tolerance, atol: tolerance), "q | k | v per row");
        Assert.True(work.eq(product.to(float32)).all().item<bool>(), "the float32 plane holds the product exactly");
        Assert.True(workBuffer.narrow(0, rows * 16, 16).isnan().all().item<bool>(), "nothing written past the step's rows");
    }

    [Fact]
    public void PlainAndGateUpAreTheReferenceLayers()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        int rows = 3, hidden = 8, mlp = 12;
        Tensor x = Random(g, rows, hidden), o = Random(g, hidden, hidden), gate = Random(g, mlp, hidden), up = Random(g, mlp, hidden);
        Tensor product = zeros(rows, hidden), work = zeros(rows, hidden);
        WideProducts.Plain(x, product, work, o);
        Assert.True(work.allclose(nn.functional.linear(x, o), rtol: 1e-5, atol: 1e-5));

        Tensor act = WideProducts.RowsOf(zeros(64 * mlp), rows, mlp), scratch = zeros(rows, mlp);
        WideProducts.GateUp(x, act, scratch, gate, up);
        Tensor expected = nn.functional.silu(nn.functional.linear(x, gate)) * nn.functional.linear(x, up);
        Assert.True(act.allclose(expected, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void TheHeadsArgmaxIsPackedAsTheKernelsReadItTheLowestIndexAmongEquals()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        int rows = 4, hidden = 8, vocab = 50;
        Tensor raw = Random(g, vocab, hidden);
        Tensor head = raw / raw.norm(1, keepdim: true);   // unit rows: x = c · head[5] scores highest at 5 (and its copy)
        head[17] = head[5].clone();    // rows 5 and 17 of the head equal: a tie wherever 5 is the maximum
        Tensor x = Random(g, rows, hidden);
        x[2] = head[5].clone() * 10;   // row 2's maximum is at 5 and 17
        Tensor logits = zeros(rows, vocab), packed = zeros(new long[] { rows }, ScalarType.Int64);

        WideProducts.HeadArgmax(x, logits, packed, head);

        long[] values = packed.data<long>().ToArray();
        long[] expected = nn.functional.linear(x, head).argmax(1).data<long>().ToArray();
        Assert.Equal(expected.Select(e => (int)e), values.Select(KernelDecodeStep.Unpack));
        Assert.Equal(5, KernelDecodeStep.Unpack(values[2]));
        Assert.True(logits.allclose(nn.functional.linear(x, head), rtol: 1e-5, atol: 1e-5));
    }
}
