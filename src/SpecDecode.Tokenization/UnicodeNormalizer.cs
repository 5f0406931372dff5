using System.Text;
using Microsoft.ML.Tokenizers;

namespace SpecDecode.Tokenization;

/// <summary>A Unicode normalization form as a Microsoft.ML.Tokenizers normalizer (the tokenizers library's <c>NFC</c>,
/// <c>NFD</c>, <c>NFKC</c> and <c>NFKD</c> normalizers; Qwen2 and Qwen3 use NFC).</summary>
internal sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
{
    /// <summary>Whether this process can apply <paramref name="form"/>: in globalization-invariant mode
    /// <see cref="string.Normalize(NormalizationForm)"/> returns non-ASCII text unchanged.</summary>
    public static bool IsAvailable(NormalizationForm form) => form switch
    {
        NormalizationForm.FormC => "e\u0301".Normalize(form) == "\u00e9",
        NormalizationForm.FormD => "\u00e9".Normalize(form) == "e\u0301",
        _ => "\uFB01".Normalize(form) == "fi",
    };

    /// <summary>The form applied.</summary>
    public NormalizationForm Form { get; } = form;

    /// <summary>Returns <paramref name="original"/> in <see cref="Form"/>.</summary>
    public override string Normalize(string original) => original.Normalize(Form);

    /// <summary>Returns <paramref name="original"/> in <see cref="Form"/>.</summary>
    public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(Form);
}
