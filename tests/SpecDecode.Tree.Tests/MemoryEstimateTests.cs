using System.Text;

namespace SpecDecode.Tree.Tests;

/// <summary>The memory plan of issue 6's goal: batch 8 × 32k context with a bf16 cache beside Llama-3.1-8B's weights.</summary>
public sealed class MemoryEstimateTests
{
    private static ModelConfig Llama31_8B() => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes("""
        {
          "architectures": ["LlamaForCausalLM"], "model_type": "llama",
          "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
          "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
          "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
          "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "hidden_act": "silu", "tie_word_embeddings": false, "torch_dtype": "bfloat16"
        }
        """)), "llama-3.1-8b");

    [Fact]
    public void Llama31_8B_Batch8_32k_FitsAnH100_AndTheFiguresAreTheShapesProducts()
    {
        MemoryEstimate m = MemoryEstimate.For(Llama31_8B(), new TargetModelOptions { MaxBatch = 8, MaxContext = 32768, CudaGraphs = false });
        Assert.Equal(8_030_261_248L * 2, m.WeightBytes);                 // the parameter count ModelShapeTests checks
        Assert.Equal(32L * 2 * 8 * 128 * 2, m.KvBytesPerToken);         // 131,072 B per token
        Assert.Equal(64, m.KvBlockSize);
        Assert.Equal(m.KvBytesPerToken * (8 * 32768 + 64), m.KvCacheBytes); // 34.4 GB: 4,096 blocks of 64 tokens and the scratch block
        Assert.Equal(8 * 32768, m.KvTokens);
        const long h100 = 78L * 1024 * 1024 * 1024;                      // what the H100 here offers (about 78 GiB)
        Assert.True(m.TotalBytes < h100, $"{m.TotalBytes / 1e9:F1} GB");
        Assert.Equal(15, m.MaxSequences(h100, 32768));                   // (83.75 - 16.06) GB / 4.295 GB per 32k sequence = 15.8
        // the pool in tokens: whole blocks, the scratch block aside; sequences of real lengths share it block by block
        long tokens = m.KvTokensFor(h100);
        Assert.Equal(0, tokens % 64);
        Assert.InRange(tokens, 15 * 32768, 16 * 32768);                  // 516k tokens
        Assert.Equal(7, m.SequencesFitting([50_000, 50_000, 50_000, 50_000, 50_000, 10, 1])); // 5 × 782 blocks + 1 + 1 of 4,096
        Assert.Equal(8, m.SequencesFitting(Enumerable.Repeat(32768, 9)));
        Assert.Equal(0, m.MaxSequences(m.WeightBytes, 10));
        Assert.Equal(0, m.KernelBufferBytes);                            // no CUDA graphs: no kernel steps
        // graphs are automatic by default, so the estimate counts the kernel buffers a GPU would take
        Assert.InRange(MemoryEstimate.For(Llama31_8B(), new TargetModelOptions { MaxBatch = 8, MaxContext = 32768 }).KernelBufferBytes, 274_000_000, 276_000_000);
    }

    /// <summary>With CUDA graphs the decode-step and tree-step kernels' buffers count too, as their sizes follow from the
    /// shapes: the decode step's vectors, logits and per-chunk partials; the tree step's 512 rows (wide steps) of
    /// activations, inputs (64 sequences' results) and logits, the wide products' bf16 outputs (up: 14,336 wide), the work
    /// buffer (the largest product's split sums, gate/up in 8 splits on a GPU of unknown size; on an H100's 132
    /// multiprocessors o and down take 8 and gate/up one, less than a wide step's q/k/v plane of 512 rows) and 32 chunks of
    /// 64 rows of attention partials.</summary>
    [Fact]
    public void Llama31_8B_WithCudaGraphs_CountsTheKernelBuffers()
    {
        ModelConfig c = Llama31_8B();
        var options = new TargetModelOptions { MaxBatch = 8, MaxContext = 32768, CudaGraphs = true };
        long decode = (2L * 4096 + 2 * 4096 + 14336 + 128256) * 2 + 257L * (4096 + 64) * 4 + 9 * 4 + 8;
        long rows = 512L * (2 * 4096 + 2 * 4096 + 14336) * 2, partials = 32L * 64 * (4096 + 64) * 4;
        long inputs = (512 + 64 * (2 + 2 * 64) + (2 + 6 * 512 + 4 * 64)) * 8L; // argmax, 64 sequences' results, the step's inputs
        long wide = 512L * 14336 * 2 + 512L * 128256 * 2;                     // wide products, logits
        Assert.Equal(decode + rows + 8L * 64 * 28672 * 4 + wide + partials + inputs, MemoryEstimate.For(c, options).KernelBufferBytes);
        long h100 = MemoryEstimate.KernelBuffers(c, 32768, treeKernels: true, 132);
        Assert.Equal(decode + rows + 512L * 6144 * 4 + wide + partials + inputs, h100);
        Assert.InRange(h100, 228_000_000, 230_000_000);

        MemoryEstimate m = MemoryEstimate.For(c, options);
        Assert.Equal(m.WeightBytes + m.KvCacheBytes + m.KernelBufferBytes, m.TotalBytes);
        long justFifteen = m.WeightBytes + m.KernelBufferBytes + (15 * 32768 + 64) * m.KvBytesPerToken;
        Assert.Equal(15, m.MaxSequences(justFifteen, 32768));
        Assert.Equal(14, m.MaxSequences(justFifteen - 1, 32768));         // the kernel buffers and the scratch block are not free for the cache
        Assert.Equal(0, MemoryEstimate.For(c, new TargetModelOptions { MaxBatch = 8, MaxContext = 32768, CudaGraphs = true, DecodeKernels = false }).KernelBufferBytes);
    }
}
