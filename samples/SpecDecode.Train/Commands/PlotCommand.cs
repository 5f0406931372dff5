using System.CommandLine;
using ScottPlot;
using SpecDecode.Train.Training;

namespace SpecDecode.Train.Commands;

/// <summary><c>plot</c>: the loss curves of one or more training runs as a PNG (train, validation and held-out loss
/// against tokens seen). Run it where ScottPlot's native renderer is (the GPU bundle carries no native library but
/// libtorch's, so plot the loss logs it sends back here).</summary>
internal static class PlotCommand
{
    public static Command Build()
    {
        var logs = new Option<string[]>("--log") { Description = "name=loss.csv, once per run (e.g. target=models/training-default.loss.csv).", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<string>("--out") { Description = "The PNG file.", Required = true };
        var command = new Command("plot", "Plot loss curves from loss logs.") { logs, output };
        command.SetAction(p =>
        {
            var plot = new Plot();
            foreach (string spec in p.GetValue(logs)!)
            {
                int eq = spec.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    throw new ArgumentException($"--log {spec}: write name=path.");
                }
                string name = spec[..eq];
                List<LossRow> rows = TrainingCheckpoint.ReadLossLog(spec[(eq + 1)..]);
                double[] tokens = rows.Select(r => r.Tokens / 1e6).ToArray();
                plot.Add.Scatter(tokens, rows.Select(r => r.TrainLoss).ToArray()).LegendText = $"{name}: training";
                var validation = plot.Add.Scatter(tokens, rows.Select(r => r.ValidationLoss).ToArray());
                validation.LegendText = $"{name}: validation";
                validation.LinePattern = LinePattern.Dashed;
                var heldOut = plot.Add.Scatter(tokens, rows.Select(r => r.HeldOutLoss).ToArray());
                heldOut.LegendText = $"{name}: held out (first 64 windows of the last 50 trajectories)";
                heldOut.LinePattern = LinePattern.Dotted;
            }
            plot.XLabel("training tokens (millions)");
            plot.YLabel("next-token cross-entropy (nats)");
            plot.Title("Embedded default models: loss");
            plot.Axes.SetLimitsY(0, 5);
            plot.ShowLegend(Alignment.LowerLeft);
            plot.SavePng(p.GetValue(output)!, 900, 540);
            Console.WriteLine($"wrote {p.GetValue(output)}");
            return 0;
        });
        return command;
    }
}
