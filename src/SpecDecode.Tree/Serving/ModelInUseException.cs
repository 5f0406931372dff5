namespace SpecDecode.Tree;

/// <summary>
/// Thrown by <see cref="SpeculativeEngine.Create"/> when the <see cref="TargetModel"/> already serves another engine
/// that has not been disposed. An engine owns its model's KV-cache slots and runs the model on its own thread; two
/// engines on one model would overwrite each other's caches and produce wrong tokens without any error. Dispose the
/// first engine (the model is free again then), or load a second model for the second engine.
/// </summary>
public sealed class ModelInUseException : SpecDecodeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is in use and what to do.</param>
    public ModelInUseException(string message) : base(message) { }
}
