using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Scalars that outlive every native call, and + with such an alpha. TorchSharp turns each number argument (and the alpha
/// of <c>Tensor + Tensor</c>, <c>add(Scalar)</c> and <c>add_(Tensor)</c>, which it sets to a new Scalar 1) into a
/// temporary <see cref="Scalar"/> and passes only its native handle, without keeping the Scalar alive: a garbage
/// collection during the native call can finalize it and free what libtorch is reading. Issue 16 found it in the
/// scripted layers' arguments ("Expected false to be true" from Scalar::toLong); it showed again as "argument alpha must
/// not be a floating point number" from a prefill's <c>Tensor + Tensor</c> while another thread collected, and as a wrong
/// all-reduce sum in the tensor-parallel tests. The forward, acceptance, sampling, cache and all-reduce paths take their
/// numbers from here, or hold them in a <c>using</c> for the call (a Scalar whose Dispose is still to come cannot be
/// finalized). <c>Tensor − Tensor</c> passes no alpha and needs nothing.
/// </summary>
internal static class TorchScalars
{
    public static readonly Scalar Zero = 0L, One = 1L, Two = 2L, MinusOne = -1L, NegativeInfinity = double.NegativeInfinity;

    /// <summary><paramref name="a"/> + <paramref name="b"/> with a held alpha.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);
}
