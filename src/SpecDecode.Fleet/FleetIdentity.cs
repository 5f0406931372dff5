using System.Text;

namespace SpecDecode.Fleet;

/// <summary>
/// What a response's token ids mean: the model that generated them and the tokenizer that numbers them. A replica
/// ingests only responses of its own identity, so replicas of different models (or of one model under two tokenizers)
/// can share one broker without mixing their caches.
/// </summary>
/// <param name="Model">The model, e.g. <c>meta-llama/Llama-3.1-8B-Instruct@0e9e39f</c> (name plus revision).</param>
/// <param name="Tokenizer">The tokenizer, e.g. <c>llama3@sha256:…</c> or <c>o200k_base</c>.</param>
public sealed record FleetIdentity(string Model, string Tokenizer)
{
    /// <summary>Longest name, in UTF-8 bytes, of either part.</summary>
    public const int MaxPartBytes = 1024;

    /// <summary>Throws when a part is empty or too long.</summary>
    /// <exception cref="ArgumentException">A part is empty, whitespace or longer than <see cref="MaxPartBytes"/> bytes.</exception>
    public void Validate()
    {
        Check(Model, nameof(Model));
        Check(Tokenizer, nameof(Tokenizer));
    }

    private static void Check(string value, string name)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            throw new ArgumentException($"FleetIdentity.{name} must name the {name.ToLowerInvariant()} (e.g. its name and revision).", name);
        }
        if (Encoding.UTF8.GetByteCount(value) > MaxPartBytes)
        {
            throw new ArgumentException($"FleetIdentity.{name} is longer than {MaxPartBytes} UTF-8 bytes; use a shorter name or a hash.", name);
        }
    }
}
