namespace SpecDecode.Core.Tests;

public sealed class SpeculationMetricsTests
{
    [Fact]
    public void New_IsAllZero()
    {
        var metrics = new SpeculationMetrics();

        Assert.Equal(0, metrics.Steps);
        Assert.Equal(0, metrics.Drafts);
        Assert.Equal(0, metrics.DraftTokens);
        Assert.Equal(0, metrics.AcceptedTokens);
        Assert.Equal(0, metrics.EmittedTokens);
        Assert.Equal(TimeSpan.Zero, metrics.DraftingTime);
        Assert.Equal(1.0, metrics.MeanAcceptanceLength);
        Assert.Equal(0.0, metrics.MeanTokensPerStep);
        Assert.Equal(0.0, metrics.AcceptanceRate);
        Assert.Empty(metrics.AcceptedPerPosition);
    }

    [Fact]
    public void MeanAcceptanceLength_IsOnePlusAcceptedPerDraft()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(draftTokens: 5, acceptedTokens: 3, emittedTokens: 4, TimeSpan.FromMilliseconds(2));
        metrics.RecordStep(draftTokens: 4, acceptedTokens: 0, emittedTokens: 1, TimeSpan.FromMilliseconds(1));

        Assert.Equal(2, metrics.Drafts);
        Assert.Equal(1.0 + 3.0 / 2.0, metrics.MeanAcceptanceLength);
        Assert.Equal(3.0 / 9.0, metrics.AcceptanceRate);
    }

    [Fact]
    public void EmptyDrafts_CountAsStepsButNotDrafts()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(5, 3, 4, TimeSpan.FromTicks(30));
        metrics.RecordStep(0, 0, 1, TimeSpan.FromTicks(7));   // no draft this step
        metrics.RecordStep(0, 0, 1, TimeSpan.Zero);
        metrics.RecordStep(4, 0, 1, TimeSpan.FromTicks(5));

        Assert.Equal(4, metrics.Steps);
        Assert.Equal(2, metrics.Drafts);
        Assert.Equal(9, metrics.DraftTokens);
        Assert.Equal(3, metrics.AcceptedTokens);
        Assert.Equal(7, metrics.EmittedTokens);
        Assert.Equal(TimeSpan.FromTicks(42), metrics.DraftingTime);
        Assert.Equal(2.5, metrics.MeanAcceptanceLength);   // empty drafts do not dilute it
        Assert.Equal(7.0 / 4.0, metrics.MeanTokensPerStep); // but they do count per step
        Assert.Equal([1L, 1L, 1L], metrics.AcceptedPerPosition);
    }

    [Fact]
    public void OnlyEmptyDrafts_KeepMeanAcceptanceLengthAtOne()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(0, 0, 1, TimeSpan.Zero);

        Assert.Equal(1, metrics.Steps);
        Assert.Equal(0, metrics.Drafts);
        Assert.Equal(1.0, metrics.MeanAcceptanceLength);
        Assert.Equal(1.0, metrics.MeanTokensPerStep);
        Assert.Equal(0.0, metrics.AcceptanceRate);
        Assert.Empty(metrics.AcceptedPerPosition);
    }

    [Fact]
    public void AcceptedPerPosition_IsAHistogramOfReachedDepths()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(4, 3, 4, TimeSpan.Zero);
        metrics.RecordStep(4, 1, 2, TimeSpan.Zero);
        metrics.RecordStep(4, 0, 1, TimeSpan.Zero);
        metrics.RecordStep(20, 20, 21, TimeSpan.Zero); // past the initial 16 positions

        long[] expected = new long[20];
        Array.Fill(expected, 1L);
        expected[0] = 3;
        expected[1] = 2;
        expected[2] = 2;
        Assert.Equal(expected, metrics.AcceptedPerPosition);
        Assert.Equal(metrics.AcceptedTokens, metrics.AcceptedPerPosition.Sum());
    }

    [Fact]
    public void AcceptedPerPosition_GrowsPastManyDoublings()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(17, 17, 18, TimeSpan.Zero);
        metrics.RecordStep(100, 100, 101, TimeSpan.Zero);

        long[] perPosition = metrics.AcceptedPerPosition;
        Assert.Equal(100, perPosition.Length);
        Assert.All(perPosition.AsSpan(0, 17).ToArray(), c => Assert.Equal(2, c));
        Assert.All(perPosition.AsSpan(17).ToArray(), c => Assert.Equal(1, c));
    }

    [Fact]
    public void AcceptedPerPosition_IsACopy()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(2, 2, 3, TimeSpan.Zero);

        metrics.AcceptedPerPosition[0] = 99;

        Assert.Equal([1L, 1L], metrics.AcceptedPerPosition);
    }

    [Fact]
    public void Add_MergesEveryCounter()
    {
        var a = new SpeculationMetrics();
        a.RecordStep(3, 2, 3, TimeSpan.FromTicks(10));
        a.RecordStep(0, 0, 1, TimeSpan.FromTicks(1));
        var b = new SpeculationMetrics();
        b.RecordStep(40, 40, 41, TimeSpan.FromTicks(100)); // longer histogram than a's buffer
        b.RecordStep(5, 1, 2, TimeSpan.FromTicks(1000));

        a.Add(b);

        Assert.Equal(4, a.Steps);
        Assert.Equal(3, a.Drafts);
        Assert.Equal(48, a.DraftTokens);
        Assert.Equal(43, a.AcceptedTokens);
        Assert.Equal(47, a.EmittedTokens);
        Assert.Equal(TimeSpan.FromTicks(1111), a.DraftingTime);
        Assert.Equal(1.0 + 43.0 / 3.0, a.MeanAcceptanceLength);
        long[] expected = new long[40];
        Array.Fill(expected, 1L);
        expected[0] = 3;
        expected[1] = 2;
        Assert.Equal(expected, a.AcceptedPerPosition);
        // b is unchanged.
        Assert.Equal(2, b.Steps);
        Assert.Equal(41, b.AcceptedTokens);
    }

    [Fact]
    public void Add_IntoEmpty_CopiesAndFromEmpty_ChangesNothing()
    {
        var source = new SpeculationMetrics();
        source.RecordStep(3, 2, 3, TimeSpan.FromTicks(10));
        var total = new SpeculationMetrics();

        total.Add(source);
        total.Add(new SpeculationMetrics());

        Assert.Equal(source.Steps, total.Steps);
        Assert.Equal(source.AcceptedTokens, total.AcceptedTokens);
        Assert.Equal(source.AcceptedPerPosition, total.AcceptedPerPosition);
        Assert.Equal(source.MeanAcceptanceLength, total.MeanAcceptanceLength);
    }

    [Fact]
    public void Add_Itself_Doubles()
    {
        var metrics = new SpeculationMetrics();
        metrics.RecordStep(3, 2, 3, TimeSpan.FromTicks(10));

        metrics.Add(metrics);

        Assert.Equal(2, metrics.Steps);
        Assert.Equal(4, metrics.AcceptedTokens);
        Assert.Equal([2L, 2L], metrics.AcceptedPerPosition);
    }

    [Fact]
    public void Add_WhileSourceIsRecording_MergesAConsistentSnapshot()
    {
        // Every RecordStep keeps sum(AcceptedPerPosition) == AcceptedTokens, so Add of any consistent snapshot of the
        // source keeps it too. Add must not read the histogram and the counters of the source at different moments.
        // The loop stops at the first inconsistency (or after 2 s); with a correct Add it never finds one.
        var source = new SpeculationMetrics();
        using var stop = new CancellationTokenSource();
        var writer = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                source.RecordStep(3, 2, 3, TimeSpan.Zero);
            }
        });
        writer.Start();
        string? inconsistency = null;
        try
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            for (int i = 0; inconsistency is null && clock.ElapsedMilliseconds < 2_000; i++)
            {
                var total = new SpeculationMetrics();
                total.Add(source);
                long histogram = total.AcceptedPerPosition.Sum();
                if (histogram != total.AcceptedTokens)
                {
                    inconsistency = $"merge {i}: sum(AcceptedPerPosition) = {histogram}, AcceptedTokens = {total.AcceptedTokens}";
                }
            }
        }
        finally
        {
            stop.Cancel();
            writer.Join();
        }

        Assert.Null(inconsistency);
    }

    [Fact]
    public void Add_Null_Throws()
    {
        Assert.Throws<ArgumentNullException>(() => new SpeculationMetrics().Add(null!));
    }

    [Theory]
    [InlineData(-1, 0, 0, "draftTokens")]
    [InlineData(0, -1, 0, "acceptedTokens")]
    [InlineData(1, 0, -1, "emittedTokens")]
    [InlineData(2, 3, 4, "acceptedTokens")]   // more accepted than drafted
    [InlineData(0, 1, 2, "acceptedTokens")]
    public void RecordStep_RejectsInvalidCounts_AndRecordsNothing(int draft, int accepted, int emitted, string parameter)
    {
        var metrics = new SpeculationMetrics();

        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => metrics.RecordStep(draft, accepted, emitted, TimeSpan.Zero));

        Assert.Equal(parameter, ex.ParamName);
        Assert.Equal(0, metrics.Steps);
        Assert.Equal(0, metrics.EmittedTokens);
    }

    [Fact]
    public void ManyThreadsRecording_GiveExactTotals()
    {
        const int Threads = 8;
        const int StepsPerThread = 20_000;
        var metrics = new SpeculationMetrics();
        using var start = new Barrier(Threads + 1);
        var readerErrors = 0;

        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < StepsPerThread; i++)
            {
                // Step kind i % 4: empty draft, all-rejected, half accepted, all accepted (depth 40: forces resizes).
                switch (i % 4)
                {
                    case 0: metrics.RecordStep(0, 0, 1, TimeSpan.FromTicks(1)); break;
                    case 1: metrics.RecordStep(5, 0, 1, TimeSpan.FromTicks(1)); break;
                    case 2: metrics.RecordStep(6, 3, 4, TimeSpan.FromTicks(1)); break;
                    default: metrics.RecordStep(40, 40, 41, TimeSpan.FromTicks(1)); break;
                }
            }
        })).ToList();
        var reader = new Thread(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < 2_000; i++)
            {
                long[] perPosition = metrics.AcceptedPerPosition;
                // Position counts never increase with depth in any snapshot.
                for (int p = 1; p < perPosition.Length; p++)
                {
                    if (perPosition[p] > perPosition[p - 1])
                    {
                        Interlocked.Increment(ref readerErrors);
                    }
                }
            }
        });
        workers.ForEach(w => w.Start());
        reader.Start();
        workers.ForEach(w => w.Join());
        reader.Join();

        const long Quarter = Threads * StepsPerThread / 4;
        Assert.Equal(0, readerErrors);
        Assert.Equal(Threads * StepsPerThread, metrics.Steps);
        Assert.Equal(3 * Quarter, metrics.Drafts);
        Assert.Equal(Quarter * (5 + 6 + 40), metrics.DraftTokens);
        Assert.Equal(Quarter * (3 + 40), metrics.AcceptedTokens);
        Assert.Equal(Quarter * (1 + 1 + 4 + 41), metrics.EmittedTokens);
        Assert.Equal(TimeSpan.FromTicks(Threads * StepsPerThread), metrics.DraftingTime);
        long[] perPosition = metrics.AcceptedPerPosition;
        Assert.Equal(40, perPosition.Length);
        for (int p = 0; p < 40; p++)
        {
            Assert.Equal(p < 3 ? 2 * Quarter : Quarter, perPosition[p]);
        }
    }

    [Fact]
    public void ManyThreadsAdding_GiveExactTotals()
    {
        var total = new SpeculationMetrics();
        Parallel.For(0, 64, i =>
        {
            var part = new SpeculationMetrics();
            part.RecordStep(i + 1, i + 1, i + 2, TimeSpan.FromTicks(1));
            total.Add(part);
        });

        Assert.Equal(64, total.Steps);
        Assert.Equal(64, total.Drafts);
        Assert.Equal(64 * 65 / 2, total.AcceptedTokens);
        long[] perPosition = total.AcceptedPerPosition;
        Assert.Equal(64, perPosition.Length);
        for (int p = 0; p < 64; p++)
        {
            Assert.Equal(64 - p, perPosition[p]);
        }
    }
}
