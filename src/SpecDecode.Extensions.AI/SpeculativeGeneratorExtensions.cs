using Microsoft.Extensions.AI;

namespace SpecDecode.Extensions.AI;

/// <summary>Microsoft.Extensions.AI adapters for <see cref="ISpeculativeGenerator"/>.</summary>
public static class SpeculativeGeneratorExtensions
{
    /// <summary>Wraps <paramref name="generator"/> in a <see cref="SpeculativeChatClient"/>, which does not own it.</summary>
    /// <param name="generator">The engine; it needs a chat template for chat messages.</param>
    /// <param name="modelId">The model's name, reported in responses and metadata; null for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="generator"/> is null.</exception>
    public static IChatClient AsChatClient(this ISpeculativeGenerator generator, string? modelId = null) =>
        new SpeculativeChatClient(generator, modelId);
}
