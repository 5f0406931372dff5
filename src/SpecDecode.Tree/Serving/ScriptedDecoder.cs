using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The decoder layers as one TorchScript function, compiled at run time by libtorch (<c>torch.jit.compile</c>) and
/// called once per forward: the layer loop's few hundred tensor operations run in libtorch's C++ interpreter instead
/// of one TorchSharp call each (~10 µs of host time apiece), which is what bounds a decode step on a GPU. It computes
/// exactly what <see cref="TargetModel"/>'s eager layer loop computes, op for op (tests compare the two).
/// </summary>
internal sealed class ScriptedDecoder
{
    // TorchScript source: compiled from a string, so only aten ops (torch.linear, torch.silu, ...) are visible, not
    // torch.nn.functional. It must end with a newline. Dimensions are counted from the front (no -1): libtorch's simple
    // executor failed on CUDA with an index of -1 (see ScriptExecutor).
    private const string Source = """
        def rms(x: Tensor, w: Tensor, eps: float) -> Tensor:
            h = x.float()
            h = h * torch.rsqrt(h.pow(2).mean([h.dim() - 1], keepdim=True) + eps)
            return w * h.to(x.dtype)

        def rotate_half(x: Tensor) -> Tensor:
            half = x.size(3) // 2
            return torch.cat([x.narrow(3, half, half).neg(), x.narrow(3, 0, half)], 3)

        def attention_inputs(x: Tensor, i: int, in_norm: List[Tensor], wq: List[Tensor], wk: List[Tensor], wv: List[Tensor],
                             bq: List[Tensor], bk: List[Tensor], bv: List[Tensor], q_norm: List[Tensor], k_norm: List[Tensor],
                             cos: Tensor, sin: Tensor, heads: int, kv_heads: int, head_dim: int, eps: float, has_bias: bool,
                             has_qk_norm: bool) -> Tuple[Tensor, Tensor, Tensor]:
            b = x.size(0)
            t = x.size(1)
            h = rms(x, in_norm[i], eps)
            q = torch.linear(h, wq[i])
            k = torch.linear(h, wk[i])
            v = torch.linear(h, wv[i])
            if has_bias:
                q = q + bq[i]
                k = k + bk[i]
                v = v + bv[i]
            q = q.view(b, t, heads, head_dim)
            k = k.view(b, t, kv_heads, head_dim)
            v = v.view(b, t, kv_heads, head_dim)
            if has_qk_norm:
                q = rms(q, q_norm[i], eps)
                k = rms(k, k_norm[i], eps)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            return q, k, v

        def write_kv(cache: Tensor, i: int, write_rows: Tensor, k: Tensor, v: Tensor, rows: int, kv_heads: int,
                     head_dim: int) -> Tuple[Tensor, Tensor]:
            # layer i's keys and values into the cache's rows ([rows, kv heads, head dim] per layer and k/v); returns the
            # layer's key and value rows
            kall = cache.select(0, i).select(0, 0)
            vall = cache.select(0, i).select(0, 1)
            kall.index_copy_(0, write_rows, k.reshape(rows, kv_heads, head_dim))
            vall.index_copy_(0, write_rows, v.reshape(rows, kv_heads, head_dim))
            return kall, vall

        def residual_mlp(x: Tensor, o: Tensor, i: int, wo: List[Tensor], post_norm: List[Tensor], gate: List[Tensor],
                         up: List[Tensor], down: List[Tensor], eps: float) -> Tensor:
            x = x + torch.linear(o, wo[i])
            h = rms(x, post_norm[i], eps)
            return x + torch.linear(torch.silu(torch.linear(h, gate[i])) * torch.linear(h, up[i]), down[i])

        def layers(x: Tensor, in_norm: List[Tensor], wq: List[Tensor], wk: List[Tensor], wv: List[Tensor], wo: List[Tensor],
                   bq: List[Tensor], bk: List[Tensor], bv: List[Tensor], q_norm: List[Tensor], k_norm: List[Tensor],
                   post_norm: List[Tensor], gate: List[Tensor], up: List[Tensor], down: List[Tensor], final_norm: Tensor,
                   cache: Tensor, write_rows: Tensor, read_rows: Tensor, mask: Tensor, cos: Tensor, sin: Tensor, heads: int,
                   kv_heads: int, head_dim: int, eps: float, has_bias: bool, has_qk_norm: bool,
                   matmul_attention: bool, causal: bool, skip_attention: bool, cache_only: bool) -> Tensor:
            # cache_only (prefill): the last layer stops once its keys and values are written, and the result is that
            # layer's input (what the output head's rows of a prefill continue from: TargetModel.PrefillAndChoose)
            b = x.size(0)
            t = x.size(1)
            groups = heads // kv_heads
            keys = read_rows.size(1)
            read_flat = read_rows.reshape([b * keys])
            last = len(wq) - 1
            for i in range(len(wq)):
                q, k, v = attention_inputs(x, i, in_norm, wq, wk, wv, bq, bk, bv, q_norm, k_norm, cos, sin, heads, kv_heads,
                                           head_dim, eps, has_bias, has_qk_norm)
                kall, vall = write_kv(cache, i, write_rows, k, v, b * t, kv_heads, head_dim)
                if cache_only and i == last:
                    return x
                if causal:
                    kr = k.transpose(1, 2).unsqueeze(2).expand(b, kv_heads, groups, t, head_dim).reshape(b, heads, t, head_dim)
                    vr = v.transpose(1, 2).unsqueeze(2).expand(b, kv_heads, groups, t, head_dim).reshape(b, heads, t, head_dim)
                    o = torch.scaled_dot_product_attention(q.transpose(1, 2), kr, vr, is_causal=True)
                    o = o.transpose(1, 2).reshape(b, t, heads * head_dim)
                else:
                    kc = kall.index_select(0, read_flat).view(b, keys, kv_heads, head_dim).transpose(1, 2)
                    vc = vall.index_select(0, read_flat).view(b, keys, kv_heads, head_dim).transpose(1, 2)
                    grouped = q.view(b, t, kv_heads, groups, head_dim).permute(0, 2, 3, 1, 4).reshape(b, kv_heads, groups * t, head_dim)
                    if skip_attention:
                        o = grouped
                    elif matmul_attention:
                        scores = torch.matmul(grouped, kc.transpose(2, 3)) * (float(head_dim) ** -0.5) + mask
                        o = torch.matmul(torch.softmax(scores.float(), 3).to(grouped.dtype), vc)
                    else:
                        o = torch.scaled_dot_product_attention(grouped, kc, vc, mask)
                    o = o.view(b, kv_heads, groups, t, head_dim).permute(0, 3, 1, 2, 4).reshape(b, t, heads * head_dim)
                x = residual_mlp(x, o, i, wo, post_norm, gate, up, down, eps)
            return rms(x, final_norm, eps)

        """;

    // The packed prefill's attention and layers (ForwardPacked). Its flash branch is compiled only into the flash unit,
    // and only where flash is probed (a CUDA device in bfloat16/float16): a TorchScript compile error aborts the process
    // (libtorch's exception is not caught across TorchSharp's boundary), so the unit every model compiles names no op that
    // some libtorch might lack, and SPECDECODE_PREFILL_ATTENTION=masked keeps the flash unit from being compiled at all.
    private const string PackedSource = """
        def attend_varlen(q: Tensor, k: Tensor, v: Tensor, cu_q: Tensor, cu_k: Tensor, max_q: int, max_k: int,
                          starts_q: Tensor, starts_k: Tensor, flash: bool, kv_heads: int, head_dim: int) -> Tensor:
            # q [rows, heads, head dim]; k, v [keys, kv heads, head dim]; sequence s owns rows cu_q[s] .. cu_q[s+1]-1
            # and keys cu_k[s] .. cu_k[s+1]-1 (int32, on the device; starts_q and starts_k: the same on the CPU, int64),
            # its rows being its last keys: row r of n sees keys 0 .. keys - n + r (causal, aligned at the bottom right)
            if flash:
                FLASH_CALL
            groups = q.size(1) // kv_heads
            sq: List[int] = starts_q.tolist()
            sk: List[int] = starts_k.tolist()
            outs: List[Tensor] = []
            for s in range(len(sq) - 1):
                n = sq[s + 1] - sq[s]
                m = sk[s + 1] - sk[s]
                qs = q.narrow(0, sq[s], n).view(n, kv_heads, groups, head_dim).permute(1, 2, 0, 3).reshape(1, kv_heads, groups * n, head_dim)
                ks = k.narrow(0, sk[s], m).transpose(0, 1).unsqueeze(0)
                vs = v.narrow(0, sk[s], m).transpose(0, 1).unsqueeze(0)
                visible = q.new_ones([n, m]).tril(m - n).repeat([groups, 1]) > 0
                o = torch.scaled_dot_product_attention(qs, ks, vs, visible)
                outs.append(o.view(kv_heads, groups, n, head_dim).permute(2, 0, 1, 3).reshape(n, kv_heads * groups, head_dim))
            return torch.cat(outs, 0)

        def prefill_layers(x: Tensor, in_norm: List[Tensor], wq: List[Tensor], wk: List[Tensor], wv: List[Tensor], wo: List[Tensor],
                           bq: List[Tensor], bk: List[Tensor], bv: List[Tensor], q_norm: List[Tensor], k_norm: List[Tensor],
                           post_norm: List[Tensor], gate: List[Tensor], up: List[Tensor], down: List[Tensor],
                           cache: Tensor, write_rows: Tensor, read_rows: Tensor, cos: Tensor, sin: Tensor, cu_q: Tensor,
                           cu_k: Tensor, max_q: int, max_k: int, starts_q: Tensor, starts_k: Tensor, heads: int,
                           kv_heads: int, head_dim: int, eps: float, has_bias: bool, has_qk_norm: bool, flash: bool) -> Tensor:
            # x [1, rows, hidden]: every sequence's chunk packed, no padding; writes their keys and values and returns
            # nothing a caller needs (the last layer's input). Prefill computes no logits, so the last layer stops once its
            # keys and values are written: its attention, output projection and MLP would feed nothing.
            n = x.size(1)
            last = len(wq) - 1
            for i in range(len(wq)):
                q, k, v = attention_inputs(x, i, in_norm, wq, wk, wv, bq, bk, bv, q_norm, k_norm, cos, sin, heads, kv_heads,
                                           head_dim, eps, has_bias, has_qk_norm)
                kall, vall = write_kv(cache, i, write_rows, k, v, n, kv_heads, head_dim)
                if i == last:
                    break
                o = attend_varlen(q.reshape(n, heads, head_dim), kall.index_select(0, read_rows), vall.index_select(0, read_rows),
                                  cu_q, cu_k, max_q, max_k, starts_q, starts_k, flash, kv_heads, head_dim)
                x = residual_mlp(x, o.reshape(1, n, heads * head_dim), i, wo, post_norm, gate, up, down, eps)
            return x

        """;

    private const string FlashCall = "return torch._flash_attention_forward(q, k, v, cu_q, cu_k, max_q, max_k, 0.0, True, False)[0]";

    private const string NoFlash = "assert False, \"flash attention is in the flash unit only\"";


    private static readonly Lazy<jit.CompilationUnit> Compiled = new(() =>
    {
        ScriptExecutor.Configure();
        return jit.compile(Source + PackedSource.Replace("FLASH_CALL", NoFlash, StringComparison.Ordinal));
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The same layers with the flash branch: compiled at the first flash probe.</summary>
    private static readonly Lazy<jit.CompilationUnit> CompiledFlash = new(() =>
    {
        ScriptExecutor.Configure();
        return jit.compile(Source + PackedSource.Replace("FLASH_CALL", FlashCall, StringComparison.Ordinal));
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly ModelConfig _config;
    private readonly Tensor[] _inNorm, _wq, _wk, _wv, _wo, _bq, _bk, _bv, _qNorm, _kNorm, _postNorm, _gate, _up, _down;
    private readonly Tensor _finalNorm;

    private readonly long _matmulMinKeys;

    private ScriptedDecoder(ModelConfig config, CausalLMWeights w, long matmulMinKeys)
    {
        _config = config;
        _matmulMinKeys = matmulMinKeys;
        IReadOnlyList<DecoderLayerWeights> l = w.Layers;
        _inNorm = l.Select(x => (Tensor)x.InputNorm.Weight).ToArray();
        _wq = l.Select(x => (Tensor)x.Attention.QProj.Weight).ToArray();
        _wk = l.Select(x => (Tensor)x.Attention.KProj.Weight).ToArray();
        _wv = l.Select(x => (Tensor)x.Attention.VProj.Weight).ToArray();
        _wo = l.Select(x => (Tensor)x.Attention.OProj.Weight).ToArray();
        _bq = config.QkvBias ? l.Select(x => (Tensor)x.Attention.QProj.Bias!).ToArray() : [];
        _bk = config.QkvBias ? l.Select(x => (Tensor)x.Attention.KProj.Bias!).ToArray() : [];
        _bv = config.QkvBias ? l.Select(x => (Tensor)x.Attention.VProj.Bias!).ToArray() : [];
        _qNorm = config.QkNorm ? l.Select(x => (Tensor)x.Attention.QNorm!.Weight).ToArray() : [];
        _kNorm = config.QkNorm ? l.Select(x => (Tensor)x.Attention.KNorm!.Weight).ToArray() : [];
        _postNorm = l.Select(x => (Tensor)x.PostAttentionNorm.Weight).ToArray();
        _gate = l.Select(x => (Tensor)x.Mlp.GateProj.Weight).ToArray();
        _up = l.Select(x => (Tensor)x.Mlp.UpProj.Weight).ToArray();
        _down = l.Select(x => (Tensor)x.Mlp.DownProj.Weight).ToArray();
        _finalNorm = w.Norm.Weight;
    }

    /// <summary>The scripted decoder for <paramref name="weights"/>, or null when the model has a feature the script does
    /// not implement (bias on the output or MLP projections), which then runs eagerly.</summary>
    public static ScriptedDecoder? TryCreate(ModelConfig config, CausalLMWeights weights, long matmulMinKeys) =>
        config.OutputBias || config.MlpBias ? null : new ScriptedDecoder(config, weights, matmulMinKeys);

    /// <summary>Compiles the script now (it is compiled once per process).</summary>
    public static void Compile() => _ = Compiled.Value;

    /// <summary>Up to this many attention scores per layer (batch × kv heads × query rows × keys), attention runs as two
    /// batched matrix products with a float32 softmax (as transformers' eager attention does) instead of the fused SDPA
    /// kernel: with few query rows (decoding, small trees) PyTorch's masked SDPA kernel gets only a few thread blocks per
    /// head and reads a long cache slowly, while the matrix products spread over the keys.</summary>
    public const long MatmulAttentionMaxScores = 32L << 20;

    /// <summary>
    /// The rule, from one H100 run (bench/RESULTS.md): matrix products won clearly on long caches with at least 16
    /// query rows per key/value head (32k keys: 22.7 vs 32.9 ms at 4 tree tokens, 21.9 vs 36.7 at 16) and lost badly on
    /// single-token decoding (48.9 vs 30.3 ms: a 4-row product is a poor cuBLAS shape), with no clear difference at 2k.
    /// </summary>
    private bool UseMatmulAttention(long batch, long rows, long keys)
    {
        long groups = _config.HeadCount / _config.KeyValueHeadCount;
        return groups * rows >= 16 && keys >= _matmulMinKeys && batch * _config.HeadCount * rows * keys <= MatmulAttentionMaxScores;
    }

    /// <summary>Runs every layer and the final norm; writes the step's keys and values into <paramref name="cache"/> (the
    /// paged pool, <see cref="KvCache.Data"/>) at rows <paramref name="writeRows"/> [B × T]. <paramref name="mask"/> [B, 1,
    /// groups × T, keys] over the rows <paramref name="readRows"/> [B, keys] each sequence's attention reads, or both null
    /// for plain causal attention among the forward's own rows (every sequence starting at an empty cache): then the
    /// fresh keys and values are attended with <c>is_causal</c> and no mask, which lets PyTorch pick flash attention on
    /// CUDA in float16/bfloat16. <paramref name="cacheOnly"/> (prefill): the last layer stops once its keys and values are
    /// written, and the result is that layer's input, not the final hidden states. <paramref name="firstLayer"/> &gt; 0 runs
    /// the layers from that one on, <paramref name="x"/> being its input (the rows a prefill chose the next token for, from
    /// the last layer's input it left).</summary>
    /// <remarks><paramref name="attention"/> says how masked (non-causal) attention is computed: <see cref="DecodeAttention.Default"/>
    /// picks SDPA or matrix products by <see cref="UseMatmulAttention"/>; the others are the graphed step's experiment
    /// knob (<see cref="TargetModel.GraphAttention"/>). It is ignored for causal attention (<paramref name="mask"/> null).</remarks>
    public Tensor Forward(Tensor x, Tensor cache, Tensor writeRows, Tensor? readRows, Tensor? mask, Tensor cos, Tensor sin,
        DecodeAttention attention = DecodeAttention.Default, bool cacheOnly = false, int firstLayer = 0)
    {
        ModelConfig c = _config;
        ArgumentOutOfRangeException.ThrowIfNegative(firstLayer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(firstLayer, c.LayerCount);
        Tensor[] From(Tensor[] all) => firstLayer == 0 || all.Length == 0 ? all : all[firstLayer..];
        bool causal = mask is null;
        long keys = readRows?.shape[1] ?? 0;
        bool matmul = attention switch
        {
            DecodeAttention.Default => !causal && UseMatmulAttention(x.shape[0], x.shape[1], keys),
            DecodeAttention.GroupedMatmul or DecodeAttention.Skipped => !causal,
            _ => throw new ArgumentOutOfRangeException(nameof(attention), attention, "Unknown DecodeAttention."),
        };
        // TorchSharp's invoke turns a number or bool argument into a temporary Scalar and keeps only its native handle: a
        // garbage collection before the native call could finalize it and free what the handle points at (libtorch then
        // read garbage: "Expected false to be true" from Scalar::toLong, issue 16). These Scalars live until the call ends.
        using Tensor? noMask = mask is null ? empty(0, x.dtype, x.device) : null;
        using Tensor? noRows = readRows is null ? zeros([x.shape[0], 0], ScalarType.Int64, x.device) : null;
        using Scalar heads = (long)c.HeadCount, kvHeads = (long)c.KeyValueHeadCount, headDim = (long)c.HeadDim,
            eps = c.RmsNormEps, qkvBias = c.QkvBias, qkNorm = c.QkNorm, useMatmul = matmul, isCausal = causal,
            skipped = !causal && attention == DecodeAttention.Skipped, onlyCache = cacheOnly;
        // the script indexes layers from 0: the lists and the cache (layers first) start at firstLayer
        using Tensor? layers = firstLayer == 0 ? null : cache.narrow(0, firstLayer, c.LayerCount - firstLayer);
        return (Tensor)Compiled.Value.invoke("layers",
            x, From(_inNorm), From(_wq), From(_wk), From(_wv), From(_wo), From(_bq), From(_bk), From(_bv), From(_qNorm), From(_kNorm),
            From(_postNorm), From(_gate), From(_up), From(_down), _finalNorm,
            layers ?? cache, writeRows, readRows ?? noRows!, mask ?? noMask!, cos, sin, heads, kvHeads, headDim, eps, qkvBias, qkNorm, useMatmul,
            isCausal, skipped, onlyCache);
    }

    /// <summary>Runs every layer over one packed prefill forward (<see cref="PackedPrefillPlan"/>) and writes its keys and
    /// values into <paramref name="cache"/>: <paramref name="x"/> [1, N, hidden] the chunks' embeddings end to end,
    /// <paramref name="writeRows"/> [N] and <paramref name="readRows"/> [K] cache rows, <paramref name="cos"/> and
    /// <paramref name="sin"/> [1, N, 1, head size], <paramref name="cuRows"/> and <paramref name="cuKeys"/> [S + 1] the
    /// sequences' row and key starts (int32 on the device), <paramref name="rowStarts"/> and <paramref name="keyStarts"/>
    /// the same as int64 on the CPU. <paramref name="flash"/>: libtorch's variable-length flash attention, else the
    /// reference (per sequence, SDPA with a causal mask aligned at the bottom right). The last layer stops after writing
    /// its keys and values (prefill computes no logits); returns that layer's input, which no caller needs.</summary>
    public Tensor ForwardPacked(Tensor x, Tensor cache, Tensor writeRows, Tensor readRows, Tensor cos, Tensor sin, Tensor cuRows,
        Tensor cuKeys, long maxRows, long maxKeys, Tensor rowStarts, Tensor keyStarts, bool flash)
    {
        ModelConfig c = _config;
        // Scalars held until the native call returns (see Forward).
        using Scalar heads = (long)c.HeadCount, kvHeads = (long)c.KeyValueHeadCount, headDim = (long)c.HeadDim,
            eps = c.RmsNormEps, qkvBias = c.QkvBias, qkNorm = c.QkNorm, maxQ = maxRows, maxK = maxKeys, useFlash = flash;
        return (Tensor)(flash ? CompiledFlash : Compiled).Value.invoke("prefill_layers",
            x, _inNorm, _wq, _wk, _wv, _wo, _bq, _bk, _bv, _qNorm, _kNorm, _postNorm, _gate, _up, _down,
            cache, writeRows, readRows, cos, sin, cuRows, cuKeys, maxQ, maxK, rowStarts, keyStarts, heads, kvHeads, headDim, eps,
            qkvBias, qkNorm, useFlash);
    }

    /// <summary>
    /// Null when libtorch's variable-length flash attention runs on <paramref name="device"/> in <paramref name="dtype"/>
    /// for this model's heads and gives the reference attention's result on a small packed batch of random values (two
    /// sequences whose chunks are the last of their keys: this checks the causal alignment too), else why not.
    /// </summary>
    public string? ProbeFlash(Device device, ScalarType dtype)
    {
        ModelConfig c = _config;
        try
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            using var generator = new Generator(17);
            int[] rows = [3, 5], keys = [7, 5];
            Tensor q = randn([rows.Sum(), c.HeadCount, c.HeadDim], generator: generator).to(dtype, device);
            Tensor k = randn([keys.Sum(), c.KeyValueHeadCount, c.HeadDim], generator: generator).to(dtype, device);
            Tensor v = randn([keys.Sum(), c.KeyValueHeadCount, c.HeadDim], generator: generator).to(dtype, device);
            Tensor rowStarts = tensor(new long[] { 0, rows[0], rows.Sum() }), keyStarts = tensor(new long[] { 0, keys[0], keys.Sum() });
            Tensor cuRows = rowStarts.to(ScalarType.Int32).to(device), cuKeys = keyStarts.to(ScalarType.Int32).to(device);
            using Scalar maxQ = (long)rows.Max(), maxK = (long)keys.Max(), kvHeads = (long)c.KeyValueHeadCount, headDim = (long)c.HeadDim,
                on = true, off = false;
            Tensor flash = (Tensor)CompiledFlash.Value.invoke("attend_varlen", q, k, v, cuRows, cuKeys, maxQ, maxK, rowStarts, keyStarts, on, kvHeads, headDim);
            // the reference in float32 from the same rounded inputs: what is left is flash's own rounding (about 2^-9 of
            // the output), while a wrong alignment or head mapping is off by the size of the values
            Tensor reference = (Tensor)Compiled.Value.invoke("attend_varlen", q.to(ScalarType.Float32), k.to(ScalarType.Float32), v.to(ScalarType.Float32),
                cuRows, cuKeys, maxQ, maxK, rowStarts, keyStarts, off, kvHeads, headDim);
            double difference = (flash.to(ScalarType.Float32) - reference).abs().max().cpu().item<float>() / reference.abs().max().cpu().item<float>();
            return difference <= 2e-2 ? null : $"its probe differed from the reference attention by {difference:G3} of the largest value (a causal mask aligned at the top left?)";
        }
        catch (Exception e) when (e is ExternalException or InvalidOperationException or ArgumentException)
        {
            return $"its probe failed: {e.Message.Split('\n')[0]}";
        }
    }
}

/// <summary>
/// How the scripted layers compute masked attention; an internal experiment knob for the graphed single-token step
/// (<see cref="TargetModel.GraphAttention"/>, docs/target-model.md "CUDA graphs"), not public API.
/// </summary>
internal enum DecodeAttention
{
    /// <summary>The usual rule: fused SDPA with the additive mask, or matrix products for many query rows on long caches.</summary>
    Default,

    /// <summary>Grouped matrix products with no key/value repeat: q as [B, kv heads, groups × T, head dim], scores =
    /// q·Kᵀ/√d + mask over the bucket's keys, softmax in float32, then ·V.</summary>
    GroupedMatmul,

    /// <summary>No attention at all (the output is q itself; the keys and values are still written): only to measure
    /// attention's share of a step. Gives different tokens.</summary>
    Skipped,

    /// <summary>Not the script: the whole step through <see cref="DecodeKernels"/> (<see cref="KernelDecodeStep"/>), bf16
    /// models on CUDA only.</summary>
    Kernels,
}
