using System.Globalization;
using System.IO.Hashing;
using System.Text;
using SpecDecode.Fleet;

namespace SpecDecode.Server;

/// <summary>
/// The fleet identity of a checkpoint folder (<see cref="FleetIdentity"/>): what makes two replicas' token ids and
/// answers comparable, derived from the files, not from the folder's name or place. Two copies of one checkpoint get
/// one identity; a changed weight or tokenizer file gets another, so replicas of different models never share a
/// cache.
/// </summary>
/// <remarks>
/// <para>The model part is an XxHash128 of <c>config.json</c> and of every <c>*.safetensors</c> file, whole, in name
/// order (each file's name and length are hashed too); the tokenizer part an XxHash128 of the tokenizer files the
/// loader reads (<c>tokenizer.json</c>, <c>tokenizer.model</c>, <c>vocab.json</c>, <c>merges.txt</c>) and of
/// <c>added_tokens.json</c> and <c>special_tokens_map.json</c> when present. The chat template is left out: it does
/// not change token ids.</para>
/// <para>XxHash128 rather than SHA-256: this guards against mixing models by mistake, not against an attacker (a
/// broker's users are the fleet's own replicas), and it reads weights at memory speed, so hashing a checkpoint costs
/// about what reading it once from the page cache costs (the loader has just read it).</para>
/// </remarks>
public static class CheckpointIdentity
{
    private static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"];

    /// <summary>The identity of the checkpoint in <paramref name="folder"/>: model <c>weights-xxh128:&lt;32 hex&gt;</c>,
    /// tokenizer <c>tokenizer-xxh128:&lt;32 hex&gt;</c>.</summary>
    /// <exception cref="FileNotFoundException">The folder has no config.json, no safetensors file or no tokenizer file.</exception>
    public static FleetIdentity Of(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        string config = Path.Combine(folder, "config.json");
        if (!File.Exists(config))
        {
            throw new FileNotFoundException($"{config} is missing: a checkpoint folder needs its config.json for the fleet identity.", config);
        }
        string[] weights = Directory.GetFiles(folder, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (weights.Length == 0)
        {
            throw new FileNotFoundException($"{folder} holds no *.safetensors file to derive the fleet identity from.", folder);
        }
        string[] tokenizer = TokenizerFiles.Select(f => Path.Combine(folder, f)).Where(File.Exists).ToArray();
        if (tokenizer.Length == 0)
        {
            throw new FileNotFoundException($"{folder} holds no tokenizer file (tokenizer.json, tokenizer.model, or vocab.json with merges.txt) to derive the fleet identity from.", folder);
        }
        return new FleetIdentity("weights-xxh128:" + Hash([config, .. weights]), "tokenizer-xxh128:" + Hash(tokenizer));
    }

    /// <summary>The identity of benchmark mode's random-weight model of <paramref name="config"/>'s shape: its tokens are
    /// the replay protocol's o200k_base ids modulo the vocabulary, and its weights follow from the config (seed 1).</summary>
    public static FleetIdentity OfBenchmark(string config, int vocabularySize)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(config);
        return new FleetIdentity("benchmark-random-weights-seed1:" + Hash([config]),
            "o200k_base-mod-" + vocabularySize.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>XxHash128 over each file's name (not its folder), length and bytes, in the order given.</summary>
    private static string Hash(IEnumerable<string> files)
    {
        var hash = new XxHash128();
        byte[] buffer = new byte[1 << 20];
        foreach (string file in files)
        {
            using FileStream stream = new(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            hash.Append(Encoding.UTF8.GetBytes(Path.GetFileName(file) + "\n" + stream.Length.ToString(CultureInfo.InvariantCulture) + "\n"));
            int read;
            while ((read = stream.Read(buffer)) > 0)
            {
                hash.Append(buffer.AsSpan(0, read));
            }
        }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }
}
