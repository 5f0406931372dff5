using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>
/// A decode-like step of the Llama-3.1-8B shape without the model code: per layer, bf16 x [1, 4096] → RMS norm →
/// qkv (4096 → 6144) → o (the first 4096 of qkv → 4096, standing in for attention) → residual → RMS norm → gate_up
/// (4096 → 28672) → silu(gate) · up → down (14336 → 4096) → residual. Weights are random, [out, in] as nn.Linear keeps
/// them, so it reads the 8B model's 6.98 G layer weights (13.96 GB in bf16) once per step; no attention, embedding or
/// head. Input and output are static tensors, so the step can be captured in a CUDA graph.
/// </summary>
internal sealed class SyntheticDecodeStep : IDisposable
{
    public const int Hidden = 4096;
    public const int QkvWidth = 6144;
    public const int Intermediate = 14336;
    private const double Eps = 1e-5;

    private readonly Tensor[] _inNorm, _qkv, _o, _postNorm, _gateUp, _down;

    /// <summary>Random bf16 weights for <paramref name="layers"/> layers on <paramref name="device"/>, seeded.</summary>
    public SyntheticDecodeStep(int layers, Device device, long seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        Layers = layers;
        using var _ = no_grad();
        torch.manual_seed(seed);
        Tensor Weight(long rows, long columns) => randn([rows, columns], bfloat16, device).mul_(1.0 / Math.Sqrt(columns));
        Tensor Norm() => ones([Hidden], bfloat16, device).add_(randn([Hidden], bfloat16, device).mul_(0.1));
        _inNorm = new Tensor[layers];
        _qkv = new Tensor[layers];
        _o = new Tensor[layers];
        _postNorm = new Tensor[layers];
        _gateUp = new Tensor[layers];
        _down = new Tensor[layers];
        for (int l = 0; l < layers; l++)
        {
            _inNorm[l] = Norm();
            _qkv[l] = Weight(QkvWidth, Hidden);
            _o[l] = Weight(Hidden, Hidden);
            _postNorm[l] = Norm();
            _gateUp[l] = Weight(2 * Intermediate, Hidden);
            _down[l] = Weight(Hidden, Intermediate);
        }
        Input = zeros([1, Hidden], bfloat16, device);
        Output = zeros([1, Hidden], bfloat16, device);
    }

    /// <summary>The layer count.</summary>
    public int Layers { get; }

    /// <summary>Static input [1, 4096] bf16: <c>copy_</c> a new value in before <see cref="Run"/> or a replay.</summary>
    public Tensor Input { get; }

    /// <summary>Static output [1, 4096] bf16 (the residual stream after the last layer), written by every run.</summary>
    public Tensor Output { get; }

    /// <summary>Bytes of weights one step reads.</summary>
    public long WeightBytes => (long)Layers * 2 * ((long)QkvWidth * Hidden + (long)Hidden * Hidden + 2L * Intermediate * Hidden + (long)Hidden * Intermediate + 2 * Hidden);

    /// <summary>About how many kernels one step launches (for the host-overhead arithmetic).</summary>
    public int KernelsPerStep => 1 + Layers * 24;

    /// <summary>One step: Output = layers(Input). No host synchronisation, no host-to-device copy, fixed shapes.</summary>
    public void Run()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        Tensor x = Output;
        x.copy_(Input);
        for (int l = 0; l < Layers; l++)
        {
            Tensor h = RmsNorm(x, _inNorm[l]);
            Tensor qkv = nn.functional.linear(h, _qkv[l]);
            x.add_(nn.functional.linear(qkv.narrow(1, 0, Hidden), _o[l]));
            h = RmsNorm(x, _postNorm[l]);
            Tensor gateUp = nn.functional.linear(h, _gateUp[l]);
            Tensor act = nn.functional.silu(gateUp.narrow(1, 0, Intermediate)).mul_(gateUp.narrow(1, Intermediate, Intermediate));
            x.add_(nn.functional.linear(act, _down[l]));
        }
    }

    /// <summary>RMS norm in float32, as the model computes it: (x / rms(x)) in bf16 times the weight.</summary>
    private static Tensor RmsNorm(Tensor x, Tensor weight)
    {
        Tensor f = x.to(float32);
        Tensor scale = f.pow(2).mean([-1], keepdim: true).add_(Eps).rsqrt_();
        return f.mul_(scale).to(bfloat16).mul_(weight);
    }

    public void Dispose()
    {
        foreach (Tensor[] group in new[] { _inNorm, _qkv, _o, _postNorm, _gateUp, _down })
        {
            foreach (Tensor t in group)
            {
                t.Dispose();
            }
        }
        Input.Dispose();
        Output.Dispose();
    }
}
