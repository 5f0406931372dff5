using System.Text.Json;
using SpecDecode.Tokenization.Jinja;

namespace SpecDecode.Tokenization;

/// <summary>
/// The chat template of a Hugging Face checkpoint: a Jinja2 template that turns a list of messages into the prompt text
/// the model was trained on (<c>&lt;|start_header_id|&gt;user&lt;|end_header_id|&gt;\n\n...&lt;|eot_id|&gt;</c>,
/// <c>&lt;|im_start|&gt;user\n...&lt;|im_end|&gt;</c>, <c>[INST] ... [/INST]</c>). Rendered by this library's own
/// interpreter of the Jinja subset that real templates use, with the settings of transformers'
/// <c>apply_chat_template</c>, so the text is the one transformers produces; encode it with
/// <see cref="CheckpointTokenizer"/> (which adds no BOS, as the template already writes it).
/// </summary>
/// <remarks>
/// <para>Variables a template sees, as in transformers: <c>messages</c> (a list of dicts with <c>role</c> and
/// <c>content</c>), <c>add_generation_prompt</c>, <c>tools</c> and <c>documents</c> (none), the special tokens of
/// tokenizer_config.json (<c>bos_token</c>, <c>eos_token</c>, <c>unk_token</c>, <c>pad_token</c>,
/// <c>additional_special_tokens</c>; a token the checkpoint does not set stays undefined), the globals
/// <c>raise_exception(message)</c>, <c>strftime_now(format)</c> (local time), <c>namespace</c>, <c>range</c> and
/// <c>dict</c>, and whatever the caller adds (<c>enable_thinking</c> for Qwen3, <c>date_string</c>, <c>tools</c>, ...).
/// Like transformers, <c>date_string</c> is not defined unless passed: Llama 3.1's template then writes its default
/// "26 Jul 2024", Llama 3.2's calls <c>strftime_now("%d %b %Y")</c> for today's date.</para>
/// <para>Supported Jinja: text, <c>{{ }}</c>, <c>{% %}</c>, <c>{# #}</c>, whitespace control (<c>-</c> and <c>+</c>,
/// trim_blocks, lstrip_blocks), <c>if/elif/else</c>, <c>for</c> (with <c>else</c>, a loop filter <c>if</c>, tuple
/// unpacking, <c>loop.*</c>, <c>break</c>, <c>continue</c>), <c>set</c> (names, tuples, <c>ns.attr</c>, block set),
/// Python expressions (literals, lists, dicts, attributes, subscripts, slices, calls, arithmetic, comparisons,
/// <c>in</c>, <c>and/or/not</c>, <c>~</c>, <c>a if c else b</c>), string and dict methods, and the filters and tests
/// real templates use (see docs/target-model.md). Macros, includes, inheritance and other filters are rejected with a
/// <see cref="ChatTemplateException"/> when the template is parsed; nothing is rendered approximately.</para>
/// <para>Covered by tests with the exact templates of Llama 3.1 and 3.2 Instruct, Qwen2.5 Instruct, Qwen3, Mistral 7B
/// Instruct v0.3 and a ChatML model.</para>
/// </remarks>
public sealed class ChatTemplate
{
    private readonly JinjaTemplate _template;
    private readonly IReadOnlyDictionary<string, object?> _specialTokens;
    private readonly TimeProvider _clock;

    private ChatTemplate(string source, JinjaTemplate template, IReadOnlyDictionary<string, object?> specialTokens, TimeProvider clock)
    {
        Source = source;
        _template = template;
        _specialTokens = specialTokens;
        _clock = clock;
    }

    /// <summary>The template text.</summary>
    public string Source { get; }

    /// <summary>The <c>bos_token</c> the template sees, or null when it is undefined.</summary>
    public string? BosToken => _specialTokens.TryGetValue("bos_token", out object? token) ? token as string : null;

    /// <summary>The <c>eos_token</c> the template sees, or null when it is undefined.</summary>
    public string? EosToken => _specialTokens.TryGetValue("eos_token", out object? token) ? token as string : null;

    /// <summary>
    /// Loads the chat template of a checkpoint folder, from the first of: <c>chat_template.jinja</c> (the template
    /// text); <c>chat_template.json</c> (<c>{"chat_template": ...}</c>); the <c>chat_template</c> field of
    /// <c>tokenizer_config.json</c>. The template is a string, or a list of <c>{"name", "template"}</c> objects of which
    /// the one named <c>default</c> is used. Special tokens come from tokenizer_config.json, each written as a string or
    /// as an added-token object <c>{"content": ...}</c>.
    /// </summary>
    /// <param name="checkpointFolder">The checkpoint folder.</param>
    /// <returns>The template, or null when the checkpoint has none (a base model).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="checkpointFolder"/> is null.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ChatTemplateException">Malformed JSON, a template list without <c>default</c>, or a template
    /// that does not parse; the message names the file, and for template errors the line and column in the
    /// template text.</exception>
    public static ChatTemplate? Load(string checkpointFolder)
    {
        ArgumentNullException.ThrowIfNull(checkpointFolder);
        if (!Directory.Exists(checkpointFolder))
        {
            throw new DirectoryNotFoundException("checkpoint folder not found: " + checkpointFolder);
        }

        string configPath = Path.Combine(checkpointFolder, "tokenizer_config.json");
        using JsonDocument? config = File.Exists(configPath) ? ReadJson(configPath) : null;
        if (config is not null && config.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new ChatTemplateException($"{configPath}: is not a JSON object.");
        }

        string jinjaPath = Path.Combine(checkpointFolder, "chat_template.jinja");
        string jsonPath = Path.Combine(checkpointFolder, "chat_template.json");
        string? template;
        string templatePath;
        if (File.Exists(jinjaPath))
        {
            templatePath = jinjaPath;
            template = ReadText(jinjaPath);
        }
        else if (File.Exists(jsonPath))
        {
            templatePath = jsonPath;
            using JsonDocument document = ReadJson(jsonPath);
            template = document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("chat_template", out JsonElement field)
                ? TemplateOf(field, jsonPath)
                : throw new ChatTemplateException($"{jsonPath}: has no \"chat_template\" field.");
        }
        else if (config is not null && config.RootElement.TryGetProperty("chat_template", out JsonElement field))
        {
            templatePath = configPath;
            template = TemplateOf(field, configPath);
        }
        else
        {
            return null;
        }

        if (template is null)
        {
            return null;
        }

        var specialTokens = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (config is not null)
        {
            foreach (string name in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
            {
                if (config.RootElement.TryGetProperty(name, out JsonElement token) && TokenText(token, name, configPath) is { } text)
                {
                    specialTokens[name] = text;
                }
            }

            if (config.RootElement.TryGetProperty("additional_special_tokens", out JsonElement additional) && additional.ValueKind == JsonValueKind.Array)
            {
                specialTokens["additional_special_tokens"] = additional.EnumerateArray()
                    .Select(t => (object?)(TokenText(t, "additional_special_tokens", configPath) ?? throw new ChatTemplateException($"{configPath}: an additional_special_tokens entry is null.")))
                    .ToList();
            }
        }

        try
        {
            return new ChatTemplate(template, JinjaTemplate.Parse(template), specialTokens, TimeProvider.System);
        }
        catch (ChatTemplateException e)
        {
            throw new ChatTemplateException($"{templatePath}: {e.Message}", e.Line, e.Column, inner: e);
        }
    }

    /// <summary>Parses a template given as text.</summary>
    /// <param name="template">The Jinja template.</param>
    /// <param name="bosToken">The <c>bos_token</c> the template sees; null leaves it undefined.</param>
    /// <param name="eosToken">The <c>eos_token</c> the template sees; null leaves it undefined.</param>
    /// <returns>The parsed template.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="template"/> is null.</exception>
    /// <exception cref="ChatTemplateException">A syntax error or unsupported construct, with line and column.</exception>
    public static ChatTemplate Parse(string template, string? bosToken = null, string? eosToken = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        var specialTokens = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (bosToken is not null)
        {
            specialTokens["bos_token"] = bosToken;
        }

        if (eosToken is not null)
        {
            specialTokens["eos_token"] = eosToken;
        }

        return new ChatTemplate(template, JinjaTemplate.Parse(template), specialTokens, TimeProvider.System);
    }

    /// <summary>Renders <paramref name="messages"/> into prompt text.</summary>
    /// <param name="messages">The conversation, in order.</param>
    /// <param name="addGenerationPrompt">Whether to end with the header that opens the assistant's reply (what a prompt
    /// for generation needs).</param>
    /// <returns>The prompt text, special tokens written out (e.g. <c>&lt;|begin_of_text|&gt;</c>).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="messages"/> or an element is null.</exception>
    /// <exception cref="ChatTemplateException">The template raised an error (<see cref="ChatTemplateException.RaisedByTemplate"/>,
    /// e.g. roles that do not alternate) or failed at run time.</exception>
    public string Render(IReadOnlyList<PromptMessage> messages, bool addGenerationPrompt = true) =>
        Render(messages, addGenerationPrompt, new Dictionary<string, object?>());

    /// <summary>Renders <paramref name="messages"/> with extra template variables, as keyword arguments of
    /// transformers' <c>apply_chat_template</c> (e.g. <c>enable_thinking = false</c> for Qwen3, <c>date_string</c>,
    /// <c>tools</c>).</summary>
    /// <param name="messages">The conversation, in order.</param>
    /// <param name="addGenerationPrompt">Whether to end with the header that opens the assistant's reply.</param>
    /// <param name="variables">Extra variables, overriding the defaults (<c>tools</c>, special tokens). Values may be
    /// null, strings, booleans, numbers, string-keyed dictionaries, sequences or <see cref="JsonElement"/>.</param>
    /// <returns>The prompt text.</returns>
    /// <exception cref="ArgumentNullException">An argument or message is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="variables"/> sets <c>messages</c> or
    /// <c>add_generation_prompt</c>, or holds a value of an unsupported type.</exception>
    /// <exception cref="ChatTemplateException">As for <see cref="Render(IReadOnlyList{PromptMessage}, bool)"/>.</exception>
    public string Render(IReadOnlyList<PromptMessage> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?> variables)
    {
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(variables);
        var all = new Dictionary<string, object?>(_specialTokens, StringComparer.Ordinal)
        {
            ["tools"] = null,
            ["documents"] = null,
        };
        foreach ((string name, object? value) in variables)
        {
            if (name is "messages" or "add_generation_prompt")
            {
                throw new ArgumentException($"'{name}' is set by Render's own parameters.", nameof(variables));
            }

            all[name] = value;
        }

        all["messages"] = messages.Select(m => m ?? throw new ArgumentNullException(nameof(messages), "a message is null.")).ToList();
        all["add_generation_prompt"] = addGenerationPrompt;
        return _template.Render(all, _clock);
    }

    /// <summary>The same template with <c>strftime_now</c> reading <paramref name="clock"/> (for tests).</summary>
    internal ChatTemplate WithClock(TimeProvider clock) => new(Source, _template, _specialTokens, clock);

    private static string? TemplateOf(JsonElement field, string path)
    {
        switch (field.ValueKind)
        {
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.String:
                return field.GetString();
            case JsonValueKind.Array:
                {
                    var names = new List<string>();
                    foreach (JsonElement entry in field.EnumerateArray())
                    {
                        if (entry.ValueKind != JsonValueKind.Object
                            || !entry.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String
                            || !entry.TryGetProperty("template", out JsonElement text) || text.ValueKind != JsonValueKind.String)
                        {
                            throw new ChatTemplateException($"{path}: each chat_template list entry must be an object with string \"name\" and \"template\".");
                        }

                        if (name.GetString() == "default")
                        {
                            return text.GetString();
                        }

                        names.Add(name.GetString()!);
                    }

                    throw new ChatTemplateException($"{path}: chat_template lists templates ({string.Join(", ", names)}) but none named \"default\".");
                }

            default:
                throw new ChatTemplateException($"{path}: chat_template must be a string or a list of {{\"name\", \"template\"}} objects, not {field.ValueKind}.");
        }
    }

    private static string? TokenText(JsonElement token, string name, string path) => token.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => token.GetString(),
        JsonValueKind.Object when token.TryGetProperty("content", out JsonElement content) && content.ValueKind == JsonValueKind.String => content.GetString(),
        _ => throw new ChatTemplateException($"{path}: \"{name}\" must be a string or an object with a string \"content\"."),
    };

    private static JsonDocument ReadJson(string path)
    {
        try
        {
            using FileStream stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new ChatTemplateException($"{path}: is not valid JSON: {e.Message}", (int?)e.LineNumber + 1, (int?)e.BytePositionInLine + 1, inner: e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ChatTemplateException($"{path}: cannot be read: {e.Message}", inner: e);
        }
    }

    private static string ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ChatTemplateException($"{path}: cannot be read: {e.Message}", inner: e);
        }
    }
}
