using System.Globalization;

namespace SpecDecode.CommandLine;

/// <summary>
/// The checks a tool makes between reading a checkpoint's config.json and loading its weights, so that a setting past
/// what the model or the machine allows is refused with a message naming the option, never by libtorch's allocator or by
/// a silent stop: the context against the model's <c>max_position_embeddings</c>, the draft budget and the tokens to
/// generate against the context, the preallocated KV cache and weights against the memory available. Works on plain
/// numbers (from <c>ModelConfig</c> and <c>MemoryEstimate</c> of SpecDecode.Tree), so tools without TorchSharp can use
/// this library too.
/// </summary>
public static class ModelFit
{
    /// <summary>The default context when none is asked for: the model's own, capped here (a 128k-token model would
    /// otherwise preallocate a 128k-token KV cache per sequence).</summary>
    public const int DefaultContextCap = 4096;

    /// <summary>The context to use: <paramref name="requested"/> when given (refused past <paramref name="modelLimit"/>),
    /// else the model's limit capped at <paramref name="cap"/>.</summary>
    /// <param name="requested">The option's value, or null when not given.</param>
    /// <param name="modelLimit">The model's <c>max_position_embeddings</c>.</param>
    /// <param name="configPath">The config.json it came from, for the message.</param>
    /// <param name="option">The option's name, for the message.</param>
    /// <param name="cap">The default's cap.</param>
    /// <exception cref="ToolUsageException">The requested context is past the model's.</exception>
    public static int Context(int? requested, int modelLimit, string configPath, string option = "--max-context", int cap = DefaultContextCap)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(modelLimit, 1);
        if (requested is not int context)
        {
            return Math.Min(modelLimit, cap);
        }
        if (context > modelLimit)
        {
            throw new ToolUsageException(Invariant(
                $"{option} {context} is past the model's context of {modelLimit} tokens (max_position_embeddings in {configPath}): positions beyond it were never trained; give {option} {modelLimit} or less."));
        }
        return context;
    }

    /// <summary>The draft tokens per step: <paramref name="requested"/> when given (refused unless below the context),
    /// else <paramref name="defaultValue"/> capped below the context.</summary>
    /// <exception cref="ToolUsageException">The requested budget does not fit the context.</exception>
    public static int DraftBudget(int? requested, int context, string contextOption = "--max-context", string option = "--budget", int defaultValue = 32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 2);
        if (requested is not int budget)
        {
            return Math.Min(defaultValue, context - 1);
        }
        if (budget >= context)
        {
            throw new ToolUsageException(Invariant(
                $"{option} {budget} does not fit a context of {context} tokens ({contextOption}): a draft is verified inside the context; give {option} 0 .. {context - 1}, or raise {contextOption}."));
        }
        return budget;
    }

    /// <summary>The tokens to generate at most: <paramref name="requested"/> when given (refused unless below the
    /// context), else <paramref name="defaultValue"/> capped below the context. A prompt then takes its share: generation
    /// stops when the context is full, which the tool says in its summary.</summary>
    /// <exception cref="ToolUsageException">The requested count cannot fit the context even after an empty prompt.</exception>
    public static int MaxNewTokens(int? requested, int context, string contextOption = "--max-context", string option = "--max-new-tokens", int defaultValue = 256)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(context, 2);
        if (requested is not int tokens)
        {
            return Math.Min(defaultValue, context - 1);
        }
        if (tokens >= context)
        {
            throw new ToolUsageException(Invariant(
                $"{option} {tokens} cannot fit a context of {context} tokens ({contextOption}), which holds the prompt too; give {option} below {context}, or raise {contextOption}."));
        }
        return tokens;
    }

    /// <summary>Refuses a model whose weights and preallocated KV cache do not fit <paramref name="availableBytes"/>,
    /// saying how large a context would fit.</summary>
    /// <param name="weightBytes">The weights' bytes.</param>
    /// <param name="kvBytesPerToken">The KV cache's bytes per cached token of one sequence.</param>
    /// <param name="sequences">Sequences the cache holds (batch slots).</param>
    /// <param name="context">The context per sequence (the cache holds context + 1 positions).</param>
    /// <param name="availableBytes">Memory available for them.</param>
    /// <param name="where">Where the memory is, for the message ("this machine's memory").</param>
    /// <param name="option">The option that sets the context.</param>
    /// <exception cref="ToolUsageException">They do not fit.</exception>
    public static void EnsureMemory(long weightBytes, long kvBytesPerToken, int sequences, int context, long availableBytes,
        string where = "this machine's available memory", string option = "--max-context")
    {
        ArgumentOutOfRangeException.ThrowIfNegative(weightBytes);
        ArgumentOutOfRangeException.ThrowIfLessThan(kvBytesPerToken, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(sequences, 1);
        double cache = (double)kvBytesPerToken * sequences * (context + 1.0);
        if (weightBytes + cache <= availableBytes)
        {
            return;
        }
        long fits = (availableBytes - weightBytes) / Math.Max(1L, kvBytesPerToken * sequences) - 1;
        string advice = fits >= 16
            ? Invariant($"give {option} {fits} or less")
            : "the weights alone do not fit: use a machine with more memory or a smaller model";
        throw new ToolUsageException(Invariant(
            $"{option} {context} needs {Bytes(cache)} for the KV cache beside {Bytes(weightBytes)} of weights, more than {where} ({Bytes(availableBytes)}); {advice}."));
    }

    /// <summary>The memory this process can still allocate: MemAvailable of /proc/meminfo (Linux), capped by a container
    /// limit the runtime sees; else the runtime's figure. Null when neither is known.</summary>
    public static long? AvailableMemoryBytes()
    {
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                    && long.TryParse(line["MemAvailable:".Length..].Replace("kB", "", StringComparison.Ordinal).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long kb))
                {
                    long available = kb * 1024;
                    return limit > 0 ? Math.Min(available, limit) : available;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return limit > 0 ? limit : null;
    }

    /// <summary>Bytes in words (KB, MB, GB, TB; powers of 1024).</summary>
    public static string Bytes(double bytes)
    {
        string[] units = ["bytes", "KB", "MB", "GB", "TB", "PB"];
        int unit = 0;
        while (bytes >= 1024 && unit < units.Length - 1)
        {
            bytes /= 1024;
            unit++;
        }
        return Invariant($"{bytes:0.#} {units[unit]}");
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
