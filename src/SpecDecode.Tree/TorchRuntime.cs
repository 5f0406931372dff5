using TorchSharp;

namespace SpecDecode.Tree;

/// <summary>
/// Loads TorchSharp's native backend up front, so that a missing or unloadable libtorch shows up as one clear
/// error at start-up instead of a <see cref="TypeInitializationException"/> at the first tensor operation.
/// </summary>
public static class TorchRuntime
{
    /// <summary>
    /// Loads libtorch (through TorchSharp) and returns its version, e.g. "2.10.0".
    /// </summary>
    /// <exception cref="InvalidOperationException">The native backend could not be loaded.</exception>
    public static string EnsureLoaded()
    {
        try
        {
            return torch.__version__;
        }
        catch (TypeInitializationException e)
        {
            throw new InvalidOperationException(
                "TorchSharp could not load its native libtorch backend. The application needs a libtorch package " +
                "(e.g. TorchSharp-cpu). On Debian 12, libLibTorchSharp.so also needs its GLIBCXX_3.4.32 requirement " +
                "weakened at build time; see docs/torchsharp-on-debian12.md. " + (e.InnerException?.Message ?? e.Message),
                e);
        }
    }
}
