using SpecDecode.Tree;

namespace SpecDecode.Hosting;

/// <summary>A model to load, fitted before its weights load: the folder, its config and the options the context and
/// memory checks passed (<see cref="ModelLoader.Plan"/>).</summary>
/// <param name="Folder">The checkpoint folder.</param>
/// <param name="Config">Its config.json.</param>
/// <param name="Options">The options to load it with; <see cref="TargetModelOptions.MaxContext"/> is the fitted context.</param>
public sealed record ModelPlan(string Folder, ModelConfig Config, TargetModelOptions Options)
{
    /// <summary>The fitted context (tokens per sequence).</summary>
    public int Context => Options.MaxContext;
}
