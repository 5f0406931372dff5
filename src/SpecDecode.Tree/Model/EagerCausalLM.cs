using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// A plain, cache-less float32 forward of a Llama-family decoder, written op by op after transformers' modelling code:
/// the numerical reference that faster paths (KV cache, tree attention, fused kernels) are checked against. Not a
/// serving path: it recomputes the whole sequence and loads every weight as float32 on the CPU.
/// </summary>
internal sealed class EagerCausalLM : IDisposable
{
    private readonly ModelConfig _config;
    private readonly Dictionary<string, Tensor> _weights;

    private EagerCausalLM(ModelConfig config, Dictionary<string, Tensor> weights)
    {
        _config = config;
        _weights = weights;
    }

    public ModelConfig Config => _config;

    /// <summary>Loads config.json and the safetensors weights of a checkpoint folder (float32 or float16/bfloat16 upcast).</summary>
    public static EagerCausalLM Load(string folder)
    {
        ModelConfig config = ModelConfig.Load(folder);
        using CheckpointWeights checkpoint = CheckpointWeights.Open(folder);
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (string name in checkpoint.TensorNames)
        {
            SafeTensorInfo info = checkpoint.Get(name);
            var bytes = new byte[info.Length];
            using (Stream s = checkpoint.OpenRead(name))
            {
                s.ReadExactly(bytes);
            }
            Tensor t = info.DType switch
            {
                SafeTensorsDType.Float32 => tensor(MemoryMarshal.Cast<byte, float>(bytes).ToArray(), info.Shape),
                SafeTensorsDType.Float16 => tensor(MemoryMarshal.Cast<byte, Half>(bytes).ToArray().Select(h => (float)h).ToArray(), info.Shape),
                _ => tensor(MemoryMarshal.Cast<byte, ushort>(bytes).ToArray().Select(b => BitConverter.Int32BitsToSingle(b << 16)).ToArray(), info.Shape),
            };
            weights[name] = t;
        }
        return new EagerCausalLM(config, weights);
    }

    private Tensor W(string name) =>
        _weights.TryGetValue(name, out Tensor? t) ? t : throw new SafeTensorsException($"the checkpoint has no tensor '{name}'.");

    private Tensor? OptionalW(string name) => _weights.GetValueOrDefault(name);

    /// <summary>Logits [tokens, vocab] for every position of <paramref name="ids"/> (causal attention).</summary>
    public Tensor Forward(long[] ids)
    {
        int n = ids.Length;
        var allowed = new bool[n, n];
        var positions = new long[n];
        for (int i = 0; i < n; i++)
        {
            positions[i] = i;
            for (int j = 0; j <= i; j++)
            {
                allowed[i, j] = true;
            }
        }
        return Forward(ids, positions, allowed);
    }

    /// <summary>
    /// Logits for a prompt followed by a draft tree, in one forward (SpecInfer's tree attention): the prompt is causal;
    /// tree node i sits at position prompt length + depth - 1 and attends to the whole prompt, its ancestors and itself.
    /// Returns logits [prompt + nodes, vocab]; row prompt + i holds the logits after node i's path.
    /// </summary>
    public Tensor ForwardTree(long[] prompt, DraftTree tree)
    {
        int p = prompt.Length, n = p + tree.Count;
        var ids = new long[n];
        var positions = new long[n];
        var allowed = new bool[n, n];
        for (int i = 0; i < p; i++)
        {
            ids[i] = prompt[i];
            positions[i] = i;
            for (int j = 0; j <= i; j++)
            {
                allowed[i, j] = true;
            }
        }
        for (int i = 0; i < tree.Count; i++)
        {
            ids[p + i] = tree.Tokens[i];
            positions[p + i] = p + tree.Depths[i] - 1;
            for (int j = 0; j < p; j++)
            {
                allowed[p + i, j] = true;
            }
            for (int a = i; a >= 0; a = tree.Parents[a])
            {
                allowed[p + i, p + a] = true;
            }
        }
        return Forward(ids, positions, allowed);
    }

    private Tensor Forward(long[] ids, long[] positions, bool[,] allowed)
    {
        using var scope = NewDisposeScope();
        ModelConfig c = _config;
        int n = ids.Length;
        Tensor x = W("model.embed_tokens.weight").index_select(0, tensor(ids));
        (Tensor cos, Tensor sin) = RotaryTables(positions);
        var maskValues = new float[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                maskValues[i * n + j] = allowed[i, j] ? 0f : float.NegativeInfinity;
            }
        }
        Tensor mask = tensor(maskValues, [n, n]);
        for (int layer = 0; layer < c.LayerCount; layer++)
        {
            string p = $"model.layers.{layer}.";
            Tensor h = RmsNorm(x, W(p + "input_layernorm.weight"));
            Tensor q = Linear(h, p + "self_attn.q_proj").view(n, c.HeadCount, c.HeadDim).transpose(0, 1);
            Tensor k = Linear(h, p + "self_attn.k_proj").view(n, c.KeyValueHeadCount, c.HeadDim).transpose(0, 1);
            Tensor v = Linear(h, p + "self_attn.v_proj").view(n, c.KeyValueHeadCount, c.HeadDim).transpose(0, 1);
            if (c.QkNorm)
            {
                q = RmsNorm(q, W(p + "self_attn.q_norm.weight"));
                k = RmsNorm(k, W(p + "self_attn.k_norm.weight"));
            }
            q = RotaryFrequencies.Apply(q, cos, sin);
            k = RotaryFrequencies.Apply(k, cos, sin);
            int groups = c.HeadCount / c.KeyValueHeadCount;
            k = k.repeat_interleave(groups, 0);
            v = v.repeat_interleave(groups, 0);
            Tensor scores = q.matmul(k.transpose(1, 2)).div(Math.Sqrt(c.HeadDim)) + mask;
            Tensor attention = scores.softmax(-1).matmul(v).transpose(0, 1).reshape(n, c.HeadCount * c.HeadDim);
            x = x + Linear(attention, p + "self_attn.o_proj");
            h = RmsNorm(x, W(p + "post_attention_layernorm.weight"));
            Tensor mlp = nn.functional.silu(Linear(h, p + "mlp.gate_proj")) * Linear(h, p + "mlp.up_proj");
            x = x + Linear(mlp, p + "mlp.down_proj");
        }
        x = RmsNorm(x, W("model.norm.weight"));
        Tensor head = c.TieWordEmbeddings ? W("model.embed_tokens.weight") : W("lm_head.weight");
        return x.matmul(head.t()).MoveToOuterDisposeScope();
    }

    private Tensor Linear(Tensor input, string prefix)
    {
        Tensor y = input.matmul(W(prefix + ".weight").t());
        return OptionalW(prefix + ".bias") is { } bias ? y + bias : y;
    }

    private Tensor RmsNorm(Tensor x, Tensor weight) =>
        x * (x.pow(2).mean([-1L], keepdim: true) + _config.RmsNormEps).rsqrt() * weight;

    /// <summary>cos and sin [tokens, head_dim] for the given positions (default RoPE or Llama 3 scaling).</summary>
    private (Tensor Cos, Tensor Sin) RotaryTables(long[] positions)
    {
        double[] inv = RotaryFrequencies.Inverse(_config);
        Tensor invFreq = tensor(inv.Select(f => (float)f).ToArray());
        Tensor freqs = tensor(positions.Select(p => (float)p).ToArray()).unsqueeze(1) * invFreq.unsqueeze(0);
        Tensor emb = cat([freqs, freqs], -1);
        return (emb.cos(), emb.sin());
    }

    public void Dispose()
    {
        foreach (Tensor t in _weights.Values)
        {
            t.Dispose();
        }
    }
}
