using System.IO.Compression;
using System.Text;
using Microsoft.ML.Tokenizers;
using SpecDecode.Replay;
using SpecDecode.Tokenization;

namespace SpecDecode.Fuzz;

/// <summary>tokenizer.json through CheckpointTokenizer.Load; a tokenizer that loads must encode and decode a text.</summary>
internal sealed class TokenizerTarget : FuzzTarget
{
    private const string Sample = "THOUGHT: check the test.\n```bash\ngrep -rn \"def validate\" src/\n```<|im_end|>";

    public override string Name => "tokenizer";

    public override string FileName => "tokenizer.json";

    public override bool IsTyped(Exception error) => error is TokenizerLoadException;

    public override void Parse(string folder)
    {
        Tokenizer tokenizer = CheckpointTokenizer.Load(folder);
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(Sample);
        _ = tokenizer.Decode(ids);
    }

    protected override byte[] CorruptOnce(byte[] bytes, Random random, out string description) => CorruptJson(bytes, random, out description);
}

/// <summary>A gzip JSONL trace through TraceReader.Scan (which validates every line): a line's JSON, whole lines, the
/// compressed bytes and the gzip trailer are corrupted.</summary>
internal sealed class TraceTarget : FuzzTarget
{
    public override string Name => "trace";

    public override string FileName => SeedFiles.TraceFile;

    public override bool IsTyped(Exception error) => error is TraceFormatException;

    public override void Parse(string folder) => TraceReader.Open(Path.Combine(folder, FileName), tokenizer: null).Scan();

    protected override byte[] CorruptOnce(byte[] bytes, Random random, out string description)
    {
        List<string>? lines = TryLines(bytes);
        int roll = random.Next(10);
        if (lines is null || lines.Count == 0 || roll >= 7)
        {
            if (random.Next(4) == 0 && bytes.Length >= 8)
            {
                // The trailer: CRC32 and the size modulo 2^32.
                byte[] copy = [.. bytes];
                int at = copy.Length - 8 + random.Next(8);
                copy[at] ^= (byte)(1 << random.Next(8));
                description = $"gzip trailer byte {at - (copy.Length - 8)} flipped";
                return copy;
            }
            byte[] mutated = ByteMutator.Mutate(bytes, random, out string what);
            description = "gzip " + what;
            return mutated;
        }
        int index = random.Next(lines.Count);
        if (roll < 5)
        {
            lines[index] = JsonMutator.Mutate(lines[index], random, out string what);
            description = $"line {index + 1} {what}";
        }
        else
        {
            switch (random.Next(6))
            {
                case 0:
                    lines.RemoveAt(index);
                    description = $"line {index + 1} removed";
                    break;
                case 1:
                    lines.Insert(index, lines[index]);
                    description = $"line {index + 1} repeated";
                    break;
                case 2:
                    lines[index] = lines[index][..random.Next(lines[index].Length)];
                    description = $"line {index + 1} cut";
                    break;
                case 3:
                    lines.Insert(index, random.Next(2) == 0 ? "   " : "garbage {");
                    description = $"junk line before line {index + 1}";
                    break;
                case 4:
                    if (index + 1 < lines.Count)
                    {
                        lines[index] += lines[index + 1];
                        lines.RemoveAt(index + 1);
                    }
                    description = $"lines {index + 1} and {index + 2} joined";
                    break;
                default:
                    lines[index] = lines[index].Replace("\"content\":\"", "\"content\":\"\uFFFF\0", StringComparison.Ordinal);
                    description = $"line {index + 1} control characters in content";
                    break;
            }
        }
        byte[] gzip = SeedFiles.Gzip(lines);
        if (random.Next(8) == 0)
        {
            gzip = [.. gzip, .. SeedFiles.Gzip(["{}"])];
            description += " + a second gzip member";
        }
        return gzip;
    }

    private static List<string>? TryLines(byte[] gzip)
    {
        try
        {
            using var stream = new GZipStream(new MemoryStream(gzip), CompressionMode.Decompress);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return [.. reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)];
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            return null;
        }
    }
}
