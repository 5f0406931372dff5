using BenchmarkDotNet.Attributes;
using SpecDecode.Tree;

namespace SpecDecode.Benchmarks;

/// <summary>
/// The paged KV cache's host bookkeeping at the issue-17 serving scale: an index holding 100 conversations of 32k tokens
/// behind one 2k-token system prompt (about 192k blocks of 16 tokens), pool 200k blocks. Figures are per call.
/// Synthetic token ids (uniform over a 128k vocabulary): the cost depends on lengths and block counts, not on the text.
/// </summary>
[MemoryDiagnoser]
public class KvBlockManagerBenchmarks
{
    private const int Conversations = 100;
    private const int Length = 32_768;
    private const int SystemPrompt = 2048;
    private const int NewTokens = 1024;
    private const int Vocabulary = 128_000;

    private KvBlockManager _manager = null!;
    private int[] _continued = null!;
    private int[] _fresh = null!;
    private int[] _held = null!;
    private int[] _heldTokens = null!;
    private readonly List<int> _table = [];
    private int _unique;

    /// <summary>Tokens per block.</summary>
    [Params(16)]
    public int BlockSize { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(17);
        int[] system = [.. Enumerable.Range(0, SystemPrompt).Select(_ => rng.Next(Vocabulary))];
        int[][] prompts = [.. Enumerable.Range(0, Conversations)
            .Select(_ => (int[])[.. system, .. Enumerable.Range(0, Length - SystemPrompt).Select(_ => rng.Next(Vocabulary))])];
        _manager = new KvBlockManager(200_000, BlockSize);
        foreach (int[] prompt in prompts)
        {
            PrefixMatch shared = _manager.Match(prompt);
            _manager.Retain(shared.FullBlocks);
            List<int> table = [.. shared.FullBlocks];
            if (!_manager.TryAllocate(Length / BlockSize - table.Count, table))
            {
                throw new InvalidOperationException("The benchmark's pool is too small for its index.");
            }
            _manager.Register(prompt, table.ToArray());
            _manager.Release(table.ToArray());
        }

        // A continued call of conversation 57: its whole previous prompt plus 1k new tokens (the first one made unique
        // per invocation, so that every admitted call adds new blocks and the pool reaches steady-state eviction).
        _continued = [.. prompts[57], .. Enumerable.Range(0, NewTokens).Select(_ => Vocabulary + rng.Next(Vocabulary))];
        _fresh = [.. system, .. Enumerable.Range(0, Length - SystemPrompt).Select(_ => rng.Next(Vocabulary))];

        // A running sequence holding conversation 12's blocks, to register again (the release-time registration).
        _heldTokens = prompts[12];
        PrefixMatch held = _manager.Match(_heldTokens);
        _manager.Retain(held.FullBlocks);
        _held = held.FullBlocks;
    }

    /// <summary>Lookup of a continued 33k-token call: 2,048 blocks shared, a miss after them.</summary>
    [Benchmark]
    public int MatchContinuedCall() => _manager.Match(_continued, _continued.Length - 1).Tokens;

    /// <summary>Lookup of a new 32k-token conversation: the system prompt's 128 blocks, then the longest-prefix search.</summary>
    [Benchmark]
    public int MatchNewConversation() => _manager.Match(_fresh, _fresh.Length - 1).Tokens;

    /// <summary>Registering a 32k-token sequence whose blocks are all in the index already (follows 2,048 nodes).</summary>
    [Benchmark]
    public void RegisterExisting() => _manager.Register(_heldTokens, _held);

    /// <summary>
    /// The engine's bookkeeping for one continued call, start to end: match, share, allocate 64 blocks for the new
    /// tokens (evicting least recently used leaves once the pool is full), register, release.
    /// </summary>
    [Benchmark]
    public int AdmitAndFinishContinuedCall()
    {
        _continued[Length] = 2 * Vocabulary + _unique++;
        PrefixMatch shared = _manager.Match(_continued, _continued.Length - 1);
        _manager.Retain(shared.FullBlocks);
        _table.Clear();
        _table.AddRange(shared.FullBlocks);
        int needed = (_continued.Length + BlockSize - 1) / BlockSize - _table.Count;
        if (!_manager.TryAllocate(needed, _table))
        {
            throw new InvalidOperationException("Out of blocks: nothing should be held but one conversation.");
        }
        ReadOnlySpan<int> table = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_table);
        _manager.Register(_continued, table);
        _manager.Release(table);
        return shared.Tokens;
    }
}
