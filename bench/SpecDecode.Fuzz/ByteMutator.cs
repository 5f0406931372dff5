namespace SpecDecode.Fuzz;

/// <summary>Corruptions of raw bytes: truncation, bit flips, overwritten, inserted, deleted or repeated ranges.</summary>
internal static class ByteMutator
{
    /// <summary>Applies one random corruption to a copy of <paramref name="bytes"/> (positions drawn from
    /// [<paramref name="from"/>, <paramref name="to"/>), the whole file by default) and describes it.</summary>
    public static byte[] Mutate(byte[] bytes, Random random, out string description, int from = 0, int to = -1)
    {
        if (to < 0 || to > bytes.Length)
        {
            to = bytes.Length;
        }
        if (to <= from)
        {
            description = "bytes: (empty range, unchanged)";
            return bytes;
        }
        int at = random.Next(from, to);
        var list = new List<byte>(bytes);
        switch (random.Next(6))
        {
            case 0:
                description = $"bytes: truncate to {at} of {bytes.Length}";
                return bytes[..at];
            case 1:
            {
                int flips = random.Next(1, 9);
                byte[] copy = [.. bytes];
                var where = new List<string>();
                for (int i = 0; i < flips; i++)
                {
                    int p = random.Next(from, to), bit = random.Next(8);
                    copy[p] ^= (byte)(1 << bit);
                    where.Add($"{p}:{bit}");
                }
                description = $"bytes: flip bits {string.Join(", ", where)}";
                return copy;
            }
            case 2:
            {
                int length = Math.Min(random.Next(1, 17), to - at);
                byte[] copy = [.. bytes];
                byte fill = (byte)(random.Next(3) switch { 0 => 0x00, 1 => 0xFF, _ => random.Next(256) });
                copy.AsSpan(at, length).Fill(fill);
                description = $"bytes: overwrite {length} at {at} with 0x{fill:X2}";
                return copy;
            }
            case 3:
            {
                int length = random.Next(1, 33);
                byte[] junk = new byte[length];
                random.NextBytes(junk);
                list.InsertRange(at, junk);
                description = $"bytes: insert {length} random at {at}";
                return [.. list];
            }
            case 4:
            {
                int length = Math.Min(random.Next(1, 65), to - at);
                list.RemoveRange(at, length);
                description = $"bytes: delete {length} at {at}";
                return [.. list];
            }
            default:
            {
                int length = Math.Min(random.Next(1, 65), to - at);
                list.InsertRange(at, bytes.AsSpan(at, length).ToArray());
                description = $"bytes: repeat {length} at {at}";
                return [.. list];
            }
        }
    }
}
