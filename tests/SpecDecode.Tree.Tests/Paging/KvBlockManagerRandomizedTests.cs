using Xunit.Abstractions;

namespace SpecDecode.Tree.Tests.Paging;

/// <summary>
/// Thousands of random operations driven the way the engine will drive the manager (admit a prompt: match, share,
/// copy-on-write, allocate, prefill, register; step: write tree rows to the request's own blocks, accept, grow, register;
/// finish, cancel, preempt), each checked against <see cref="NaiveBlockIndex"/> and against a fake device: every block
/// position holds a fingerprint of the token prefix whose KV it would hold, so a shared or matched block that holds
/// another history, a block evicted while referenced, or a write into a shared block shows up as a wrong fingerprint.
/// </summary>
public sealed class KvBlockManagerRandomizedTests(ITestOutputHelper output)
{
    private const int Operations = 3000;

    [Theory]
    [InlineData(1, 4, 8, 3)]
    [InlineData(2, 4, 16, 2)]
    [InlineData(3, 4, 32, 4)]
    [InlineData(4, 4, 64, 3)]
    [InlineData(5, 2, 24, 2)]
    [InlineData(6, 1, 40, 3)]
    [InlineData(7, 8, 16, 5)]
    public void RandomEngineTrafficMatchesNaiveReference(int seed, int blockSize, int blockCount, int alphabet)
    {
        var run = new Simulation(seed, blockSize, blockCount, alphabet);
        for (int op = 0; op < Operations; op++)
        {
            run.Step();
            run.CompareAll();
        }
        run.ReleaseEverything();
        output.WriteLine($"finished {run.Stats.Finished}, full shares {run.Stats.FullShares}, partial copies {run.Stats.PartialCopies}, " +
            $"evictions {run.Reference.Evictions}, refusals {run.Stats.Refusals}, preemptions {run.Stats.Preemptions}, " +
            $"duplicates {run.Reference.Duplicates}, shadow drops {run.Reference.ShadowDrops}, extensions {run.Reference.Extensions}, held idle seen {run.Stats.HeldIdle}");

        // Every path was exercised (a run that never shares, copies, evicts or refuses proves little).
        Assert.True(run.Stats.FullShares > 0, "no full block was ever shared");
        Assert.True(blockSize == 1 || run.Stats.PartialCopies > 0, "no partial block was ever copied"); // none with B = 1
        Assert.True(run.Reference.Evictions > 0, "nothing was ever evicted");
        Assert.True(run.Stats.Refusals + run.Stats.Preemptions > 0, "the pool never ran out");
        Assert.True(run.Stats.Finished > 20, $"only {run.Stats.Finished} sequences finished");
        Assert.True(run.Reference.Duplicates > 0, "no duplicate registration");
        Assert.True(run.Stats.HeldIdle > 0, "no idle block ever sat above a referenced one");
        Assert.True(blockSize == 1 || run.Reference.Extensions > 0, "no partial leaf ever grew in place");
        Assert.True(blockSize == 1 || run.Reference.ShadowDrops > 0, "no shadowed partial leaf was ever dropped");
    }

    private sealed class Sequence
    {
        public List<int> Tokens { get; } = [];

        /// <summary>Fingerprints[p]: the fingerprint of Tokens[0..p].</summary>
        public List<long> Fingerprints { get; } = [];

        public List<int> Table { get; } = [];

        /// <summary>Positions whose KV is written (the last emitted token has none yet).</summary>
        public int KvLength { get; set; }

        public void Add(int token)
        {
            Fingerprints.Add(Next(Fingerprints.Count == 0 ? 0 : Fingerprints[^1], token));
            Tokens.Add(token);
        }
    }

    private sealed class Counters
    {
        public int FullShares { get; set; }

        public int PartialCopies { get; set; }

        public int Refusals { get; set; }

        public int Preemptions { get; set; }

        public int Finished { get; set; }

        /// <summary>Operations after which some idle cached block sat above a referenced one (not evictable yet).</summary>
        public int HeldIdle { get; set; }
    }

    /// <summary>The KV at a position depends on every token up to it: a rolling hash of the prefix stands for it.</summary>
    private static long Next(long fingerprint, int token) => unchecked(fingerprint * 1_000_003L + token + 7) | 1;

    private sealed class Simulation
    {
        private readonly Random _rng;
        private readonly int _b;
        private readonly int _alphabet;
        private readonly KvBlockManager _manager;
        private readonly long[] _device;
        private readonly List<Sequence> _live = [];
        private readonly List<int[]> _conversations = [];
        private readonly int[][] _systemPrompts;

        public Simulation(int seed, int blockSize, int blockCount, int alphabet)
        {
            _rng = new Random(seed);
            _b = blockSize;
            _alphabet = alphabet;
            _manager = new KvBlockManager(blockCount, blockSize);
            Reference = new NaiveBlockIndex(blockCount, blockSize);
            _device = new long[blockCount * blockSize];
            _systemPrompts = Enumerable.Range(0, 3).Select(_ => RandomTokens(_rng.Next(2, 3 * blockSize + 2))).ToArray();
        }

        public NaiveBlockIndex Reference { get; }

        public Counters Stats { get; } = new();

        private int MaxPromptTokens => Math.Max(2, _manager.BlockCount * _b / 2);

        public void Step()
        {
            int kind = _rng.Next(100);
            if (kind < 22 || _live.Count == 0)
            {
                Admit(NewPrompt());
            }
            else if (kind < 62)
            {
                Decode(_live[_rng.Next(_live.Count)]);
            }
            else if (kind < 74)
            {
                Finish(_live[_rng.Next(_live.Count)], register: _rng.Next(5) > 0);
            }
            else if (kind < 78)
            {
                Finish(_live[_rng.Next(_live.Count)], register: false, keep: false);
            }
            else if (kind < 90)
            {
                Probe();
            }
            else if (kind < 95)
            {
                Sequence s = _live[_rng.Next(_live.Count)];
                Register(s);
            }
            else
            {
                Misuse();
            }
        }

        private int[] RandomTokens(int n) => Enumerable.Range(0, n).Select(_ => _rng.Next(_alphabet)).ToArray();

        private int[] NewPrompt()
        {
            int[] prompt = _rng.Next(10) switch
            {
                < 4 when _conversations.Count > 0 =>
                    [.. _conversations[_rng.Next(_conversations.Count)], .. RandomTokens(_rng.Next(1, 2 * _b + 2))],
                < 7 => [.. _systemPrompts[_rng.Next(_systemPrompts.Length)], .. RandomTokens(_rng.Next(1, 2 * _b + 2))],
                _ => RandomTokens(_rng.Next(1, 3 * _b + 2)),
            };
            return prompt.Length > MaxPromptTokens ? prompt[^MaxPromptTokens..] : prompt;
        }

        /// <summary>Admits a prompt as the engine will: match, share, copy-on-write, allocate, prefill, register.</summary>
        private void Admit(int[] prompt)
        {
            PrefixMatch m = MatchAndCheck(prompt, prompt.Length - 1);
            _manager.Retain(m.FullBlocks);
            Reference.Retain(m.FullBlocks);
            if (m.HasPartial)
            {
                // Hold the copy's source so that the allocation below cannot evict it before the copy.
                _manager.Retain([m.PartialBlock]);
                Reference.Retain([m.PartialBlock]);
            }
            int needed = (prompt.Length + _b - 1) / _b - m.FullBlocks.Length;
            var got = new List<int>();
            if (!Allocate(needed, got))
            {
                Stats.Refusals++;
                int[] back = m.HasPartial ? [.. m.FullBlocks, m.PartialBlock] : m.FullBlocks;
                _manager.Release(back);
                Reference.Release(back);
                _conversations.Add(prompt);
                return;
            }
            var s = new Sequence();
            foreach (int t in prompt)
            {
                s.Add(t);
            }
            s.Table.AddRange(m.FullBlocks);
            s.Table.AddRange(got);
            Stats.FullShares += m.FullBlocks.Length > 0 ? 1 : 0;
            if (m.HasPartial)
            {
                Array.Copy(_device, m.PartialBlock * _b, _device, got[0] * _b, m.PartialTokens);
                _manager.Release(m.PartialBlock);
                Reference.Release([m.PartialBlock]);
                Stats.PartialCopies++;
            }
            for (int p = m.Tokens; p < prompt.Length; p++)
            {
                Write(s, p, s.Fingerprints[p]);
            }
            s.KvLength = prompt.Length;
            s.Add(_rng.Next(_alphabet));
            _live.Add(s);
            if (_rng.Next(10) < 7)
            {
                Register(s);
            }
        }

        /// <summary>One verification step: tree rows written after the cache into the request's own blocks, some accepted.</summary>
        private void Decode(Sequence s)
        {
            int draft = _rng.Next(0, _b + 2);
            int rows = 1 + draft;
            int neededBlocks = (s.KvLength + rows + _b - 1) / _b;
            var got = new List<int>();
            if (!Allocate(Math.Max(0, neededBlocks - s.Table.Count), got))
            {
                // Out of blocks: preempt (free everything, recompute later from the tokens so far).
                Stats.Preemptions++;
                _manager.Release(s.Table.ToArray());
                Reference.Release(s.Table);
                _live.Remove(s);
                _conversations.Add([.. s.Tokens]);
                return;
            }
            s.Table.AddRange(got);

            // Rows: the pending token at KvLength, then a chain of drafted tokens; the first `accepted` are right.
            int accepted = _rng.Next(0, draft + 1);
            int[] drafted = RandomTokens(draft);
            long fingerprint = s.Fingerprints[s.KvLength];
            Write(s, s.KvLength, fingerprint);
            for (int i = 0; i < draft; i++)
            {
                fingerprint = Next(fingerprint, drafted[i]);
                Write(s, s.KvLength + 1 + i, fingerprint);
            }
            for (int i = 0; i < accepted; i++)
            {
                s.Add(drafted[i]);
            }
            s.Add(_rng.Next(_alphabet));
            s.KvLength += 1 + accepted;

            // Blocks that only held rejected rows go back.
            int keep = (s.KvLength + 1 + _b - 1) / _b;
            if (s.Table.Count > keep && _rng.Next(2) == 0)
            {
                int[] surplus = s.Table.Skip(keep).ToArray();
                s.Table.RemoveRange(keep, s.Table.Count - keep);
                _manager.Release(surplus);
                Reference.Release(surplus);
            }
        }

        private void Finish(Sequence s, bool register, bool keep = true)
        {
            if (register)
            {
                Register(s);
            }
            _manager.Release(s.Table.ToArray());
            Reference.Release(s.Table);
            _live.Remove(s);
            if (keep)
            {
                _conversations.Add([.. s.Tokens]);
                Stats.Finished++;
            }
        }

        private void Register(Sequence s)
        {
            int[] tokens = s.Tokens.Take(s.KvLength).ToArray();
            _manager.Register(tokens, s.Table.ToArray());
            Reference.Register(tokens, s.Table);
        }

        /// <summary>A lookup that shares nothing: a conversation's prefix, a live sequence, or noise, under a random cap.</summary>
        private void Probe()
        {
            int[] tokens = _rng.Next(3) switch
            {
                0 when _conversations.Count > 0 => _conversations[_rng.Next(_conversations.Count)],
                1 when _live.Count > 0 => [.. _live[_rng.Next(_live.Count)].Tokens],
                _ => RandomTokens(_rng.Next(0, 4 * _b)),
            };
            if (tokens.Length > 0 && _rng.Next(2) == 0)
            {
                tokens = tokens[..(_rng.Next(tokens.Length) + 1)];
            }
            MatchAndCheck(tokens, _rng.Next(3) == 0 ? _rng.Next(0, tokens.Length + 2) : int.MaxValue);
        }

        /// <summary>Errors a caller can make: they throw and change nothing.</summary>
        private void Misuse()
        {
            int[] free = Enumerable.Range(0, _manager.BlockCount).Where(Reference.IsFree).ToArray();
            if (free.Length > 0)
            {
                int held = _live.Count > 0 ? _live[0].Table[0] : free[0];
                Assert.Throws<InvalidOperationException>(() => _manager.Retain([held, free[_rng.Next(free.Length)]]));
            }
            int[] unreferenced = Enumerable.Range(0, _manager.BlockCount).Where(b => Reference.RefCount[b] == 0).ToArray();
            if (unreferenced.Length > 0)
            {
                int u = unreferenced[_rng.Next(unreferenced.Length)];
                int[] table = _live.Count > 0 ? [.. _live[^1].Table, u] : [u];
                Assert.Throws<InvalidOperationException>(() => _manager.Release(table));
                Assert.Throws<InvalidOperationException>(() => _manager.Register(RandomTokens(_b), [u]));
            }
        }

        private bool Allocate(int count, List<int> got)
        {
            bool expected = Reference.AvailableBlocks >= count;
            bool ok = _manager.TryAllocate(count, got);
            Assert.Equal(expected, ok);
            if (!ok)
            {
                Assert.Empty(got);
                return false;
            }
            Reference.Allocate(got);
            foreach (int b in got)
            {
                // The new owner's data replaces whatever the block held.
                Array.Fill(_device, _rng.NextInt64(), b * _b, _b);
            }
            return true;
        }

        /// <summary>A write by <paramref name="s"/>: only ever into a block it alone holds, past what the index records.</summary>
        private void Write(Sequence s, int position, long fingerprint)
        {
            int block = s.Table[position / _b], slot = position % _b;
            Assert.Equal(1, _manager.RefCount(block));
            Assert.True(_manager.RegisteredTokens(block).Length <= slot,
                $"position {position} would overwrite a registered position of block {block}");
            _device[block * _b + slot] = fingerprint;
        }

        private PrefixMatch MatchAndCheck(int[] tokens, int maxTokens)
        {
            PrefixMatch m = _manager.Match(tokens, maxTokens);
            var (full, partialTokens, candidates) = Reference.Match(tokens, maxTokens);
            Assert.Equal(full, m.FullBlocks);
            Assert.Equal(partialTokens, m.PartialTokens);
            if (partialTokens > 0)
            {
                Assert.Contains(m.PartialBlock, candidates);
            }
            else
            {
                Assert.Equal(KvBlockManager.NoBlock, m.PartialBlock);
            }
            Assert.True(m.Tokens <= Math.Min(tokens.Length, maxTokens));

            // The matched positions hold the KV of exactly these tokens.
            long fingerprint = 0;
            for (int p = 0; p < m.Tokens; p++)
            {
                fingerprint = Next(fingerprint, tokens[p]);
                int block = p < m.FullBlocks.Length * _b ? m.FullBlocks[p / _b] : m.PartialBlock;
                Assert.Equal(fingerprint, _device[block * _b + p % _b]);
            }
            Reference.TouchMatch(m.FullBlocks, m.PartialBlock);
            return m;
        }

        public void CompareAll()
        {
            _manager.CheckIntegrity();
            Assert.Equal(Reference.FreeBlocks, _manager.FreeBlocks);
            Assert.Equal(Reference.IdleCachedBlocks, _manager.IdleCachedBlocks);
            Assert.Equal(Reference.AvailableBlocks, _manager.AvailableBlocks);
            Assert.Equal(Reference.ReferencedBlocks, _manager.ReferencedBlocks);
            Assert.Equal(Reference.Nodes.Count, _manager.RegisteredBlocks);
            int heldIdle = _manager.BlockCount - _manager.FreeBlocks - _manager.IdleCachedBlocks - _manager.ReferencedBlocks;
            Assert.Equal(Reference.Nodes.Keys.Count(b => Reference.RefCount[b] == 0) - Reference.IdleCachedBlocks, heldIdle);
            Stats.HeldIdle += heldIdle > 0 ? 1 : 0;
            for (int b = 0; b < _manager.BlockCount; b++)
            {
                Assert.Equal(Reference.RefCount[b], _manager.RefCount(b));
                bool registered = Reference.Nodes.TryGetValue(b, out NaiveBlockIndex.Node? node);
                Assert.Equal(registered, _manager.IsRegistered(b));
                if (node is null)
                {
                    continue;
                }
                Assert.Equal(node.Tokens, _manager.RegisteredTokens(b).ToArray());

                // A registered block holds the KV of its whole path from the root.
                int[] path = Reference.PathTokens(b);
                int start = path.Length - node.Tokens.Length;
                long fingerprint = 0;
                for (int p = 0; p < path.Length; p++)
                {
                    fingerprint = Next(fingerprint, path[p]);
                    if (p >= start)
                    {
                        Assert.Equal(fingerprint, _device[b * _b + p - start]);
                    }
                }
            }

            // Nothing a running sequence holds was overwritten (evicted, reallocated, or written by another).
            foreach (Sequence s in _live)
            {
                for (int p = 0; p < s.KvLength; p++)
                {
                    Assert.Equal(s.Fingerprints[p], _device[s.Table[p / _b] * _b + p % _b]);
                }
            }
        }

        public void ReleaseEverything()
        {
            foreach (Sequence s in _live.ToList())
            {
                Finish(s, register: true);
                CompareAll();
            }
            Assert.Equal(_manager.BlockCount, _manager.AvailableBlocks);
            Assert.Equal(0, _manager.ReferencedBlocks);

            // Everything cached can be evicted, and then the whole pool is free again.
            var all = new List<int>();
            Assert.True(_manager.TryAllocate(_manager.BlockCount, all));
            Reference.Allocate(all);
            Assert.Equal(0, _manager.RegisteredBlocks);
            _manager.Release(all.ToArray());
            Assert.Equal(_manager.BlockCount, _manager.FreeBlocks);
            _manager.CheckIntegrity();
        }
    }
}
