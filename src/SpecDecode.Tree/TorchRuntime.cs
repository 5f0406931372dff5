using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Loads libtorch once, up front, so that a missing or unloadable backend is one clear error at start-up instead of a
/// <see cref="TypeInitializationException"/> at the first tensor operation. By default TorchSharp's own package (e.g.
/// TorchSharp-cpu) is used. When the environment variable <c>SPECDECODE_LIBTORCH</c> names the <c>torch/lib</c> folder
/// of a CUDA PyTorch install, its libc10, libtorch_cpu, libc10_cuda, libtorch_cuda and libtorch are loaded from there
/// before TorchSharp initialises, and CUDA becomes the default device: this is how a pip PyTorch's GPU build serves.
/// </summary>
public static class TorchRuntime
{
    /// <summary>The environment variable naming a PyTorch <c>torch/lib</c> folder.</summary>
    public const string LibTorchVariable = "SPECDECODE_LIBTORCH";

    private static readonly Lock Gate = new();
    private static string? _version;
    private static Device? _defaultDevice;

    /// <summary>The device models use when none is given: CUDA when a CUDA libtorch is loaded and a GPU is visible, else the CPU.</summary>
    public static Device DefaultDevice
    {
        get
        {
            EnsureLoaded();
            return _defaultDevice!;
        }
    }

    /// <summary>Loads libtorch (from <c>SPECDECODE_LIBTORCH</c> when set, else through TorchSharp's package) and returns its version, e.g. "2.10.0".</summary>
    /// <exception cref="InvalidOperationException">The native backend could not be loaded; the message says what to install or set.</exception>
    public static string EnsureLoaded()
    {
        lock (Gate)
        {
            if (_version is not null)
            {
                return _version;
            }
            string? folder = Environment.GetEnvironmentVariable(LibTorchVariable);
            bool cuda = false;
            if (!string.IsNullOrEmpty(folder))
            {
                cuda = PreloadFrom(folder);
            }
            try
            {
                if (cuda)
                {
                    InitializeDeviceType(DeviceType.CUDA);
                }
                _version = __version__;
            }
            catch (Exception e) when (e is TypeInitializationException or NotSupportedException or ExternalException or DllNotFoundException)
            {
                throw new InvalidOperationException(
                    "TorchSharp could not load its native libtorch backend. The application needs a libtorch package " +
                    "(e.g. TorchSharp-cpu), or SPECDECODE_LIBTORCH set to a CUDA PyTorch's torch/lib folder. On Debian 12, " +
                    "libLibTorchSharp.so also needs its GLIBCXX_3.4.32 requirement weakened at build time; see " +
                    "docs/torchsharp-on-debian12.md. " + (e.InnerException?.Message ?? e.Message),
                    e);
            }
            _defaultDevice = cuda && torch.cuda.is_available() ? torch.CUDA : CPU;
            return _version;
        }
    }

    /// <summary>Loads PyTorch's libraries by full path, in dependency order; returns whether the CUDA ones were there.</summary>
    private static bool PreloadFrom(string folder)
    {
        if (!Directory.Exists(folder))
        {
            throw new InvalidOperationException($"{LibTorchVariable}={folder}: no such folder. Set it to the torch/lib folder of a PyTorch install " +
                "(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), \"lib\"))') or unset it to use TorchSharp-cpu.");
        }
        string[] required = ["libc10.so", "libtorch_cpu.so"];
        string[] cudaLibraries = ["libc10_cuda.so", "libtorch_cuda.so"];
        foreach (string name in required)
        {
            Load(folder, name);
        }
        bool cuda = cudaLibraries.All(n => File.Exists(Path.Combine(folder, n)));
        if (cuda)
        {
            foreach (string name in cudaLibraries)
            {
                Load(folder, name);
            }
        }
        Load(folder, "libtorch.so");
        return cuda;
    }

    private static void Load(string folder, string name)
    {
        string path = Path.Combine(folder, name);
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"{LibTorchVariable}={folder} has no {name}: it must name the torch/lib folder of a PyTorch install.");
        }
        try
        {
            NativeLibrary.Load(path);
        }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException($"{path} could not be loaded ({e.Message}). Add {folder} to LD_LIBRARY_PATH so its own dependencies resolve, or unset {LibTorchVariable}.", e);
        }
    }
}
