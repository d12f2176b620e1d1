use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::tokens::{IMAGE_TOKENS, REPLY_PRIMING, count_tokens};
use super::*;

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn chat(messages: Value) -> Map<String, Value> {
    object(json!({ "messages": messages }))
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn classified(body: &Map<String, Value>, max_tokens: Option<u32>) -> WorkloadProfile {
    profile(body, false, max_tokens, &Overrides::default())
}

/// A prompt, its `max_tokens`, the intent it should get and words of the reason.
type IntentCase = (
    &'static str,
    Map<String, Value>,
    Option<u32>,
    Intent,
    &'static str,
);

#[test]
fn every_intent_rule_fires_and_names_itself() {
    let long_prose = "The history of the railway is long and varied. ".repeat(500);
    let weather_tool = json!([{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
    }}]);
    let cases: Vec<IntentCase> = vec![
        (
            "suffix field",
            object(
                json!({"messages": [user("def add(a, b):\n")], "suffix": "\n    return total\n"}),
            ),
            None,
            Intent::Autocomplete,
            "autocomplete: fill-in-the-middle `suffix` field",
        ),
        (
            "fim markers",
            chat(json!([user(
                "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n<|fim_middle|>"
            )])),
            None,
            Intent::Autocomplete,
            "fill-in-the-middle marker <|fim_prefix|>",
        ),
        (
            "short with a tiny max_tokens",
            chat(json!([user("The capital of France is")])),
            Some(16),
            Intent::Autocomplete,
            "with max_tokens 16 (<= 64)",
        ),
        (
            "partial line of code",
            chat(json!([user(
                "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fib"
            )])),
            None,
            Intent::Autocomplete,
            "autocomplete: the last user message ends in a partial line of code",
        ),
        (
            "reasoning words",
            chat(json!([user(
                "Prove that there are infinitely many primes."
            )])),
            None,
            Intent::DeepReasoning,
            "deep_reasoning: the last user message asks for reasoning (\"prove\")",
        ),
        (
            "reasoning system prompt",
            chat(json!([
                {"role": "system", "content": "You are careful. Think step by step before answering."},
                user("How many weekdays are there in March 2025?"),
            ])),
            None,
            Intent::DeepReasoning,
            "deep_reasoning: the system prompt asks for reasoning (\"step by step\")",
        ),
        (
            "short edit",
            chat(json!([user(
                "Rename the variable `x` to `count`:\n```python\nx = 0\nfor item in items:\n    x += 1\n```"
            )])),
            None,
            Intent::QuickEdit,
            "with code and the edit verb \"rename\"",
        ),
        (
            "code block",
            chat(json!([user(
                "Why does this not compile?\n```rust\nlet s = String::from(\"hi\");\nlet t = s;\nprintln!(\"{s}\");\n```"
            )])),
            None,
            Intent::Coding,
            "coding: code block in the last user message",
        ),
        (
            "code-like lines",
            chat(json!([user(
                "What is wrong here?\nfn main() {\n    let v = vec![1, 2, 3];\n    println!(\"{}\", v[3]);\n}"
            )])),
            None,
            Intent::Coding,
            "coding: code-like lines in the last user message",
        ),
        (
            "tools",
            object(
                json!({"messages": [user("What's the weather in Paris?")], "tools": weather_tool}),
            ),
            None,
            Intent::Coding,
            "coding: tools are declared",
        ),
        (
            "long input",
            chat(json!([user(&long_prose)])),
            None,
            Intent::DeepReasoning,
            "input tokens (over 4000)",
        ),
        (
            "plain chat",
            chat(json!([user(
                "Hello! Can you recommend a good book about trains?"
            )])),
            None,
            Intent::Chat,
            "chat: no other rule matched",
        ),
        (
            "a tiny max_tokens in a conversation is not autocomplete",
            chat(json!([
                user("Hi"),
                {"role": "assistant", "content": "Hello! How can I help?"},
                user("Tell me a fun fact about trains"),
            ])),
            Some(16),
            Intent::Chat,
            "chat: no other rule matched",
        ),
        (
            "an edit verb without code is chat",
            chat(json!([user(
                "Can you add a paragraph about steam engines?"
            )])),
            None,
            Intent::Chat,
            "chat: no other rule matched",
        ),
        (
            "improve is not prove",
            chat(json!([user("How can I improve my sleep?")])),
            None,
            Intent::Chat,
            "chat: no other rule matched",
        ),
    ];
    for (name, body, max_tokens, intent, reason) in cases {
        let p = classified(&body, max_tokens);
        assert_eq!(p.intent, intent, "{name}: {}", p.intent_reason);
        assert_eq!(p.intent_source, Source::Classified, "{name}");
        assert!(
            p.intent_reason.contains(reason),
            "{name}: {:?} should contain {reason:?}",
            p.intent_reason
        );
        assert!(
            p.intent_reason
                .starts_with(&format!("{}: ", intent.as_str())),
            "{name}: {}",
            p.intent_reason
        );
        assert!(!p.intent_reason.contains('\n'), "{name}: one line");
        assert_eq!(p.timeout, intent.default_timeout(), "{name}");
        assert_eq!(p.timeout_source, Source::Classified, "{name}");
        let expected_output = max_tokens.map_or(intent.default_output_tokens(), u64::from);
        assert_eq!(p.output_tokens, expected_output, "{name}");
    }
}

#[test]
fn overrides_win() {
    let body = chat(json!([user(
        "```rust\nfn main() {}\n```\nwhat does this do?"
    )]));
    assert_eq!(classified(&body, None).intent, Intent::Coding);

    let intent_only = Overrides {
        intent: Some(Intent::Chat),
        ..Overrides::default()
    };
    let p = profile(&body, false, None, &intent_only);
    assert_eq!(p.intent, Intent::Chat);
    assert_eq!(p.intent_source, Source::Requested);
    assert_eq!(p.intent_reason, "chat: requested by the client");
    assert_eq!(p.output_tokens, 512, "the requested intent's default");
    assert_eq!(p.timeout, TimeoutProfile::Standard);
    assert_eq!(p.timeout_source, Source::Classified);

    let both = Overrides {
        intent: Some(Intent::DeepReasoning),
        timeout: Some(TimeoutProfile::Custom(Duration::from_secs(45))),
    };
    let p = profile(&body, false, Some(100), &both);
    assert_eq!(p.intent, Intent::DeepReasoning);
    assert_eq!(p.output_tokens, 100, "max_tokens wins over the default");
    assert_eq!(p.timeout, TimeoutProfile::Custom(Duration::from_secs(45)));
    assert_eq!(p.timeout_source, Source::Requested);

    let timeout_only = Overrides {
        timeout: Some(TimeoutProfile::Fast),
        ..Overrides::default()
    };
    let p = profile(&body, false, None, &timeout_only);
    assert_eq!(p.intent, Intent::Coding);
    assert_eq!(p.intent_source, Source::Classified);
    assert_eq!(p.timeout, TimeoutProfile::Fast);
    assert_eq!(p.timeout_source, Source::Requested);
}

#[test]
fn capabilities_are_detected() {
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]}]);
    let tool = json!([{"type": "function", "function": {"name": "f"}}]);
    let none = RequiredCapabilities::default();
    let cases = [
        (
            "nothing special",
            json!({"messages": [user("hi")]}),
            false,
            none,
        ),
        (
            "tools",
            json!({"messages": [user("hi")], "tools": tool}),
            false,
            RequiredCapabilities {
                tools: true,
                ..none
            },
        ),
        (
            "legacy functions",
            json!({"messages": [user("hi")], "functions": [{"name": "f"}]}),
            false,
            RequiredCapabilities {
                tools: true,
                ..none
            },
        ),
        (
            "empty tools",
            json!({"messages": [user("hi")], "tools": []}),
            false,
            none,
        ),
        (
            "vision",
            json!({"messages": image}),
            false,
            RequiredCapabilities {
                vision: true,
                ..none
            },
        ),
        (
            "json object",
            json!({"messages": [user("hi")], "response_format": {"type": "json_object"}}),
            false,
            RequiredCapabilities {
                json_output: true,
                ..none
            },
        ),
        (
            "json schema",
            json!({"messages": [user("hi")], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}),
            false,
            RequiredCapabilities {
                json_output: true,
                ..none
            },
        ),
        (
            "plain text format",
            json!({"messages": [user("hi")], "response_format": {"type": "text"}}),
            false,
            none,
        ),
        (
            "streaming",
            json!({"messages": [user("hi")]}),
            true,
            RequiredCapabilities {
                streaming: true,
                ..none
            },
        ),
    ];
    for (name, body, stream, expected) in cases {
        let p = profile(&object(body), stream, None, &Overrides::default());
        assert_eq!(p.capabilities, expected, "{name}");
    }
}

#[test]
fn input_tokens_are_exact_for_a_known_conversation() {
    // o200k_base: "user" is 1 token, "hello world" 2, "system" 1,
    // "You are terse." 4; each message adds 3 and the reply priming 3.
    assert_eq!(count_tokens("You are terse."), 4);
    let one = classified(&chat(json!([user("hello world")])), None);
    assert_eq!(one.input_tokens, 3 + (3 + 1 + 2));
    let two = classified(
        &chat(json!([
            {"role": "system", "content": "You are terse."},
            user("hello world"),
        ])),
        None,
    );
    assert_eq!(two.input_tokens, 3 + (3 + 1 + 4) + (3 + 1 + 2));
    assert_eq!(two.context_needed(), two.input_tokens + 512);
}

#[test]
fn input_tokens_grow_with_content_and_tools() {
    let mut previous = 0;
    for n in [1, 10, 100, 1_000] {
        let p = classified(&chat(json!([user(&"tokens ".repeat(n))])), None);
        assert!(p.input_tokens > previous, "{n}: {}", p.input_tokens);
        previous = p.input_tokens;
    }
    let plain = classified(&chat(json!([user("hi")])), None);
    let with_tools = classified(
        &object(
            json!({"messages": [user("hi")], "tools": [{"type": "function", "function": {"name": "lookup"}}]}),
        ),
        None,
    );
    assert!(with_tools.input_tokens > plain.input_tokens + 5);
}

#[test]
fn images_add_the_flat_estimate() {
    let text_only =
        json!([{"role": "user", "content": [{"type": "text", "text": "Describe these"}]}]);
    let with_images = json!([{"role": "user", "content": [
        {"type": "text", "text": "Describe these"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_image", "image_url": "https://example.com/b.png"},
    ]}]);
    let a = classified(&chat(text_only), None);
    let b = classified(&chat(with_images), None);
    assert_eq!(b.input_tokens, a.input_tokens + 2 * IMAGE_TOKENS);
    assert!(b.capabilities.vision && !a.capabilities.vision);
}

#[test]
fn bodies_without_messages_still_profile() {
    for body in [
        json!({}),
        json!({"messages": null}),
        json!({"messages": "hi"}),
        json!({"messages": []}),
    ] {
        let p = classified(&object(body.clone()), None);
        assert_eq!(p.input_tokens, REPLY_PRIMING, "{body}");
        assert_eq!(p.intent, Intent::Chat, "{body}");
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "fn main() {\n    let x =",
            "```rust\nlet x = 1;\n```",
            "<|fim_prefix|>a<|fim_suffix|>",
            "Prove it step by step",
            "fix `x` please",
            "x = 1;\ny = 2;",
            "user",
            "image_url",
            "text",
            "",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "role",
        "content",
        "type",
        "text",
        "image_url",
        "name",
        "tool_calls",
        "function",
        "arguments",
        "other",
    ])
    .prop_map(str::to_owned)
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn message() -> impl Strategy<Value = Value> {
    let role = prop::sample::select(vec![
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "robot",
    ]);
    prop_oneof![
        json_value(),
        (role, json_value()).prop_map(|(role, content)| json!({"role": role, "content": content})),
    ]
}

fn request_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::collection::vec(message(), 0..8),
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
        proptest::option::of(json_value()),
    )
        .prop_map(|(messages, tools, response_format, suffix)| {
            let mut body = Map::new();
            body.insert("messages".into(), Value::Array(messages));
            for (key, value) in [
                ("tools", tools),
                ("response_format", response_format),
                ("suffix", suffix),
            ] {
                if let Some(value) = value {
                    body.insert(key.into(), value);
                }
            }
            body
        })
}

proptest! {
    #[test]
    fn profile_never_panics_and_is_deterministic(
        body in request_body(),
        stream in any::<bool>(),
        max_tokens in proptest::option::of(any::<u32>()),
        intent in proptest::option::of(prop::sample::select(Intent::ALL.to_vec())),
    ) {
        let overrides = Overrides { intent, timeout: None };
        let first = profile(&body, stream, max_tokens, &overrides);
        let second = profile(&body, stream, max_tokens, &overrides);
        prop_assert_eq!(&first, &second);
        prop_assert!(first.input_tokens >= REPLY_PRIMING);
        prop_assert!(first.context_needed() >= first.input_tokens);
        prop_assert_eq!(first.capabilities.streaming, stream);
        prop_assert!(first.intent_reason.starts_with(first.intent.as_str()));
        prop_assert!(!first.intent_reason.contains('\n'));
    }
}
