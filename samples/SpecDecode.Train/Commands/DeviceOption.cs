using SpecDecode.Tree;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Train.Commands;

/// <summary>The <c>--device</c> option of the train and evaluate commands, and how a run names its device.</summary>
internal static class DeviceOption
{
    /// <summary>Loads libtorch and resolves <c>--device</c>: null for CUDA when available, else the CPU.</summary>
    /// <returns>The device and the libtorch version string.</returns>
    /// <exception cref="ArgumentException">CUDA was asked for without a CUDA device, or the name is neither cpu nor cuda.</exception>
    public static (Device Device, string LibTorch) Resolve(string? name)
    {
        string libtorch = TorchRuntime.EnsureLoaded();
        Device device = name switch
        {
            null => TorchRuntime.DefaultDevice,
            "cpu" => CPU,
            "cuda" => cuda.is_available() ? CUDA : throw new ArgumentException("--device cuda: no CUDA device (set SPECDECODE_LIBTORCH to a CUDA PyTorch's torch/lib)."),
            _ => throw new ArgumentException($"--device {name}: cpu or cuda."),
        };
        return (device, libtorch);
    }

    /// <summary>"cuda (card name)", the card named by SPECDECODE_DEVICE_NAME (../shared/gpu sets it), for reports.</summary>
    public static string CudaLabel => $"cuda ({Environment.GetEnvironmentVariable("SPECDECODE_DEVICE_NAME") ?? "GPU"})";
}
