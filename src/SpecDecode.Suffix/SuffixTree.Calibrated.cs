namespace SpecDecode.Suffix;

public sealed partial class SuffixTree
{
    [ThreadStatic] private static PriorityQueue<(int Node, int Idx, int Parent, float Prob, int Depth, int Cell), float>? t_calibratedQueue;

    /// <summary>
    /// Calibrated drafting: for every match length, grows a draft whose tokens' cumulative acceptance estimates (from
    /// <paramref name="model"/>) stay at or above <paramref name="minCumulative"/>, and keeps the draft with the highest
    /// expected number of accepted tokens (longer match on a tie). The match-length rule is not applied: the model has
    /// learned how far each match length can be trusted.
    /// </summary>
    internal void SpeculateCalibrated(ReadOnlySpan<int> context, int budget, float minCumulative, bool useTree, int source,
        AcceptanceModel model, ref DraftBuffer best, ref DraftBuffer scratch, DraftTrie? merge = null)
    {
        best.Reset(budget);
        if (budget == 0)
        {
            return;
        }
        int maxMatch = Math.Min(context.Length, _maxDepth);
        long lastOccurrence = -1;
        for (int m = 1; m <= maxMatch; m++)
        {
            if (!Match(context[^m..], out int node, out int idx))
            {
                break;
            }
            if (merge is not null)
            {
                // A second candidate per match: what followed the occurrence the node references, read straight from
                // the stored sequence (the most recent occurrence where references are kept fresh), as prompt lookup does.
                long occurrence = ((long)_nodes[node].RefSeq << 32) | (uint)(_nodes[node].RefIdx + idx);
                if (occurrence != lastOccurrence)
                {
                    lastOccurrence = occurrence;
                    scratch.Reset(budget);
                    scratch.MatchLength = m;
                    ContinuationFrom(node, idx, m, budget, minCumulative, source + AcceptanceModel.RecentOffset, model, ref scratch);
                    merge.Add(scratch);
                }
            }
            scratch.Reset(budget);
            scratch.MatchLength = m;
            if (useTree)
            {
                CalibratedTreeFrom(node, idx, m, budget, minCumulative, source, model, ref scratch);
            }
            else
            {
                CalibratedPathFrom(node, idx, m, budget, minCumulative, source, model, ref scratch);
            }
            merge?.Add(scratch);
            if (scratch.Count > 0 && scratch.Score >= best.Score)
            {
                (best, scratch) = (scratch, best);
            }
        }
    }

    /// <summary>The tokens that follow the node's referenced occurrence, as one chain.</summary>
    private void ContinuationFrom(int node, int idx, int m, int budget, float minCumulative, int source, AcceptanceModel model,
        ref DraftBuffer draft)
    {
        Sequence seq = _seqs[_nodes[node].RefSeq]!;
        int pos = _nodes[node].RefIdx + idx;
        int support = _nodes[node].Count;
        float cumulative = 1f;
        for (int k = 0; k < budget && pos + k < seq.Length; k++)
        {
            int cell = AcceptanceModel.Cell(source, m, k, support, support);
            cumulative *= model.Conditional(cell);
            if (cumulative < minCumulative)
            {
                return;
            }
            draft.Add(seq.Tokens[pos + k], k - 1, cumulative, cell);
        }
    }

    private void CalibratedPathFrom(int node, int idx, int m, int budget, float minCumulative, int source, AcceptanceModel model,
        ref DraftBuffer draft)
    {
        float cumulative = 1f;
        while (draft.Count < budget)
        {
            int count, parentCount, token;
            if (idx < _nodes[node].Length)
            {
                count = parentCount = _nodes[node].Count;
                token = TokenAt(_nodes[node].RefSeq, _nodes[node].RefIdx + idx);
                idx++;
            }
            else
            {
                int child = _nodes[node].HeadChild;
                if (child == Nil)
                {
                    return;
                }
                parentCount = _nodes[node].Count;
                count = _nodes[child].Count;
                node = child;
                token = _nodes[child].Token;
                idx = 1;
            }
            int cell = AcceptanceModel.Cell(source, m, draft.Count, count, parentCount);
            cumulative *= model.Conditional(cell);
            if (cumulative < minCumulative)
            {
                return;
            }
            draft.Add(token, draft.Count - 1, cumulative, cell);
        }
    }

    private void CalibratedTreeFrom(int node, int idx, int m, int budget, float minCumulative, int source, AcceptanceModel model,
        ref DraftBuffer draft)
    {
        // Candidates are single tokens with their cumulative estimate: (node, label index of the token, draft parent,
        // estimate, draft depth of the token, model cell). Best-first by estimate.
        var queue = t_calibratedQueue ??= new PriorityQueue<(int, int, int, float, int, int), float>();
        queue.Clear();
        PushSuccessors(queue, node, idx, -1, 1f, 0, m, minCumulative, source, model);
        while (draft.Count < budget && queue.TryDequeue(out var item, out _))
        {
            (int n, int i, int _, float p, int depth, int cell) = item;
            draft.Add(TokenAt(_nodes[n].RefSeq, _nodes[n].RefIdx + i), item.Parent, p, cell);
            PushSuccessors(queue, n, i + 1, draft.Count - 1, p, depth + 1, m, minCumulative, source, model);
        }
        queue.Clear();
    }

    // Children beyond this many, or with under 1/20 of the parent's count, are not considered for tree drafts.
    private const int MaxTreeChildren = 16;

    private void PushSuccessors(PriorityQueue<(int Node, int Idx, int Parent, float Prob, int Depth, int Cell), float> queue,
        int node, int nextIdx, int parent, float prob, int depth, int m, float minCumulative, int source, AcceptanceModel model)
    {
        if (nextIdx < _nodes[node].Length)
        {
            int count = _nodes[node].Count;
            int cell = AcceptanceModel.Cell(source, m, depth, count, count);
            float p = prob * model.Conditional(cell);
            if (p >= minCumulative)
            {
                queue.Enqueue((node, nextIdx, parent, p, depth, cell), -p);
            }
            return;
        }
        int parentCount = _nodes[node].Count;
        int seen = 0;
        for (int c = _nodes[node].HeadChild; c != Nil && seen < MaxTreeChildren; c = _nodes[c].NextSibling, seen++)
        {
            int count = _nodes[c].Count;
            if (count * 20 < parentCount)
            {
                break;
            }
            int cell = AcceptanceModel.Cell(source, m, depth, count, parentCount);
            float p = prob * model.Conditional(cell);
            if (p >= minCumulative)
            {
                queue.Enqueue((c, 0, parent, p, depth, cell), -p);
            }
        }
    }
}
