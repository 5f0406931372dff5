using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>Rotary position embeddings as transformers computes them: the inverse frequencies (default or Llama 3) and their application.</summary>
internal static class RotaryFrequencies
{
    /// <summary>One inverse frequency per pair of head dimensions (head_dim / 2 values), in double precision.</summary>
    public static double[] Inverse(ModelConfig c)
    {
        int d = c.HeadDim;
        var inv = new double[d / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            inv[i] = 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / d);
            if (c.Rope == RopeType.Llama3)
            {
                // Llama 3.1: keep high frequencies, divide low ones by the factor, interpolate in between.
                double lowWavelen = c.RopeOriginalMaxPositions / c.RopeLowFreqFactor;
                double highWavelen = c.RopeOriginalMaxPositions / c.RopeHighFreqFactor;
                double wavelen = 2 * Math.PI / inv[i];
                if (wavelen > lowWavelen)
                {
                    inv[i] /= c.RopeFactor;
                }
                else if (wavelen >= highWavelen)
                {
                    double smooth = (c.RopeOriginalMaxPositions / wavelen - c.RopeLowFreqFactor) / (c.RopeHighFreqFactor - c.RopeLowFreqFactor);
                    inv[i] = (1 - smooth) * inv[i] / c.RopeFactor + smooth * inv[i];
                }
            }
        }
        return inv;
    }

    /// <summary>x · cos + rotate_half(x) · sin, rotate_half swapping the two halves of the last dimension and negating the second.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        return (x * cos).Plus(cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1) * sin);
    }
}
