using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpecDecode.Check;

/// <summary>One comparison of our logits with transformers'.</summary>
/// <param name="Name">What was compared, e.g. <c>prompt_logits</c>.</param>
/// <param name="Description">How our side was computed.</param>
/// <param name="Rows">Logit rows compared.</param>
/// <param name="MaxAbsError">max |ours - theirs|.</param>
/// <param name="MaxAbsReference">max |theirs|.</param>
/// <param name="RelativeError">MaxAbsError / MaxAbsReference (NaN anywhere in ours makes it NaN, which fails).</param>
/// <param name="ArgmaxAgreement">Rows whose argmax is the same token on both sides, out of <paramref name="Rows"/>.</param>
/// <param name="Passed">Whether <paramref name="RelativeError"/> is under the tolerance.</param>
public sealed record LogitsCheck(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("description")] string Description,
    [property: JsonPropertyName("rows")] int Rows,
    [property: JsonPropertyName("max_abs_error")] double MaxAbsError,
    [property: JsonPropertyName("max_abs_reference")] double MaxAbsReference,
    [property: JsonPropertyName("relative_error")] double RelativeError,
    [property: JsonPropertyName("argmax_agreement")] int ArgmaxAgreement,
    [property: JsonPropertyName("passed")] bool Passed);

/// <summary>One greedy decoding run compared with its reference continuation.</summary>
/// <param name="Name">The run, e.g. <c>speculative chain+siblings</c>.</param>
/// <param name="Description">How it drafted.</param>
/// <param name="Reference">What it is compared with (<c>transformers</c> or <c>plain greedy</c>).</param>
/// <param name="Tokens">Tokens compared.</param>
/// <param name="Steps">Verification steps taken.</param>
/// <param name="AcceptedDraftTokens">Draft tokens accepted over all steps.</param>
/// <param name="FirstMismatch">Index of the first differing token, or -1.</param>
/// <param name="Expected">The reference tokens.</param>
/// <param name="Actual">The tokens decoded.</param>
/// <param name="TieMargin">At the first mismatch: how far the lower of the two tokens' logits lies below the row's top
/// logit, over max |logit| of the row, in a fresh forward of the common prefix; null when they agree.</param>
/// <param name="NearTie">Whether <paramref name="TieMargin"/> is under the logits tolerance: the two tokens are tied within
/// the precision checked, so the divergence is rounding, not a bug, and what follows it is not compared.</param>
/// <param name="Passed">Whether they are equal, or diverge at a near tie; always true for an informative comparison.</param>
public sealed record GenerationCheck(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("description")] string Description,
    [property: JsonPropertyName("reference")] string Reference,
    [property: JsonPropertyName("tokens")] int Tokens,
    [property: JsonPropertyName("steps")] int Steps,
    [property: JsonPropertyName("accepted_draft_tokens")] int AcceptedDraftTokens,
    [property: JsonPropertyName("first_mismatch")] int FirstMismatch,
    [property: JsonPropertyName("expected")] int[] Expected,
    [property: JsonPropertyName("actual")] int[] Actual,
    [property: JsonPropertyName("tie_margin")] double? TieMargin,
    [property: JsonPropertyName("near_tie")] bool NearTie,
    [property: JsonPropertyName("passed")] bool Passed);

/// <summary>Everything one check of a checkpoint found.</summary>
public sealed class CheckReport
{
    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The checkpoint folder (full path).</summary>
    [JsonPropertyName("folder")]
    public required string Folder { get; init; }

    /// <summary>The architecture config.json names.</summary>
    [JsonPropertyName("architecture")]
    public required string Architecture { get; init; }

    /// <summary>The device the model ran on, e.g. <c>cpu</c> or <c>cuda</c>.</summary>
    [JsonPropertyName("device")]
    public required string Device { get; init; }

    /// <summary>The dtype the model computed in.</summary>
    [JsonPropertyName("dtype")]
    public required string DType { get; init; }

    /// <summary>The checkpoint's dtype (config.json, else expected.json, else float32).</summary>
    [JsonPropertyName("checkpoint_dtype")]
    public required string CheckpointDType { get; init; }

    /// <summary>The relative-error tolerance of the logits.</summary>
    [JsonPropertyName("tolerance")]
    public required double Tolerance { get; init; }

    /// <summary>The libtorch version.</summary>
    [JsonPropertyName("libtorch")]
    public required string LibTorch { get; init; }

    /// <summary>The logits comparisons.</summary>
    [JsonPropertyName("logits")]
    public required IReadOnlyList<LogitsCheck> Logits { get; init; }

    /// <summary>The greedy decoding comparisons.</summary>
    [JsonPropertyName("generation")]
    public required IReadOnlyList<GenerationCheck> Generation { get; init; }

    /// <summary>Seconds the checks took, loading included.</summary>
    [JsonPropertyName("seconds")]
    public required double Seconds { get; init; }

    /// <summary>Whether every logits check is under the tolerance and every decoding run reproduced its reference.</summary>
    [JsonPropertyName("passed")]
    public bool Passed => Logits.All(l => l.Passed) && Generation.All(g => g.Passed);

    /// <summary>Writes the report as indented JSON, creating the folder.</summary>
    public void Write(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, JsonSerializer.Serialize(this, JsonOptions));
    }
}
