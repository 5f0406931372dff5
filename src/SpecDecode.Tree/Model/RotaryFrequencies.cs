namespace SpecDecode.Tree;

/// <summary>The inverse frequencies of rotary position embeddings, as transformers computes them (default or Llama 3).</summary>
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
}
