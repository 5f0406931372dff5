using TorchSharp;
using static TorchSharp.torch;

namespace SpecDecode.Tree;

/// <summary>
/// Greedy acceptance of a draft tree from the target's logits: starting at the root, accept the child whose token is
/// the target's argmax at its parent, as long as there is one; the argmax at the last accepted node is the bonus token.
/// With greedy decoding this emits exactly what plain decoding would (SpecInfer, Miao et al. 2023, greedy case).
/// </summary>
internal static class GreedyTreeVerifier
{
    /// <summary>Verifies one request's tree.</summary>
    /// <param name="rows">Logits [1 + nodes, vocab]: row 0 after the context's last token, row 1 + i after node i.</param>
    /// <param name="tree">The draft that was verified.</param>
    /// <returns>The accepted tokens followed by the bonus token (at least one token).</returns>
    public static int[] Verify(Tensor rows, DraftTree tree)
    {
        ArgumentNullException.ThrowIfNull(rows);
        ArgumentNullException.ThrowIfNull(tree);
        if (rows.dim() != 2 || rows.shape[0] != tree.Count + 1)
        {
            throw new ArgumentException($"Expected logits [{tree.Count + 1}, vocab] for a tree of {tree.Count} nodes, got [{string.Join(", ", rows.shape)}].", nameof(rows));
        }
        // The one host synchronisation: the argmax token of every row.
        using Tensor best = rows.argmax(-1);
        long[] argmax = best.data<long>().ToArray();
        var emitted = new List<int>();
        int node = -1;
        while (true)
        {
            int target = (int)argmax[node + 1];
            int next = -1;
            foreach (int child in tree.Children(node))
            {
                if (tree.Tokens[child] == target)
                {
                    next = child;
                    break;
                }
            }
            emitted.Add(target);
            if (next < 0)
            {
                return emitted.ToArray();
            }
            node = next;
        }
    }
}
