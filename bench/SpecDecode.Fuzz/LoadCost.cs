using System.Diagnostics;
using SpecDecode.Tree;
using static TorchSharp.torch;

namespace SpecDecode.Fuzz;

/// <summary>
/// What refusing NaN and infinite weights costs a load: the median time of TargetModel.Load on a checkpoint, and the
/// median time of the non-finite bit test alone over every tensor's bytes (already in memory), so the share of the load
/// is measured rather than guessed.
/// </summary>
internal static class LoadCost
{
    public static int Run(string folder, int repeats, TextWriter log)
    {
        var loads = new List<double>();
        for (int i = 0; i < repeats + 1; i++)
        {
            var watch = Stopwatch.StartNew();
            using TargetModel model = TargetModel.Load(folder, new TargetModelOptions { Device = CPU, MaxBatch = 1, MaxContext = 64 });
            if (i > 0)
            {
                loads.Add(watch.Elapsed.TotalMilliseconds);   // the first load warms up (JIT, libtorch)
            }
        }

        var tensors = new List<(byte[] Bytes, SafeTensorsDType DType)>();
        using (CheckpointWeights weights = CheckpointWeights.Open(folder))
        {
            foreach (string name in weights.TensorNames)
            {
                SafeTensorInfo info = weights.Get(name);
                var bytes = new byte[info.Length];
                using Stream stream = weights.OpenRead(name);
                stream.ReadExactly(bytes);
                tensors.Add((bytes, info.DType));
            }
        }
        long total = tensors.Sum(t => (long)t.Bytes.Length);
        var checks = new List<double>();
        for (int i = 0; i < repeats + 1; i++)
        {
            var watch = Stopwatch.StartNew();
            foreach ((byte[] bytes, SafeTensorsDType dtype) in tensors)
            {
                if (TensorLoading.FirstNonFinite(bytes, dtype) >= 0)
                {
                    throw new InvalidOperationException("the checkpoint holds a non-finite value");
                }
            }
            if (i > 0)
            {
                checks.Add(watch.Elapsed.TotalMilliseconds);
            }
        }
        double load = Median(loads), check = Median(checks);
        log.WriteLine($"{folder}: {tensors.Count} tensors, {total / 1e6:F1} MB");
        log.WriteLine($"TargetModel.Load (CPU, float32), median of {repeats}: {load:F1} ms");
        log.WriteLine($"non-finite bit test alone, median of {repeats}: {check:F2} ms = {total / 1e9 / (check / 1000):F1} GB/s, {100 * check / load:F1} % of the load");
        return 0;
    }

    private static double Median(List<double> values)
    {
        values.Sort();
        return values[values.Count / 2];
    }
}
