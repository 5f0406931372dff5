namespace SpecDecode.Generate;

/// <summary>
/// The conversation the generator continues when it is given no prompt: a coding agent in the middle of fixing a bug,
/// the kind of text the embedded default model was trained on (the SWE-bench agent trajectories). Written for this
/// sample, not taken from the trajectories. Its next turn tends to repeat paths, names and code from the conversation,
/// which is where suffix drafting pays.
/// </summary>
public static class DemoConversation
{
    /// <summary>The messages, rendered with the checkpoint's chat template.</summary>
    public static IReadOnlyList<PromptMessage> Messages { get; } =
    [
        new("system",
            "You are a helpful assistant that can interact multiple times with a computer shell to solve programming tasks.\n" +
            "Your response must contain exactly ONE bash code block with ONE command (or commands connected with && or ||).\n\n" +
            "Include a THOUGHT section before your command where you explain your reasoning process.\n" +
            "Format your response as shown in <format_example>.\n\n" +
            "<format_example>\nTHOUGHT: Your reasoning and analysis here\n\n```bash\nyour_command_here\n```\n</format_example>\n\n" +
            "Failure to follow these rules will cause your response to be rejected."),
        new("user",
            "<pr_description>\nConsider the following PR description:\n" +
            "`parse_duration` in `timeutils/parsing.py` returns the wrong number of seconds for inputs with hours, e.g. " +
            "`parse_duration(\"1h30m\")` gives 1830 instead of 5400.\n</pr_description>\n\n" +
            "Make changes to non-test files in the current directory to fix the issue."),
        new("assistant",
            "THOUGHT: I should look at `parse_duration` in `timeutils/parsing.py` to see how the units are converted.\n\n" +
            "```bash\nnl -ba timeutils/parsing.py | sed -n '1,40p'\n```"),
        new("user",
            "<returncode>0</returncode>\n<output>\n" +
            "     1\timport re\n" +
            "     2\t\n" +
            "     3\t_UNITS = {\"h\": 60, \"m\": 60, \"s\": 1}\n" +
            "     4\t\n" +
            "     5\t\n" +
            "     6\tdef parse_duration(text):\n" +
            "     7\t    \"\"\"Return the number of seconds in a duration such as '1h30m' or '45s'.\"\"\"\n" +
            "     8\t    total = 0\n" +
            "     9\t    for amount, unit in re.findall(r\"(\\d+)([hms])\", text):\n" +
            "    10\t        total += int(amount) * _UNITS[unit]\n" +
            "    11\t    return total\n" +
            "</output>"),
    ];
}
