using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// The draft distributions behind sampled drafts, keyed by the <see cref="DraftTree"/> they produced, for the sampling
/// verifier: multi-step speculative sampling needs the distribution q each draft token was drawn from, not just the
/// token (SpecInfer, Miao et al. 2023, Algorithm 2).
/// </summary>
/// <remarks>
/// <para>For a chain of r tokens drawn by <see cref="DraftModelDrafter"/> the tensor is [r, V] float32 on the draft
/// model's device, V = the target's vocabulary size (<see cref="DraftModelDrafter.TargetVocabSize"/>): row 0 is the
/// distribution the first draft token was drawn from (the root's children), row j the one draft token j was drawn from
/// (node j − 1's children), after the request's temperature, top-k and top-p; columns past the draft's vocabulary are
/// 0. Each row sums to 1. This is the per-sequence layout the verifier takes (row 0 = the root's children, row j + 1 =
/// node j's children), less the row of the last node, which has no children.</para>
/// <para>The drafter owns the tensor: it stays valid until the next <see cref="IDrafter.Observe"/>,
/// <see cref="IDrafter.Propose"/> or <see cref="IDrafter.EndRequest"/> for the same request, or until the drafter is
/// disposed; then it is disposed and removed. Do not dispose it.</para>
/// </remarks>
internal static class DraftDistributions
{
    private static readonly ConditionalWeakTable<DraftTree, Tensor> s_table = new();

    /// <summary>The draft distributions of <paramref name="tree"/>, when it is a sampled draft still valid.</summary>
    /// <param name="tree">A tree returned by a drafter.</param>
    /// <param name="distributions">[r, V] float32 (see the remarks); null when the method returns false.</param>
    /// <returns>Whether the tree was drawn from registered distributions.</returns>
    public static bool TryGet(DraftTree tree, [NotNullWhen(true)] out Tensor? distributions)
    {
        ArgumentNullException.ThrowIfNull(tree);
        return s_table.TryGetValue(tree, out distributions);
    }

    /// <summary>Registers <paramref name="distributions"/> (owned by the caller) for <paramref name="tree"/>.</summary>
    internal static void Register(DraftTree tree, Tensor distributions) => s_table.AddOrUpdate(tree, distributions);

    /// <summary>Forgets <paramref name="tree"/>'s distributions (the caller disposes them).</summary>
    internal static void Remove(DraftTree tree) => s_table.Remove(tree);
}
