using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace SpecDecode.Replay;

/// <summary>
/// Shows the progress of a series of replays: a Spectre.Console progress display (bar, calls/s, ETA) on an interactive
/// terminal, plain status lines every few seconds when the output is redirected.
/// </summary>
internal static class ReplayProgress
{
    private static readonly TimeSpan PlainInterval = TimeSpan.FromSeconds(5);

    /// <summary>Runs <paramref name="body"/> once per label; the body calls the tick it is given after each call.</summary>
    public static void Run(IAnsiConsole console, bool interactive, IReadOnlyList<string> labels, long callsPerRun, Action<int, Action> body)
    {
        if (interactive)
        {
            RunInteractive(console, labels, callsPerRun, body);
        }
        else
        {
            RunPlain(console, labels, callsPerRun, body);
        }
    }

    private static void RunInteractive(IAnsiConsole console, IReadOnlyList<string> labels, long callsPerRun, Action<int, Action> body)
    {
        console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new CallRateColumn(),
                new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(context =>
            {
                var tasks = labels.Select(l => context.AddTask(Markup.Escape(l), autoStart: false, maxValue: Math.Max(callsPerRun, 1))).ToList();
                for (int i = 0; i < labels.Count; i++)
                {
                    ProgressTask task = tasks[i];
                    task.StartTask();
                    body(i, () => task.Increment(1));
                    task.Value = task.MaxValue;
                    task.StopTask();
                }
            });
    }

    private static void RunPlain(IAnsiConsole console, IReadOnlyList<string> labels, long callsPerRun, Action<int, Action> body)
    {
        for (int i = 0; i < labels.Count; i++)
        {
            string label = labels[i];
            long done = 0;
            var clock = Stopwatch.StartNew();
            TimeSpan nextReport = PlainInterval;
            console.WriteLine($"[{label}] started: {callsPerRun} calls");
            body(i, () =>
            {
                done++;
                if (clock.Elapsed >= nextReport)
                {
                    nextReport = clock.Elapsed + PlainInterval;
                    console.WriteLine(Status(label, done, callsPerRun, clock.Elapsed));
                }
            });
            console.WriteLine(Status(label, done, callsPerRun, clock.Elapsed) + " done");
        }
    }

    private static string Status(string label, long done, long total, TimeSpan elapsed)
    {
        double rate = done / Math.Max(elapsed.TotalSeconds, 1e-9);
        TimeSpan eta = rate > 0 ? TimeSpan.FromSeconds((total - done) / rate) : TimeSpan.Zero;
        return string.Create(CultureInfo.InvariantCulture,
            $"[{label}] {done}/{total} calls ({100.0 * done / Math.Max(total, 1):F1}%), {rate:F0} calls/s, elapsed {elapsed:hh\\:mm\\:ss}, ETA {eta:hh\\:mm\\:ss}");
    }

    /// <summary>Calls per second of a task.</summary>
    private sealed class CallRateColumn : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime)
        {
            double? speed = task.Speed;
            return new Text(speed is null ? "- calls/s" : string.Create(CultureInfo.InvariantCulture, $"{speed.Value:F0} calls/s"),
                new Style(Color.Grey));
        }
    }
}
