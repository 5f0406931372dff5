namespace SpecDecode.Tree;

/// <summary>
/// Tensor parallelism refused or failed: a model that cannot be split over the world size asked for (the message names
/// the dimension and the world sizes that divide it), a communicator that cannot run here (no NCCL, no CUDA), or a rank
/// that failed during a step, after which the whole group is stopped (no rank waits for it forever) and the model must
/// be disposed and loaded again. See docs/tensor-parallel.md.
/// </summary>
internal class TensorParallelException : Exception
{
    /// <summary>Creates the exception with a message that says what to do.</summary>
    public TensorParallelException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}
