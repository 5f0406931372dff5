using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace SpecDecode.Tree.Tests;

/// <summary>
/// The decode-step kernels (<see cref="DecodeKernels"/>, src/SpecDecode.Tree/Kernels): what a CPU machine can check.
/// The kernels themselves run only on a GPU (TreeBench decode-graphs, bench/RESULTS.md); here: the embedded fatbin is
/// there and was built from the current source, the host's argument structs lay out as decode_step.cu's, the kernel
/// names match, the model rules, the packed argmax, the tensor pointers the launches take, and the fallback on the CPU.
/// </summary>
public sealed partial class DecodeKernelsTests
{
    private static string KernelFolder => Path.Combine(SharedFixtures.RepoRoot, "src", "SpecDecode.Tree", "Kernels");

    /// <summary>The kernels' sources: decode_step.cu and the tree step it includes (one translation unit).</summary>
    private static readonly string[] SourceFiles = ["decode_step.cu", "tree_step.cuh"];

    private static string Source => string.Concat(SourceFiles.Select(f => File.ReadAllText(Path.Combine(KernelFolder, f))));

    [Fact]
    public void EmbeddedFatbinIsACudaFatBinary()
    {
        byte[]? image = DecodeKernels.Image(out string source);
        Assert.True(image is not null, "no kernel image: " + source);
        Assert.Equal(0xBA55ED50u, BitConverter.ToUInt32(image!, 0)); // the CUDA fat binary magic
        Assert.True(image!.Length > 10_000, $"kernel image of {image.Length} bytes");
    }

    /// <summary>build.sh records the SHA-256 of the sources it compiled. A source edited without rebuilding the fatbin
    /// (which needs nvcc on a CUDA machine) must never run: the build embeds the sources, and the loader refuses an
    /// embedded fatbin whose recorded hashes differ (<see cref="DecodeKernels.StaleReason"/>), so the plain steps take
    /// the captured libtorch step. This checks the guard against the files: stale exactly when a hash differs. (When the
    /// fatbin is stale, as after the paged-cache change until a GPU session rebuilds it, bench/RESULTS.md says so.)</summary>
    [Fact]
    public void AStaleFatbinIsRefused_AndOnlyAStaleOne()
    {
        // sha256sum's lines: "<hash>  <file>"
        Dictionary<string, string> recorded = File.ReadAllLines(Path.Combine(KernelFolder, "decode_step.cu.sha256"))
            .Where(line => line.Length > 0)
            .Select(line => line.Split(' ', 2, StringSplitOptions.TrimEntries))
            .ToDictionary(f => f[1], f => f[0]);
        bool fresh = SourceFiles.All(file =>
            recorded.GetValueOrDefault(file) == Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(KernelFolder, file)))));
        string? stale = DecodeKernels.StaleReason();
        Assert.Equal(fresh, stale is null);
        if (stale is not null)
        {
            Assert.Contains("build.sh", stale, StringComparison.Ordinal);
        }
        Assert.Equal(SourceFiles, DecodeKernels.SourceFiles);
    }

    [Fact]
    public void KernelNamesAreTheSourcesEntryPoints()
    {
        string[] declared = EntryPoint().Matches(Source).Select(m => m.Groups[1].Value).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(DecodeKernels.KernelNames.Order(StringComparer.Ordinal).ToArray(), declared);
    }

    /// <summary>The C# structs passed by value to cuLaunchKernel must have decode_step.cu's layout: each field's offset
    /// and the size, computed from the C declarations with the x86-64 rules (natural alignment).</summary>
    [Theory]
    [InlineData("GemvParams", typeof(GemvParams))]
    [InlineData("AttentionParams", typeof(AttentionParams))]
    [InlineData("TreeGemmParams", typeof(TreeGemmParams))]
    [InlineData("TreeFinishParams", typeof(TreeFinishParams))]
    [InlineData("TreeNormParams", typeof(TreeNormParams))]
    [InlineData("TreeAttentionParams", typeof(TreeAttentionParams))]
    [InlineData("TreeAcceptParams", typeof(TreeAcceptParams))]
    public void ArgumentStructsHaveTheCudaLayout(string name, Type managed)
    {
        Match body = Regex.Match(Source, "struct " + name + @"\s*\{(?<body>.*?)\};", RegexOptions.Singleline);
        Assert.True(body.Success, "struct " + name + " not found in the kernel sources");
        var sizes = new List<int>();
        foreach (string line in body.Groups["body"].Value.Split('\n'))
        {
            string code = line.Split("//")[0].Trim();
            if (code.Length == 0)
            {
                continue;
            }
            Match field = Regex.Match(code, @"^(?<type>[\w\s\*]+?)\s*(?<star>\*?)\s*(?<name>\w+);$");
            Assert.True(field.Success, "cannot read field: " + code);
            string type = field.Groups["type"].Value.Trim();
            bool pointer = field.Groups["star"].Value == "*" || type.EndsWith('*');
            sizes.Add(pointer ? 8 : type switch
            {
                "int" or "float" or "unsigned int" => 4,
                "int64_t" or "long long" => 8,
                _ => throw new InvalidOperationException("unknown field type " + type),
            });
        }
        var fields = managed.GetFields();
        Assert.Equal(sizes.Count, fields.Length);
        int offset = 0, align = 1;
        for (int i = 0; i < sizes.Count; i++)
        {
            offset = (offset + sizes[i] - 1) / sizes[i] * sizes[i];
            align = Math.Max(align, sizes[i]);
            Assert.True(offset == (int)Marshal.OffsetOf(managed, fields[i].Name), $"{name}.{fields[i].Name}: C offset {offset}, C# {Marshal.OffsetOf(managed, fields[i].Name)}");
            Assert.True(sizes[i] == Marshal.SizeOf(fields[i].FieldType), $"{name}.{fields[i].Name}: C size {sizes[i]}, C# {Marshal.SizeOf(fields[i].FieldType)}");
            offset += sizes[i];
        }
        Assert.Equal((offset + align - 1) / align * align, Marshal.SizeOf(managed));
    }

    [Fact]
    public void ModelRules()
    {
        ModelConfig llama = Config(headDim: 128, qkNorm: false);
        Assert.Null(DecodeKernels.Unsupported(llama, ScalarType.BFloat16, 32768));
        Assert.Null(DecodeKernels.Unsupported(Config(headDim: 64, qkNorm: false), ScalarType.BFloat16, 2048));
        Assert.Contains("bfloat16", DecodeKernels.Unsupported(llama, ScalarType.Float32, 4096), StringComparison.Ordinal);
        Assert.Contains("head sizes", DecodeKernels.Unsupported(Config(headDim: 96, qkNorm: false), ScalarType.BFloat16, 4096), StringComparison.Ordinal);
        Assert.Contains("q/k norms", DecodeKernels.Unsupported(Config(headDim: 128, qkNorm: true), ScalarType.BFloat16, 4096), StringComparison.Ordinal);
        int most = DecodeKernels.MaxSplits * DecodeKernels.AttentionChunk - 1;
        Assert.Null(DecodeKernels.Unsupported(llama, ScalarType.BFloat16, most));
        Assert.Contains("cached tokens", DecodeKernels.Unsupported(llama, ScalarType.BFloat16, most + 1), StringComparison.Ordinal);
    }

    /// <summary>The head kernel's atomicMax key: order-preserving float bits high, 0xFFFFFFFF − index low (the lowest
    /// index wins a tie, as argmax does).</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(128255)]
    [InlineData(int.MaxValue)]
    public void PackedArgmaxUnpacks(int index)
    {
        uint bits = BitConverter.SingleToUInt32Bits(5.6875f) | 0x80000000u;
        long packed = (long)(((ulong)bits << 32) | (0xFFFFFFFFu - (uint)index));
        Assert.Equal(index, KernelDecodeStep.Unpack(packed));
        long lowerIndexSameValue = (long)(((ulong)bits << 32) | (0xFFFFFFFFu - (uint)Math.Max(index - 1, 0)));
        Assert.True((ulong)lowerIndexSameValue >= (ulong)packed);
    }

    /// <summary>The pointer a launch takes for a tensor is its first element's, view offsets included.</summary>
    [Fact]
    public void DataPointerIsTheFirstElement()
    {
        using var t = arange(10, ScalarType.Float32);
        using Tensor view = t.narrow(0, 3, 4);
        IntPtr p = DecodeKernels.DataPointer(view);
        Assert.Equal(DecodeKernels.DataPointer(t) + 3 * sizeof(float), p);
        Marshal.Copy(new[] { 42f }, 0, p, 1);
        Assert.Equal(42f, t[3].item<float>());
    }

    [Fact]
    public void AreUnavailableOnTheCpuWithAReason()
    {
        Assert.False(DecodeKernels.IsAvailable);
        Assert.Contains("CUDA", DecodeKernels.UnavailableReason, StringComparison.Ordinal);
        var e = Assert.Throws<NotSupportedException>(() => DecodeKernels.Get());
        Assert.Contains("CUDA", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Where the kernels cannot run (here: no CUDA, and a float32 model), a graphed model keeps the libtorch step.</summary>
    [Fact]
    public void GraphedModelOnTheCpuKeepsTheLibTorchStep()
    {
        using TargetModel model = TargetModel.Load(SharedFixtures.TinyCheckpoint("llama-gqa"), new TargetModelOptions
        {
            Device = CPU, MaxContext = 64, CudaGraphs = true, CudaGraphCapture = false,
        });
        Assert.True(model.UsesCudaGraphs);
        Assert.Equal(DecodeAttention.Default, model.GraphAttention);
        Assert.Throws<NotSupportedException>(() => model.KernelDecodeLogits(0, 1));
        // trees stay on the usual path too, and still verify
        Assert.False(model.UsesTreeKernels);
        var tree = new TreeInput(0, 3, DraftTree.Create([5, 6], [-1, 0], []));
        Assert.Throws<NotSupportedException>(() => model.KernelTreeLogits(tree));
        model.Prefill([(0, new[] { 1, 2 })]);
        VerifiedStep step = model.VerifyGreedy([tree])[0];
        Assert.Equal(step.AcceptedNodes.Length + 1, step.Tokens.Length);
        Assert.Equal(2 + 1 + step.AcceptedNodes.Length, model.CachedLength(0));
    }

    private static ModelConfig Config(int headDim, bool qkNorm) => ModelConfig.Parse(new MemoryStream(Encoding.UTF8.GetBytes($$"""
        {
          "architectures": ["{{(qkNorm ? "Qwen3ForCausalLM" : "LlamaForCausalLM")}}"], "model_type": "{{(qkNorm ? "qwen3" : "llama")}}",
          "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 2, "head_dim": {{headDim}},
          "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 1000,
          "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
          "hidden_act": "silu", "tie_word_embeddings": false, "torch_dtype": "bfloat16"
        }
        """)), "test config");

    [GeneratedRegex(@"extern ""C"" __global__ void (?:__launch_bounds__\(\w+\) )?(\w+)\(")]
    private static partial Regex EntryPoint();
}
