using System.Globalization;
using Spectre.Console;

namespace SpecDecode.Generate;

/// <summary>The end-of-run summary: the counters vLLM's spec-decode metrics use, and acceptance by draft position as a
/// bar chart.</summary>
public static class Summary
{
    /// <summary>Most positions the bar chart shows.</summary>
    public const int MaxPositions = 16;

    /// <summary>Writes the summary of <paramref name="s"/> under <paramref name="title"/>.</summary>
    public static void Write(IAnsiConsole console, string title, GenerationStatistics s, string drafter)
    {
        var grid = new Grid().AddColumn(new GridColumn().PadRight(2)).AddColumn();
        void Row(string name, string value) => grid.AddRow(new Text(name), new Text(value));
        Row("Drafter", drafter);
        Row("Prompt tokens", s.PromptTokens.ToString(CultureInfo.InvariantCulture));
        Row("Generated tokens", s.GeneratedTokens.ToString(CultureInfo.InvariantCulture));
        Row("Steps", s.Steps.ToString(CultureInfo.InvariantCulture));
        Row("Tokens per step", s.MeanTokensPerStep.ToString("F2", CultureInfo.InvariantCulture));
        Row("Drafts", s.Drafts.ToString(CultureInfo.InvariantCulture));
        Row("Acceptance rate", string.Create(CultureInfo.InvariantCulture,
            $"{s.AcceptanceRate:P1} ({s.AcceptedTokens} of {s.DraftTokens} draft tokens accepted)"));
        Row("Mean acceptance length", s.MeanAcceptanceLength.ToString("F2", CultureInfo.InvariantCulture));
        Row("Tokens per second", s.TokensPerSecond.ToString("F1", CultureInfo.InvariantCulture));
        Row("Time", string.Create(CultureInfo.InvariantCulture,
            $"{(s.TotalTime - s.QueueTime).TotalSeconds:F2} s (prefill {s.PrefillTime.TotalSeconds:F2} s, drafting {s.DraftingTime.TotalSeconds:F2} s, verification {s.VerificationTime.TotalSeconds:F2} s)"));
        console.Write(new Rule(Markup.Escape(title)).LeftJustified());
        console.Write(grid);
        WriteChart(console, s);
    }

    /// <summary>The bar chart of drafts whose accepted path reached each depth.</summary>
    public static void WriteChart(IAnsiConsole console, GenerationStatistics s)
    {
        if (s.AcceptedPerPosition.Count == 0 || s.AcceptedPerPosition.All(n => n == 0))
        {
            console.WriteLine(s.Drafts == 0 ? "Acceptance by position: no drafts were verified." : "Acceptance by position: no draft token was accepted.");
            return;
        }
        var chart = new BarChart()
            .Label(string.Create(CultureInfo.InvariantCulture, $"Acceptance by position: drafts (of {s.Drafts}) accepted to depth d"))
            .Width(Math.Min(72, console.Profile.Width));
        int shown = Math.Min(MaxPositions, s.AcceptedPerPosition.Count);
        for (int i = 0; i < shown; i++)
        {
            chart.AddItem(string.Create(CultureInfo.InvariantCulture, $"d={i + 1}"), s.AcceptedPerPosition[i], Color.Green);
        }
        console.Write(chart);
        if (s.AcceptedPerPosition.Count > shown)
        {
            console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"(depths {shown + 1} .. {s.AcceptedPerPosition.Count} not shown)"));
        }
    }
}
