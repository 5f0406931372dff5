using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The products of a wide tree step (<see cref="KernelTreeStep"/> past its kernels' 64 rows): cuBLAS through libtorch, in
/// place into the step's buffers, so that a captured step allocates nothing that outlives it, in bf16 as the reference
/// path's linear layers compute them. The kernels' epilogues (<c>tree_finish</c>) read float32 sums, here one split; they
/// round each sum to bf16 first, so a bf16 product reaches them as the kernels' own products would, up to summation
/// order. Gate and up finish here as the reference path computes them: silu(gate) · up in bf16.
/// </summary>
/// <remarks>Why libtorch and not more kernel products: the kernels' accumulators for 128 output rows of 64 input rows
/// already take 64 float registers a thread; a product of hundreds of rows is a GEMM, which cuBLAS runs near its bound,
/// while passes of 64 rows would read the weights once per pass (docs/target-model.md, steps of more than 64 rows).</remarks>
internal static class WideProducts
{
    /// <summary>The first rows × cols elements of a flat buffer as a [rows, cols] view.</summary>
    public static Tensor RowsOf(Tensor buffer, int rows, long cols) => buffer.narrow(0, 0, rows * cols).view(rows, cols);

    /// <summary>output = x · weightᵀ, written in place (output may be a column slice of a wider row-major buffer).</summary>
    public static void Linear(Tensor output, Tensor x, Tensor weight) => output.addmm_(x, weight.t(), beta: 0, alpha: 1);

    /// <summary>q | k | v of rows <paramref name="x"/> into <paramref name="product"/> ([rows, q + 2 kv], the layout
    /// <c>tree_finish_qkv</c> reads), then into the float32 <paramref name="work"/> plane of the same shape; returns the
    /// splits (1).</summary>
    public static int Qkv(Tensor x, Tensor product, Tensor work, Tensor q, Tensor k, Tensor v)
    {
        long qRows = q.shape[0], kvRows = k.shape[0];
        Linear(product.narrow(1, 0, qRows), x, q);
        Linear(product.narrow(1, qRows, kvRows), x, k);
        Linear(product.narrow(1, qRows + kvRows, kvRows), x, v);
        work.copy_(product);
        return 1;
    }

    /// <summary>x · weightᵀ into <paramref name="product"/>, then into the float32 <paramref name="work"/> plane (for
    /// <c>tree_finish_rows</c>: the residual add and the next norm); returns the splits (1).</summary>
    public static int Plain(Tensor x, Tensor product, Tensor work, Tensor weight)
    {
        Linear(product, x, weight);
        work.copy_(product);
        return 1;
    }

    /// <summary>silu(x · gateᵀ) · (x · upᵀ) into <paramref name="act"/>, with <paramref name="scratch"/> (the same shape)
    /// holding up.</summary>
    public static void GateUp(Tensor x, Tensor act, Tensor scratch, Tensor gate, Tensor up)
    {
        Linear(act, x, gate);
        Linear(scratch, x, up);
        nn.functional.silu(act, inplace: true).mul_(scratch);
    }

    /// <summary>The logits x · headᵀ into <paramref name="logits"/>, and each row's argmax (the lowest index among equal
    /// maxima, as the kernels' head takes it) into <paramref name="packed"/> as <c>tree_accept</c> reads it: 0xFFFFFFFF −
    /// index in the low 32 bits (<see cref="KernelDecodeStep.Unpack"/>).</summary>
    public static void HeadArgmax(Tensor x, Tensor logits, Tensor packed, Tensor head)
    {
        Linear(logits, x, head);
        packed.copy_(logits.argmax(1).neg_().add_(uint.MaxValue));
    }
}
