using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.TreeBench;

/// <summary>The device's two ceilings, measured: copy bandwidth (bytes read + written) and bf16 matmul rate.</summary>
internal static class Ceilings
{
    public static (double CopyGBps, double MatmulTflops) Measure(Device device)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor source = randn([1L << 30], bfloat16, device); // 2 GiB
        Tensor target = empty_like(source);
        double copy = MedianSeconds(device, () => target.copy_(source), 3, 10);
        Tensor a = randn([8192, 8192], bfloat16, device);
        Tensor b = randn([8192, 8192], bfloat16, device);
        double mm = MedianSeconds(device, () => a.matmul(b).Dispose(), 3, 10);
        return (2.0 * source.NumberOfElements * 2 / copy / 1e9, 2.0 * 8192 * 8192 * 8192 / mm / 1e12);
    }

    /// <summary>Median wall time of <paramref name="action"/> with the device synchronised before and after.</summary>
    public static double MedianSeconds(Device device, Action action, int warmup, int repeat) => SortedSeconds(device, action, warmup, repeat)[repeat / 2];

    /// <summary>The wall times of <paramref name="repeat"/> runs of <paramref name="action"/> after <paramref name="warmup"/>
    /// untimed ones, each with the device synchronised before and after, sorted.</summary>
    public static double[] SortedSeconds(Device device, Action action, int warmup, int repeat)
    {
        for (int i = 0; i < warmup; i++)
        {
            action();
        }
        var times = new double[repeat];
        for (int i = 0; i < repeat; i++)
        {
            Synchronize(device);
            long start = Stopwatch.GetTimestamp();
            action();
            Synchronize(device);
            times[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(times);
        return times;
    }

    public static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA)
        {
            torch.cuda.synchronize(device);
        }
    }
}
