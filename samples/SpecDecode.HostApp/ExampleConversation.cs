using SpecDecode;

namespace SpecDecode.HostApp;

/// <summary>
/// The conversation the host app continues when it is given no prompt: a coding agent is shown a bug report and the
/// Python file it names, in the shape of the SWE-bench agent conversations the embedded default model was trained on
/// (the mini-swe-agent system prompt, ChatML rendered by the checkpoint's chat template). The bug report and the file are
/// written for this app, not taken from the training data. The model's answer repeats names and paths from the
/// conversation, which is what the suffix drafter finds and proposes.
/// </summary>
internal static class ExampleConversation
{
    /// <summary>The messages: a system turn and a user turn.</summary>
    public static IReadOnlyList<PromptMessage> Messages { get; } =
    [
        PromptMessage.System(
            "You are a helpful assistant that can interact multiple times with a computer shell to solve programming tasks.\n" +
            "Your response must contain exactly ONE bash code block with ONE command (or commands connected with && or ||).\n\n" +
            "Include a THOUGHT section before your command where you explain your reasoning process.\n" +
            "Format your response as shown in <format_example>.\n\n" +
            "<format_example>\nTHOUGHT: Your reasoning and analysis here\n\n```bash\nyour_command_here\n```\n</format_example>\n\n" +
            "Failure to follow these rules will cause your response to be rejected."),
        PromptMessage.User(
            "<pr_description>\nConsider the following PR description:\n" +
            "`make_slug` in `blog/utils.py` returns slugs one character longer than `max_length`.\n" +
            "</pr_description>\n\n" +
            "The file `blog/utils.py`:\n\n" +
            "<output>\n" +
            "     1\tfrom django.utils.text import slugify\n" +
            "     2\t\n" +
            "     3\t\n" +
            "     4\tdef make_slug(title, max_length=50):\n" +
            "     5\t    \"\"\"Return a URL slug for the title, at most max_length characters.\"\"\"\n" +
            "     6\t    slug = slugify(title)\n" +
            "     7\t    return slug[:max_length + 1]\n" +
            "</output>\n\n" +
            "Make changes to non-test files in the current directory to fix the issue."),
    ];
}
