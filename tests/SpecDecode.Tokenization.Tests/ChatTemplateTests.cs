using System.Text.Json;
using SpecDecode.Tokenization.Jinja;

namespace SpecDecode.Tokenization.Tests;

/// <summary>
/// ChatTemplate and its Jinja interpreter. The real templates (ChatTemplates/*.jinja, sources in the README there) are
/// rendered and compared with the chat formats the models document; every expected string, here and in the
/// interpreter tables, was also produced by Jinja2 3.1.6 configured as transformers' apply_chat_template configures it
/// (trim_blocks, lstrip_blocks, immutable sandbox, loop controls, its tojson), so the tests pin transformers' output.
/// </summary>
public sealed class ChatTemplateTests : IDisposable
{
    private const string LlamaBos = "<|begin_of_text|>";
    private const string LlamaEot = "<|eot_id|>";
    private const string LlamaSystem31 = "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";

    private static readonly PromptMessage[] Conversation =
    [
        PromptMessage.System("You are a helpful assistant"),
        PromptMessage.User("Hello"),
        PromptMessage.Assistant("Hi there"),
        PromptMessage.User("Who are you"),
        PromptMessage.Assistant("   I am an assistant   "),
        PromptMessage.User("Another question"),
    ];

    private readonly string _root = Path.Combine(Path.GetTempPath(), "specdecode-chat-" + Guid.NewGuid().ToString("N"));

    public ChatTemplateTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static string TemplateText(string name)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "ChatTemplates", name + ".jinja");
        Assert.True(File.Exists(path), "test template missing from the output folder: " + path);
        return File.ReadAllText(path);
    }

    private static ChatTemplate Template(string name, string? bos, string? eos) => ChatTemplate.Parse(TemplateText(name), bos, eos);

    private static string Header(string role) => $"<|start_header_id|>{role}<|end_header_id|>\n\n";

    // ---------- real templates ----------

    [Fact]
    public void Llama31_SystemAndUser_HasTheDatePreambleAndOpensTheAssistantTurn()
    {
        string prompt = Template("llama-3.1-instruct", LlamaBos, LlamaEot).Render([PromptMessage.System("You are a helpful assistant"), PromptMessage.User("Hello")]);

        Assert.Equal(LlamaBos + LlamaSystem31 + "You are a helpful assistant" + LlamaEot + Header("user") + "Hello" + LlamaEot + Header("assistant"), prompt);
    }

    [Fact]
    public void Llama31_MultiTurn_TrimsEveryMessage()
    {
        string prompt = Template("llama-3.1-instruct", LlamaBos, LlamaEot).Render(Conversation);

        Assert.Equal(LlamaBos + LlamaSystem31 + "You are a helpful assistant" + LlamaEot
            + Header("user") + "Hello" + LlamaEot + Header("assistant") + "Hi there" + LlamaEot
            + Header("user") + "Who are you" + LlamaEot + Header("assistant") + "I am an assistant" + LlamaEot
            + Header("user") + "Another question" + LlamaEot + Header("assistant"), prompt);
    }

    [Fact]
    public void Llama31_NoSystemMessage_KeepsAnEmptySystemTurn_AndNoGenerationPrompt()
    {
        string prompt = Template("llama-3.1-instruct", LlamaBos, LlamaEot).Render([PromptMessage.User("  Hello  ")], addGenerationPrompt: false);

        Assert.Equal(LlamaBos + LlamaSystem31 + LlamaEot + Header("user") + "Hello" + LlamaEot, prompt);
    }

    [Fact]
    public void Llama31_ToolMessage_IsAnIpythonTurnWithItsContentAsJson()
    {
        // A string is "iterable" in Jinja, so the template writes the tool output through tojson, as transformers does.
        string prompt = Template("llama-3.1-instruct", LlamaBos, LlamaEot).Render([PromptMessage.User("Weather in Paris?"), new PromptMessage("tool", "{\"temp\": 20}")]);

        Assert.Equal(LlamaBos + LlamaSystem31 + LlamaEot + Header("user") + "Weather in Paris?" + LlamaEot
            + Header("ipython") + "\"{\\\"temp\\\": 20}\"" + LlamaEot + Header("assistant"), prompt);
    }

    [Fact]
    public void Llama32_TodaysDate_ComesFromStrftimeNow_UnlessDateStringIsPassed()
    {
        ChatTemplate template = Template("llama-3.2-instruct", LlamaBos, LlamaEot).WithClock(new FixedClock(new DateTimeOffset(2025, 3, 5, 10, 0, 0, TimeSpan.Zero)));
        string expected(string date) => LlamaBos + Header("system") + "Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n"
            + LlamaEot + Header("user") + "Hello" + LlamaEot + Header("assistant");

        Assert.Equal(expected("05 Mar 2025"), template.Render([PromptMessage.User("Hello")]));
        Assert.Equal(expected("1 Jan 2030"), template.Render([PromptMessage.User("Hello")], true, new Dictionary<string, object?> { ["date_string"] = "1 Jan 2030" }));
    }

    [Fact]
    public void Llama_EmptyConversation_FailsAsInTransformers()
    {
        var e = Assert.Throws<ChatTemplateException>(() => Template("llama-3.1-instruct", LlamaBos, LlamaEot).Render([]));

        Assert.Equal(16, e.Line);
        Assert.Contains("list object has no element 0", e.Message);
        Assert.False(e.RaisedByTemplate);
    }

    [Fact]
    public void Qwen25_WithoutSystemMessage_AddsQwensDefaultSystemPrompt()
    {
        string prompt = Template("qwen2.5-instruct", null, "<|im_end|>").Render([PromptMessage.User("Hello")]);

        Assert.Equal("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            + "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void Qwen25_MultiTurn_KeepsContentVerbatim()
    {
        string prompt = Template("qwen2.5-instruct", null, "<|im_end|>").Render(Conversation, addGenerationPrompt: false);

        Assert.Equal("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            + "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            + "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n", prompt);
    }

    [Fact]
    public void Qwen25_Tools_AreWrittenWithTojson()
    {
        using JsonDocument tools = JsonDocument.Parse("""
            [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
            """);

        string prompt = Template("qwen2.5-instruct", null, "<|im_end|>").Render([PromptMessage.User("Weather in Paris?")], true,
            new Dictionary<string, object?> { ["tools"] = tools.RootElement });

        Assert.Equal("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n"
            + "You may call one or more functions to assist with the user query.\n\n"
            + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            + "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get the weather\", \"parameters\": "
            + "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n</tools>\n\n"
            + "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
            + "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void Qwen3_Thinking_IsTheDefault_AndEnableThinkingFalseWritesAnEmptyThinkBlock()
    {
        ChatTemplate template = Template("qwen3", null, "<|im_end|>");
        PromptMessage[] user = [PromptMessage.User("Hello")];

        Assert.Equal("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", template.Render(user));
        Assert.Equal("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
            template.Render(user, true, new Dictionary<string, object?> { ["enable_thinking"] = true }));
        Assert.Equal("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            template.Render(user, true, new Dictionary<string, object?> { ["enable_thinking"] = false }));
    }

    [Fact]
    public void Qwen3_DropsReasoningOfEarlierTurns_AndKeepsItAfterTheLastUserMessage()
    {
        ChatTemplate template = Template("qwen3", null, "<|im_end|>");

        string history = template.Render([PromptMessage.System("You are a helpful assistant"), PromptMessage.User("2+2?"),
            PromptMessage.Assistant("<think>\nadd\n</think>\n\n4"), PromptMessage.User("and 3+3?")]);
        string last = template.Render([PromptMessage.User("2+2?"), PromptMessage.Assistant("<think>\nadd them\n</think>\n\n4")], addGenerationPrompt: false);

        Assert.Equal("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
            + "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n", history);
        Assert.Equal("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nadd them\n</think>\n\n4<|im_end|>\n", last);
    }

    [Fact]
    public void Mistral03_PutsTheSystemPromptInTheLastUserTurn()
    {
        // Mistral's v3 format: "<s>[INST] user[/INST] assistant</s>[INST] ...[/INST]"; llama.cpp's test-chat-template
        // expects the same text (with an empty BOS).
        string prompt = Template("mistral-7b-instruct-v0.3", "<s>", "</s>").Render(Conversation);

        Assert.Equal("<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
            + "[INST] You are a helpful assistant\n\nAnother question[/INST]", prompt);
        Assert.Equal("<s>[INST] Hello[/INST]", Template("mistral-7b-instruct-v0.3", "<s>", "</s>").Render([PromptMessage.User("Hello")]));
    }

    [Fact]
    public void Mistral03_RolesThatDoNotAlternate_RaiseTheTemplatesOwnMessage()
    {
        var e = Assert.Throws<ChatTemplateException>(() =>
            Template("mistral-7b-instruct-v0.3", "<s>", "</s>").Render([PromptMessage.User("a"), PromptMessage.User("b")]));

        Assert.True(e.RaisedByTemplate);
        Assert.Equal("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...", e.Message);
        Assert.Equal(18, e.Line);
    }

    [Fact]
    public void ChatML_WritesEveryTurnAsImStartRoleContentImEnd()
    {
        ChatTemplate template = Template("chatml-openhermes-2.5", "<s>", "<|im_end|>");

        Assert.Equal("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            + "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            + "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
            + "<|im_start|>assistant\n", template.Render(Conversation));
        Assert.Equal("<|im_start|>user\nHello<|im_end|>\n", template.Render([PromptMessage.User("Hello")], addGenerationPrompt: false));
    }

    [Theory]
    [InlineData("llama-3.1-instruct")]
    [InlineData("llama-3.2-instruct")]
    [InlineData("qwen2.5-instruct")]
    [InlineData("qwen3")]
    [InlineData("mistral-7b-instruct-v0.3")]
    [InlineData("chatml-openhermes-2.5")]
    public void RealTemplates_RenderNonAsciiTextUnchanged(string name)
    {
        const string text = "héllo \"quoted\" \\ back\tslash 日本";

        Assert.Contains(text, Template(name, "<s>", "</s>").Render([PromptMessage.User(text)]));
    }

    // ---------- Load ----------

    private string Checkpoint(string name, string? tokenizerConfig, string? jinjaFile = null, string? jsonFile = null)
    {
        string folder = Path.Combine(_root, name);
        Directory.CreateDirectory(folder);
        if (tokenizerConfig is not null)
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), tokenizerConfig);
        }

        if (jinjaFile is not null)
        {
            File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), jinjaFile);
        }

        if (jsonFile is not null)
        {
            File.WriteAllText(Path.Combine(folder, "chat_template.json"), jsonFile);
        }

        return folder;
    }

    private const string Echo = "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}";

    [Fact]
    public void Load_ChatTemplateString_WithTokensAsStringsOrAddedTokenObjects()
    {
        string config = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["bos_token"] = "<s>",
            ["eos_token"] = new Dictionary<string, object> { ["__type"] = "AddedToken", ["content"] = "</s>", ["lstrip"] = false },
            ["chat_template"] = Echo,
        });

        ChatTemplate template = ChatTemplate.Load(Checkpoint("string", config))!;

        Assert.Equal(("<s>", "</s>"), (template.BosToken, template.EosToken));
        Assert.Equal("<s>user:hi</s>", template.Render([PromptMessage.User("hi")]));
    }

    [Fact]
    public void Load_ChatTemplateList_UsesTheDefaultEntry()
    {
        string config = JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["eos_token"] = "</s>",
            ["bos_token"] = null,
            ["chat_template"] = new[]
            {
                new Dictionary<string, string> { ["name"] = "tool_use", ["template"] = "TOOLS" },
                new Dictionary<string, string> { ["name"] = "default", ["template"] = Echo },
            },
        });

        ChatTemplate template = ChatTemplate.Load(Checkpoint("list", config))!;

        Assert.Null(template.BosToken);
        Assert.Equal("user:hi</s>", template.Render([PromptMessage.User("hi")]));
    }

    [Fact]
    public void Load_ChatTemplateJinjaFile_TakesPrecedenceOverTokenizerConfig()
    {
        string config = """{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "IGNORED"}""";

        ChatTemplate template = ChatTemplate.Load(Checkpoint("jinja", config, jinjaFile: Echo + "\n"))!;

        Assert.Equal("<s>user:hi</s>", template.Render([PromptMessage.User("hi")]));
    }

    [Fact]
    public void Load_ChatTemplateJsonFile_IsRead()
    {
        ChatTemplate template = ChatTemplate.Load(Checkpoint("json", null, jsonFile: JsonSerializer.Serialize(new { chat_template = Echo })))!;

        Assert.Equal("user:hi", template.Render([PromptMessage.User("hi")]));
    }

    [Fact]
    public void Load_TheRealQwen3Template_FromTokenizerConfig()
    {
        string config = JsonSerializer.Serialize(new Dictionary<string, object?> { ["eos_token"] = "<|im_end|>", ["chat_template"] = TemplateText("qwen3") });

        ChatTemplate template = ChatTemplate.Load(Checkpoint("qwen3", config))!;

        Assert.Equal(TemplateText("qwen3"), template.Source);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", template.Render([PromptMessage.User("Hi")]));
    }

    [Fact]
    public void Load_NoTemplate_ReturnsNull()
    {
        Assert.Null(ChatTemplate.Load(Checkpoint("none", """{"bos_token": "<s>"}""")));
        Assert.Null(ChatTemplate.Load(Checkpoint("empty", null)));
        Assert.Null(ChatTemplate.Load(Checkpoint("null", """{"chat_template": null}""")));
        Assert.Throws<DirectoryNotFoundException>(() => ChatTemplate.Load(Path.Combine(_root, "missing")));
    }

    [Fact]
    public void Load_MalformedInputs_ThrowWithThePath()
    {
        string badJson = Checkpoint("badjson", "{\"chat_template\": ");
        string noDefault = Checkpoint("nodefault", """{"chat_template": [{"name": "rag", "template": "x"}]}""");
        string badShape = Checkpoint("badshape", """{"chat_template": 42}""");
        string badToken = Checkpoint("badtoken", """{"chat_template": "x", "bos_token": 1}""");
        string badSyntax = Checkpoint("badsyntax", """{"chat_template": "line one\n{% if x %}\n{{ x | nosuch }}{% endif %}"}""");

        Assert.Contains("not valid JSON", Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(badJson)).Message);
        Assert.Contains("none named \"default\"", Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(noDefault)).Message);
        Assert.Contains("must be a string or a list", Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(badShape)).Message);
        Assert.Contains("\"bos_token\" must be a string", Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(badToken)).Message);
        var syntax = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(badSyntax));
        Assert.StartsWith(Path.Combine(badSyntax, "tokenizer_config.json") + ": chat template line 3, column 8:", syntax.Message);
        Assert.Contains("filter 'nosuch' is not supported", syntax.Message);
        Assert.Equal((3, 8), (syntax.Line, syntax.Column));
    }

    // ---------- the interpreter ----------

    private static readonly Dictionary<string, object?> Variables = new()
    {
        ["x"] = "v",
        ["y"] = 5,
        ["d"] = new Dictionary<string, object?> { ["a"] = 1 },
        ["l"] = new List<object?> { 3, 1, 2 },
    };

    private static string Jinja(string template) => JinjaTemplate.Parse(template).Render(Variables, TimeProvider.System);

    [Theory]
    [InlineData("a  {{- ' b ' -}}  c", "a b c")]
    [InlineData("a\n  {% if true %}\n  x\n  {% endif %}\nb", "a\n  x\nb")]
    [InlineData("a\n  {%- if true %}\n  x\n  {%- endif %}\nb", "a  xb")]
    [InlineData("a\n  {%+ if true %}x{% endif %}\nb", "a\n  xb")]
    [InlineData("a\n  {% if true +%}\nx{% endif %}", "a\n\nx")]
    [InlineData("  {# comment #}\nx", "x")]
    [InlineData("a {# c #} b", "a  b")]
    [InlineData("a\n  {#- c -#}  \n b", "ab")]
    [InlineData("{% for i in [1, 2] %}\n  {{ i }}\n{% endfor %}", "  1\n  2\n")]
    [InlineData("  {{ 'v' }}\n  {% if true %}y{% endif %}  {% if true %}z{% endif %}", "  v\ny  z")]
    [InlineData("{{ 1 }}\n{{ 2 }}", "1\n2")]
    [InlineData("x", "x")]
    [InlineData("{%- if true -%}\n\n  a  \n\n{%- endif -%}", "a")]
    [InlineData("x\n", "x")]
    [InlineData("x\n\n", "x\n")]
    [InlineData("a\r\nb\rc", "a\nb\nc")]
    public void WhitespaceControl_FollowsTrimBlocksAndLstripBlocks(string template, string expected) => Assert.Equal(expected, Jinja(template));

    [Theory]
    // Loops
    [InlineData("{% for c in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}", "10TrueFalse33|21FalseFalse32|32FalseTrue31|")]
    [InlineData("{% for i in [] %}a{% else %}empty{% endfor %}", "empty")]
    [InlineData("{% for i in [1, 2, 3, 4] if i is even %}{{ i }}:{{ loop.index }}/{{ loop.length }} {% endfor %}", "2:1/2 4:2/2 ")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;")]
    [InlineData("{% for i in [1, 2, 3] %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% endfor %}", "13")]
    [InlineData("{% for i in [1, 2, 3] %}{% if i == 2 %}{% break %}{% endif %}{{ i }}{% endfor %}", "1")]
    [InlineData("{% for i in [1, 2] %}{% for c in 'ab' %}{{ loop.index }}{{ c }}{% endfor %}{{ loop.index }} {% endfor %}", "1a2b1 1a2b2 ")]
    [InlineData("{% for i in range(3) %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}", "-1;0-2;1-;")]
    [InlineData("{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}", "147")]
    [InlineData("{% for i in [1, 2, 3] %}{{ loop.cycle('odd', 'even') }} {% endfor %}", "odd even odd ")]
    [InlineData("{% for m in l[::-1] %}{{ m }}{% endfor %}", "213")]

    // Scoping
    [InlineData("{% set n = 0 %}{% for i in [1, 2] %}{% set n = n + i %}{{ n }}{% endfor %}|{{ n }}", "12|0")]
    [InlineData("{% set ns = namespace(n=0) %}{% for i in [1, 2] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "3")]
    [InlineData("{% set ns = namespace() %}{% set ns.a = 'v' %}{{ ns.a }} {{ ns.b is defined }}", "v False")]
    [InlineData("{% if true %}{% set z = 3 %}{% endif %}{{ z }}", "3")]
    [InlineData("{{ x }}{% set x = 'q' %}{{ x }}", "vq")]
    [InlineData("{% for i in [1] %}[{{ x }}]{% endfor %}{% set x = 'q' %}", "[]")]
    [InlineData("{% for i in [1] %}{% if false %}{% set x = 'q' %}{% endif %}[{{ x }}]{% endfor %}", "[v]")]
    [InlineData("{% set a, b = 1, 2 %}{{ a }}{{ b }}", "12")]
    [InlineData("{% set t %}  in {{ 1 }} {% endset %}[{{ t }}]", "[  in 1 ]")]
    [InlineData("{% set t | trim | upper %}  ab  {% endset %}[{{ t }}]", "[AB]")]

    // Expressions
    [InlineData("{{ 'a\\nb\\t\\'q\\' \\\"d\\\" \\\\ \\x41\\u00e9' }}", "a\nb\t'q' \"d\" \\ Aé")]
    [InlineData("{{ \"x\" 'y' }}", "xy")]
    [InlineData("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}", "7 9 3 -4 1 2 3.5 1024")]
    [InlineData("{{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-5 }} {{ 1.0 }} {{ 100.0 / 3 }} {{ 1_000 }}", "2.5 0.30000000000000004 1e+20 1e-05 1.0 33.333333333333336 1000")]
    [InlineData("{{ 'a' ~ 1 ~ none ~ true ~ [1, 'b'] ~ {'k': 'v'} }}", "a1NoneTrue[1, 'b']{'k': 'v'}")]
    [InlineData("{{ 'ab' * 2 }} {{ [1, 2] + [3] }} {{ (1,) }} {{ (1, 'a') }}", "abab [1, 2, 3] (1,) (1, 'a')")]
    [InlineData("{{ none }} {{ True }} {{ false }} [{{ missing }}]", "None True False []")]
    [InlineData("{{ 1 if true else 2 }}{{ 1 if false else 2 }}[{{ 1 if false }}]", "12[]")]
    [InlineData("{{ not true }} {{ true and 'x' }} {{ '' or 'y' }} {{ 0 and 1 }}", "False x y 0")]
    [InlineData("{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ true == 1 }}", "True False True True True True")]
    [InlineData("{{ 'a' in 'cat' }} {{ 'x' not in 'cat' }} {{ 1 in [1, 2] }} {{ 'a' in d }} {{ 3 not in l }}", "True True True True False")]
    [InlineData("{{ l[1:] }} {{ l[::-1] }} {{ 'hello'[1:3] }} {{ 'hello'[-1] }} {{ l[:-1] }} {{ l[5:] }}", "[1, 2] [2, 1, 3] el o [3, 1] []")]
    [InlineData("{{ {'a': {'b': [10, 20]}}.a.b[1] }} {{ d['a'] }} {{ d.a }} {{ l.0 }} [{{ l[7] }}]", "20 1 1 3 []")]
    [InlineData("{{ -(3) }} {{ -1.5 }} {{ +2 }} {{ -y }}", "-3 -1.5 2 -5")]
    [InlineData("{{ {'a': 1, 'b': [1, 2]} }} {{ [\"it's\", 'q'] }} {{ {'a': none} }}", "{'a': 1, 'b': [1, 2]} [\"it's\", 'q'] {'a': None}")]

    // Filters
    [InlineData("{{ '  x  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ l | length }}|{{ 'abc' | count }}|{{ d | length }}|{{ missing | length }}", "x|a|3|3|1|0")]
    [InlineData("{{ 'AbC' | upper }} {{ 'AbC' | lower }} {{ 'hello world' | capitalize }} {{ 'hello wORLD' | title }}", "ABC abc Hello world Hello World")]
    [InlineData("{{ [1, 'a', none, true, 1.5] | tojson }}", "[1, \"a\", null, true, 1.5]")]
    [InlineData("{{ {'b': 1, 'a': [true, 1.5]} | tojson }}", "{\"b\": 1, \"a\": [true, 1.5]}")]
    [InlineData("{{ {'b': 1, 'a': [2, {}]} | tojson(indent=2) }}", "{\n  \"b\": 1,\n  \"a\": [\n    2,\n    {}\n  ]\n}")]
    [InlineData("{{ 'é\"\\n<>&' | tojson }}", "\"é\\\"\\n<>&\"")]
    [InlineData("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ [1, 2] | tojson(separators=(',', ':')) }} {{ 'é' | tojson(ensure_ascii=true) }}", "{\"a\": 2, \"b\": 1} [1,2] \"\\u00e9\"")]
    [InlineData("{{ 5 | string }} {{ none | string }} {{ l | string }} {{ 1.0 | string }}", "5 None [3, 1, 2] 1.0")]
    [InlineData("{{ l | first }} {{ l | last }} {{ 'xyz' | first }} {{ 'xyz' | last }} [{{ [] | first }}]", "3 2 x z []")]
    [InlineData("{{ ['a', 'b'] | join(', ') }} {{ l | join }} {{ 'abc' | join('-') }}", "a, b 312 a-b-c")]
    [InlineData("{{ 'aXbX' | replace('X', '_') }} {{ 'aaa' | replace('a', 'b', 2) }}", "a_b_ bba")]
    [InlineData("{{ missing | default('d') }} [{{ '' | default('e') }}] {{ '' | default('f', true) }} {{ none | default('g') }} {{ 0 | d('h', boolean=true) }}", "d [] f None h")]
    [InlineData("{{ 'abc' | list }} {{ d | list }} {{ missing | items | list }}", "['a', 'b', 'c'] ['a'] []")]
    [InlineData("{{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ ' 12 ' | int }} {{ '1.5' | float }} {{ 2 | float }}", "42 4 0 7 3 12 1.5 2.0")]
    [InlineData("{{ [{'r': 'u', 'c': 1}, {'r': 'a', 'c': 2}, {'r': 'u', 'c': 3}] | selectattr('r', 'equalto', 'u') | map(attribute='c') | list }}", "[1, 3]")]
    [InlineData("{{ [{'r': 'u', 'c': 1}, {'r': 'a'}] | rejectattr('c') | list }} {{ [{'c': 1}, {'r': 'a'}] | selectattr('c', 'defined') | list | length }}", "[{'r': 'a'}] 1")]
    [InlineData("{{ ['a', 'code_interpreter', 'b'] | reject('equalto', 'code_interpreter') | join(', ') }} {{ [0, 1, 2] | select | list }} {{ [1, 2, 3] | select('odd') | list }}", "a, b [1, 2] [1, 3]")]
    [InlineData("{{ [{'f': {'n': 'x'}}, {'f': {'n': 'y'}}] | map(attribute='f.n') | join }} {{ ['a', 'b'] | map('upper') | list }}", "xy ['A', 'B']")]
    [InlineData("{{ l | reverse | list }} {{ 'abc' | reverse }} {{ -3 | abs }}", "[2, 1, 3] cba 3")]
    [InlineData("{{ 'a\\nb' | indent(2) }}|{{ 'a\\n\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(2, blank=true) }}", "a\n  b|  a\n\n  b|a\n  \n  b")]

    // Tests
    [InlineData("{{ 1 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ 'a' is string }}", "True True True False True True")]
    [InlineData("{{ {} is mapping }} {{ [] is mapping }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ missing is iterable }} {{ l is sequence }}", "True False True False True True")]
    [InlineData("{{ none is none }} {{ 0 is none }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ true is boolean }}", "True False True False True True")]
    [InlineData("{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 2 is eq 2 }} {{ 2 is ne 2 }} {{ 1 is lt 2 }}", "True True True False True False True")]
    [InlineData("{{ 'a' is in 'cat' }} {{ x is defined }} {{ missing is defined }} {{ missing is undefined }} {{ x is not none }} {{ none is not none }}", "True True False True True False")]

    // Methods
    [InlineData("{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '\\n\\na'.lstrip('\\n') }}|{{ 'a  '.rstrip() }}", "a b|a|a|a")]
    [InlineData("{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }}", "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b,c'] ['a,b', 'c']")]
    [InlineData("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} {{ 'aXa'.replace('X', 'y') }} {{ 'Ab'.upper() }}{{ 'Ab'.lower() }}", "True True aya ABab")]
    [InlineData("{{ 'hello'.find('l') }} {{ 'hello'.count('l') }} {{ '-'.join(['a', 'b']) }} {{ '12'.isdigit() }}", "2 2 a-b True")]
    [InlineData("{{ d.get('a') }} {{ d.get('b') }} {{ d.get('b', 2) }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}", "1 None 2 ['a'] [1] [('a', 1)]")]
    [InlineData("{{ '<think>\\nr\\n</think>\\n\\ny'.split('</think>')[-1].lstrip('\\n') }}", "y")]
    public void Interpreter_MatchesJinja(string template, string expected) => Assert.Equal(expected, Jinja(template));

    [Theory]
    [InlineData("{{ x | select }}", "cannot print a generator")]
    [InlineData("{{ d.items }}", "cannot print a function")]
    [InlineData("{{ 'a' % 1 }}", "printf-style string formatting")]
    public void ValuesJinjaWouldPrintAsPythonObjectAddresses_AreRefused(string template, string message) =>
        Assert.Contains(message, Assert.Throws<ChatTemplateException>(() => Jinja(template)).Message);

    [Fact]
    public void Generators_AreSingleUseAndAlwaysTrue_AsInPython()
    {
        Assert.Equal("[1, 2]|[]", Jinja("{% set g = [1, 2] | select %}{{ g | list }}|{{ g | list }}"));
        Assert.Equal("yes", Jinja("{% if [] | select %}yes{% endif %}"));
        Assert.Contains("has no len()", Assert.Throws<ChatTemplateException>(() => Jinja("{{ l | select | length }}")).Message);
    }

    [Fact]
    public void StrftimeNow_UsesThePythonDirectives()
    {
        var clock = new FixedClock(new DateTimeOffset(2024, 7, 26, 9, 5, 3, TimeSpan.Zero));

        Assert.Equal("26 Jul 2024|Friday July 07/26/24 09:05:03 AM|2024-07-26",
            JinjaTemplate.Parse("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%A %B %m/%d/%y %H:%M:%S %p') }}|{{ strftime_now('%Y-%m-%d') }}")
                .Render(new Dictionary<string, object?>(), clock));
    }

    [Theory]
    [InlineData("{% for %}", 1, 8, "expected a name to assign to")]
    [InlineData("ok\n{{ 1 +  }}", 2, 9, "unexpected end of print statement")]
    [InlineData("{% if true %}\nx", 2, 2, "expected 'elif' or 'else' or 'endif'")]
    [InlineData("{% endif %}", 1, 4, "unknown tag 'endif'")]
    [InlineData("a\n\n  {{ x | nosuchfilter }}", 3, 10, "filter 'nosuchfilter' is not supported")]
    [InlineData("{{ x is nosuchtest }}", 1, 9, "test 'nosuchtest' is not supported")]
    [InlineData("{% macro m() %}{% endmacro %}", 1, 4, "the 'macro' tag is not supported")]
    [InlineData("{% include 'x' %}", 1, 4, "the 'include' tag is not supported")]
    [InlineData("{{ 'unterminated }}", 1, 4, "unterminated string literal")]
    [InlineData("{{ {'a': 1 }}", 1, 13, "unexpected '}'")]
    [InlineData("{# no end", 1, 1, "missing end of comment tag")]
    [InlineData("{{ 1 }}{% break %}", 1, 11, "'break' outside of a for loop")]
    [InlineData("{{ 1 is defined is defined }}", 1, 17, "cannot chain multiple tests")]
    public void SyntaxErrors_NameTheProblemAndItsLineAndColumn(string template, int line, int column, string message)
    {
        var e = Assert.Throws<ChatTemplateException>(() => JinjaTemplate.Parse(template));

        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.StartsWith($"chat template line {line}, column {column}: ", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("\n\n{{\n  missing.attr\n}}", 4, 10, "'missing' is undefined")]
    [InlineData("{{ missing[0] }}", 1, 11, "'missing' is undefined")]
    [InlineData("{{ missing + 1 }}", 1, 12, "'missing' is undefined")]
    [InlineData("{{ missing() }}", 1, 4, "'missing' is undefined")]
    [InlineData("{{ none.a.b }}", 1, 10, "'None' has no attribute 'a'")]
    [InlineData("{{ 'a' + 1 }}", 1, 8, "unsupported operand type(s) for +: 'str' and 'int'")]
    [InlineData("{{ 1 / 0 }}", 1, 6, "division by zero")]
    [InlineData("{{ 1 < 'a' }}", 1, 8, "'<' not supported between instances of 'int' and 'str'")]
    [InlineData("{{ missing | tojson }}", 1, 14, "not JSON serializable")]
    [InlineData("{{ [].append(1) }}", 1, 6, "unsafe")]
    [InlineData("{% set y.a = 1 %}", 1, 8, "not a namespace() object")]
    [InlineData("{% for a, b in [1] %}{% endfor %}", 1, 8, "'int' object is not iterable")]
    public void RuntimeErrors_NameTheProblemAndItsLineAndColumn(string template, int line, int column, string message)
    {
        var e = Assert.Throws<ChatTemplateException>(() => Jinja(template));

        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.Contains(message, e.Message);
        Assert.False(e.RaisedByTemplate);
    }

    [Fact]
    public void RaiseException_CarriesTheTemplatesMessageAndPosition()
    {
        var e = Assert.Throws<ChatTemplateException>(() => Jinja("line\n  {{ raise_exception('boom ' ~ 1) }}"));

        Assert.Equal("boom 1", e.Message);
        Assert.True(e.RaisedByTemplate);
        Assert.Equal((2, 6), (e.Line, e.Column));
    }

    [Fact]
    public void Render_RefusesVariablesThatRenderSetsItself()
    {
        ChatTemplate template = ChatTemplate.Parse("{{ messages | length }}");

        Assert.Throws<ArgumentException>(() => template.Render([], true, new Dictionary<string, object?> { ["messages"] = 1 }));
        Assert.Equal("0", template.Render([]));
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now.ToUniversalTime();

        public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
    }
}
