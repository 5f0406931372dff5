using System.Globalization;
using System.Text;

namespace SpecDecode.Tokenization.Jinja;

/// <summary>Python's <c>datetime.strftime</c> for transformers' <c>strftime_now(format)</c>, with English names (the C
/// locale) and glibc's <c>%-d</c> flag that drops leading zeros.</summary>
internal static class PythonStrftime
{
    private static readonly string[] Days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    private static readonly string[] Months =
        ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    /// <summary>Formats <paramref name="time"/>.</summary>
    /// <exception cref="JinjaRuntimeException">A directive this implementation does not know.</exception>
    public static string Format(DateTimeOffset time, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            char c = format[i];
            if (c != '%' || i + 1 >= format.Length)
            {
                sb.Append(c);
                continue;
            }

            bool noPad = false;
            char d = format[++i];
            if (d == '-' && i + 1 < format.Length)
            {
                noPad = true;
                d = format[++i];
            }

            string Num(int value, int width) => noPad ? value.ToString(CultureInfo.InvariantCulture) : value.ToString(new string('0', width), CultureInfo.InvariantCulture);
            sb.Append(d switch
            {
                'a' => Days[(int)time.DayOfWeek][..3],
                'A' => Days[(int)time.DayOfWeek],
                'w' => ((int)time.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                'd' => Num(time.Day, 2),
                'e' => noPad ? Num(time.Day, 1) : time.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'b' or 'h' => Months[time.Month - 1][..3],
                'B' => Months[time.Month - 1],
                'm' => Num(time.Month, 2),
                'y' => Num(time.Year % 100, 2),
                'Y' => time.Year.ToString(CultureInfo.InvariantCulture),
                'H' => Num(time.Hour, 2),
                'I' => Num(time.Hour % 12 == 0 ? 12 : time.Hour % 12, 2),
                'p' => time.Hour < 12 ? "AM" : "PM",
                'M' => Num(time.Minute, 2),
                'S' => Num(time.Second, 2),
                'f' => (time.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture),
                'j' => Num(time.DayOfYear, 3),
                'z' => (time.Offset < TimeSpan.Zero ? "-" : "+") + time.Offset.Duration().ToString("hhmm", CultureInfo.InvariantCulture),
                'F' => time.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                'T' => time.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => throw new JinjaRuntimeException($"strftime directive '%{d}' is not supported"),
            });
        }

        return sb.ToString();
    }
}
