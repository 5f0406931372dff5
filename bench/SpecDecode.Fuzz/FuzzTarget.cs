namespace SpecDecode.Fuzz;

/// <summary>One parser under fuzzing: the file it reads, how to corrupt that file, how to load (and use) what it gives,
/// and which exception types count as a typed refusal.</summary>
internal abstract class FuzzTarget
{
    /// <summary>The name on the command line and in reports.</summary>
    public abstract string Name { get; }

    /// <summary>The file corrupted, inside the work folder; a typed refusal must name it.</summary>
    public abstract string FileName { get; }

    /// <summary>A corrupted copy of <paramref name="seed"/>: one structure-aware or byte-level corruption, sometimes two
    /// or three stacked.</summary>
    public byte[] Corrupt(byte[] seed, Random random, out string description)
    {
        int count = random.Next(10) switch { < 7 => 1, < 9 => 2, _ => 3 };
        byte[] bytes = seed;
        var steps = new List<string>();
        for (int i = 0; i < count; i++)
        {
            string step;
            try
            {
                bytes = CorruptOnce(bytes, random, out step);
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or InvalidOperationException or FormatException or OverflowException)
            {
                // An earlier corruption left a structure the structure-aware one cannot walk (duplicate keys, wrong
                // types): corrupt the raw bytes instead.
                bytes = ByteMutator.Mutate(bytes, random, out step);
            }
            steps.Add(step);
        }
        description = string.Join(" + ", steps);
        return bytes;
    }

    protected abstract byte[] CorruptOnce(byte[] bytes, Random random, out string description);

    /// <summary>Loads the files of <paramref name="folder"/> as a user would, and uses the result once.</summary>
    public abstract void Parse(string folder);

    /// <summary>Whether <paramref name="error"/> is one of the parser's documented refusals.</summary>
    public abstract bool IsTyped(Exception error);

    /// <summary>A JSON file: structure-aware corruptions most of the time, raw bytes otherwise.</summary>
    protected static byte[] CorruptJson(byte[] bytes, Random random, out string description)
    {
        if (random.Next(5) == 0)
        {
            return ByteMutator.Mutate(bytes, random, out description);
        }
        string text = JsonMutator.Mutate(System.Text.Encoding.UTF8.GetString(bytes), random, out description);
        return System.Text.Encoding.UTF8.GetBytes(text);
    }
}
