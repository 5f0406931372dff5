using System.Globalization;
using System.Text;

namespace SpecDecode.Soak;

/// <summary>What a soak run found, and the checks it must pass.</summary>
public sealed class SoakReport
{
    /// <summary>Growth of the managed heap allowed from the second round to the last: 10 % plus 8 MiB.</summary>
    public const double ManagedGrowthFraction = 0.10;

    /// <summary>Growth of the resident set allowed from the second round to the last: 25 % plus 64 MiB (libtorch's
    /// allocator keeps freed blocks).</summary>
    public const double ResidentGrowthFraction = 0.25;

    private readonly SoakTally _tally;

    internal SoakReport(SoakSettings settings, SoakTally tally, IReadOnlyList<SoakRound> rounds, int engines, string? integrityFailure,
        long drafterFaults, long loggerFaults, long loggerCalls, long metricsFaults, TimeSpan elapsed)
    {
        Settings = settings;
        _tally = tally;
        Rounds = rounds;
        Engines = engines;
        IntegrityFailure = integrityFailure;
        DrafterFaults = drafterFaults;
        LoggerFaults = loggerFaults;
        LoggerCalls = loggerCalls;
        MetricsFaults = metricsFaults;
        Elapsed = elapsed;
        Failures = Check();
    }

    /// <summary>What the run did.</summary>
    public SoakSettings Settings { get; }

    /// <summary>Memory after each round.</summary>
    public IReadOnlyList<SoakRound> Rounds { get; }

    /// <summary>Engines created (one more after each disposal race).</summary>
    public int Engines { get; }

    /// <summary>Why the suffix cache failed its check after the run; null when it passed.</summary>
    public string? IntegrityFailure { get; }

    /// <summary>Drafter faults injected (exceptions and out-of-vocabulary drafts).</summary>
    public long DrafterFaults { get; }

    /// <summary>Logger calls that threw.</summary>
    public long LoggerFaults { get; }

    /// <summary>Logger calls in all.</summary>
    public long LoggerCalls { get; }

    /// <summary>Metrics listener callbacks that threw.</summary>
    public long MetricsFaults { get; }

    /// <summary>The whole run, references included.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Requests sent (every outcome).</summary>
    public long Requests => _tally.Requests;

    /// <summary>Requests that completed with a result.</summary>
    public long Served => _tally.Count(SoakOutcome.Served);

    /// <summary>Results that differed from their solo greedy reference (or broke their budget).</summary>
    public long Mismatches => _tally.Mismatches.Count;

    /// <summary>Exceptions that escaped onto a thread or went unobserved.</summary>
    public long Escaped => _tally.EscapedExceptions.Count;

    /// <summary>Requests that did not end within the timeout.</summary>
    public long Stranded => _tally.Count(SoakOutcome.Stranded);

    /// <summary>Requests that ended with an exception the soak did not cause.</summary>
    public long Unexpected => _tally.Count(SoakOutcome.Unexpected);

    /// <summary>The checks that failed; empty when the soak passed.</summary>
    public IReadOnlyList<string> Failures { get; }

    /// <summary>Whether every check passed.</summary>
    public bool Passed => Failures.Count == 0;

    /// <summary>Memory growth from the second round (the first warms up: JIT, the suffix cache filling to its bound) to the last.</summary>
    public (long Managed, long Resident) Growth
    {
        get
        {
            if (Rounds.Count < 2)
            {
                return (0, 0);
            }
            SoakRound from = Rounds[1], to = Rounds[^1];
            return (to.ManagedBytes - from.ManagedBytes, to.ResidentBytes - from.ResidentBytes);
        }
    }

    private List<string> Check()
    {
        var failures = new List<string>();
        if (Mismatches > 0)
        {
            failures.Add($"{Mismatches} results differ from their solo greedy reference (or break their budget), e.g. {_tally.Mismatches.First()}");
        }
        if (Escaped > 0)
        {
            failures.Add($"{Escaped} exceptions escaped, e.g. {_tally.EscapedExceptions.First()}");
        }
        if (Stranded > 0 || Unexpected > 0)
        {
            failures.Add($"{Stranded} requests stranded and {Unexpected} ended unexpectedly, e.g. {_tally.UnexpectedDetails.FirstOrDefault()}");
        }
        foreach (string accounting in _tally.AccountingFailures)
        {
            failures.Add("not every accepted request ended exactly once: " + accounting);
        }
        if (IntegrityFailure is not null)
        {
            failures.Add("suffix cache after the run: " + IntegrityFailure);
        }
        long expected = Settings.TotalRequests + (Settings.DisposeModelAtEnd ? Settings.Clients : 0);
        if (Requests != expected)
        {
            failures.Add($"{Requests} requests were recorded, {expected} were sent");
        }
        if (Served == 0 || _tally.ComparedResults == 0)
        {
            failures.Add("no request was served and checked: the soak proved nothing");
        }
        if (Settings.DrafterFaultRate > 0 && DrafterFaults == 0 || Settings.LoggerFaultRate > 0 && LoggerFaults == 0)
        {
            failures.Add($"faults were asked for but not injected (drafter {DrafterFaults}, logger {LoggerFaults})");
        }
        if (Rounds.Count >= 2)
        {
            SoakRound from = Rounds[1];
            (long managed, long resident) = Growth;
            if (managed > ManagedGrowthFraction * from.ManagedBytes + 8 * Mib)
            {
                failures.Add($"the managed heap grew by {managed / Mib:F1} MiB from round 2 to round {Rounds.Count}");
            }
            if (resident > ResidentGrowthFraction * from.ResidentBytes + 64 * Mib)
            {
                failures.Add($"the resident set grew by {resident / Mib:F1} MiB from round 2 to round {Rounds.Count}");
            }
        }
        return failures;
    }

    private const double Mib = 1024.0 * 1024.0;

    /// <summary>The summary the command prints (and RESULTS.md quotes).</summary>
    public override string ToString()
    {
        var s = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        string burst = Settings.DisposeModelAtEnd ? $" + {Settings.Clients} in the model-disposal burst" : "";
        s.AppendLine(c, $"soak: {Settings.Clients} clients x {Settings.Rounds} rounds x {Settings.RequestsPerClient} requests{burst}, batch {Settings.MaxBatch}, {Engines} engines, {Elapsed.TotalSeconds:F0} s");
        s.AppendLine(c, $"requests            {Requests}");
        foreach (SoakOutcome outcome in Enum.GetValues<SoakOutcome>())
        {
            s.AppendLine(c, $"  {outcome,-22}{_tally.Count(outcome)}");
        }
        s.AppendLine(c, $"tokens served       {_tally.Tokens}");
        s.AppendLine(c, $"results checked     {_tally.ComparedResults} (greedy against the solo greedy run, sampled against the budget, abandoned streams as prefixes)");
        s.AppendLine(c, $"mismatches          {Mismatches}");
        s.AppendLine(c, $"escaped exceptions  {Escaped} (AppDomain unhandled + TaskScheduler unobserved)");
        s.AppendLine(c, $"stranded requests   {Stranded}");
        s.AppendLine(c, $"faults injected     drafter {DrafterFaults}, logger {LoggerFaults} of {LoggerCalls} calls, metrics listener {MetricsFaults}");
        s.AppendLine(c, $"suffix cache        {(IntegrityFailure is null ? "CheckIntegrity passed, no request left active" : IntegrityFailure)}");
        (long managed, long resident) = Growth;
        s.AppendLine(c, $"memory growth       managed {managed / Mib:+0.0;-0.0;0.0} MiB, resident {resident / Mib:+0.0;-0.0;0.0} MiB (round 2 to round {Rounds.Count})");
        s.AppendLine(Passed ? "PASSED" : "FAILED:\n  " + string.Join("\n  ", Failures));
        return s.ToString();
    }
}
