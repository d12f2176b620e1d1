//! Input token counting with a real BPE tokenizer: OpenAI's `o200k_base`
//! encoding (GPT-4o and later), from the `bpe-openai` crate. The vocabulary is
//! compiled into the binary, so nothing is downloaded at run time; the encoder
//! is built once per process, on first use or by [`warm_up`].
//!
//! A conversation costs, as OpenAI documents for its chat models:
//! 3 tokens per message, plus its role, its content and its name (with 1 more
//! for a name), plus 3 tokens that prime the reply. Tool calls in assistant
//! messages count their function name and arguments plus 1. Tool definitions
//! count as the tokens of their JSON. An image part counts a flat
//! [`IMAGE_TOKENS`] whatever its size. Content we cannot read as text (an
//! unknown part type, a malformed message) counts as the tokens of its JSON, so
//! nothing a client sends is free.
//!
//! Counting is linear in the text (no quadratic worst case on long runs of one
//! character); a 2 KB prompt takes tens of microseconds.

use bpe_openai::Tokenizer;
use serde_json::{Map, Value};

/// Tokens added for every message (its framing).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens added when a message carries a `name`.
pub const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply, once per request.
pub const REPLY_PRIMING: u64 = 3;
/// Tokens added for each tool call or legacy function call in a message.
pub const TOKENS_PER_CALL: u64 = 1;
/// Flat estimate for one image: a 1024×1024 image at high detail
/// (85 base tokens + 4 tiles × 170).
pub const IMAGE_TOKENS: u64 = 765;

fn encoder() -> &'static Tokenizer {
    // A process-wide encoder, built on first use behind a `LazyLock`.
    bpe_openai::o200k_base()
}

/// Builds the encoder now, so the first request does not pay for it (tens of
/// milliseconds in a release build).
pub fn warm_up() {
    let _ = encoder().count("warm up");
}

/// Tokens of `text` in the `o200k_base` encoding, special-token markers
/// counted as ordinary text.
pub fn count_tokens(text: &str) -> u64 {
    to_u64(encoder().count(text))
}

/// Tokens of a JSON value's compact serialization.
fn count_json(value: &Value) -> u64 {
    count_tokens(&value.to_string())
}

/// Tokens of one message: framing, role, name, content and tool calls.
pub(crate) fn message_tokens(message: &Value) -> u64 {
    let Value::Object(fields) = message else {
        return TOKENS_PER_MESSAGE.saturating_add(count_json(message));
    };
    let mut tokens = TOKENS_PER_MESSAGE;
    if let Some(role) = fields.get("role").and_then(Value::as_str) {
        tokens = tokens.saturating_add(count_tokens(role));
    }
    if let Some(name) = fields.get("name").and_then(Value::as_str) {
        tokens = tokens
            .saturating_add(count_tokens(name))
            .saturating_add(TOKENS_PER_NAME);
    }
    tokens = tokens.saturating_add(content_tokens(fields.get("content")));
    if let Some(Value::Array(calls)) = fields.get("tool_calls") {
        for call in calls {
            tokens = tokens.saturating_add(call_tokens(call.get("function").unwrap_or(call)));
        }
    }
    if let Some(call) = fields.get("function_call") {
        tokens = tokens.saturating_add(call_tokens(call));
    }
    tokens
}

/// Tokens of a message's content: a string, an array of parts, or null.
fn content_tokens(content: Option<&Value>) -> u64 {
    match content {
        None | Some(Value::Null) => 0,
        Some(Value::String(text)) => count_tokens(text),
        Some(Value::Array(parts)) => parts.iter().map(part_tokens).fold(0, u64::saturating_add),
        Some(other) => count_json(other),
    }
}

fn part_tokens(part: &Value) -> u64 {
    if super::content::is_image(part) {
        return IMAGE_TOKENS;
    }
    match super::content::part_text(part) {
        Some(text) => count_tokens(text),
        None => count_json(part),
    }
}

/// A function call: its name and arguments, or its JSON when it has neither.
fn call_tokens(call: &Value) -> u64 {
    let name = call.get("name").and_then(Value::as_str);
    let arguments = call.get("arguments").and_then(Value::as_str);
    if name.is_none() && arguments.is_none() {
        return count_json(call).saturating_add(TOKENS_PER_CALL);
    }
    count_tokens(name.unwrap_or_default())
        .saturating_add(count_tokens(arguments.unwrap_or_default()))
        .saturating_add(TOKENS_PER_CALL)
}

/// Tokens of the tool definitions (`tools`, or legacy `functions`) as JSON.
pub(crate) fn tool_tokens(body: &Map<String, Value>) -> u64 {
    ["tools", "functions"]
        .into_iter()
        .filter_map(|key| body.get(key))
        .filter(|tools| super::content::non_empty_array(tools))
        .map(count_json)
        .fold(0, u64::saturating_add)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn known_strings_have_their_o200k_counts() {
        // Counts pinned from the o200k_base encoding (checked against tiktoken).
        let cases = [
            ("", 0),
            ("hello world", 2),
            ("Hello, how are you today?", 7),
            ("fn main() { println!(\"hi\"); }", 9),
            ("The quick brown fox jumps over the lazy dog.", 10),
            ("<|endoftext|>", 7),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                8,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(count_tokens(text), expected, "{text:?}");
        }
    }

    #[test]
    fn a_message_costs_framing_role_name_and_content() {
        let plain = message_tokens(&json!({"role": "user", "content": "hello world"}));
        // 3 framing + "user" (1) + "hello world" (2).
        assert_eq!(plain, 6);
        let named =
            message_tokens(&json!({"role": "user", "name": "bob", "content": "hello world"}));
        assert_eq!(named, plain + count_tokens("bob") + TOKENS_PER_NAME);
        let empty = message_tokens(&json!({"role": "assistant", "content": null}));
        assert_eq!(empty, TOKENS_PER_MESSAGE + count_tokens("assistant"));
    }

    #[test]
    fn text_parts_count_like_a_string_and_images_count_flat() {
        let as_string = message_tokens(&json!({"role": "user", "content": "hello world"}));
        let as_parts = message_tokens(
            &json!({"role": "user", "content": [{"type": "text", "text": "hello world"}]}),
        );
        assert_eq!(as_parts, as_string);
        let with_images = message_tokens(&json!({"role": "user", "content": [
            {"type": "text", "text": "hello world"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "input_image", "image_url": "https://example.com/a.png"},
        ]}));
        assert_eq!(with_images, as_string + 2 * IMAGE_TOKENS);
    }

    #[test]
    fn tool_calls_and_definitions_count() {
        let call = message_tokens(
            &json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]}),
        );
        let expected = TOKENS_PER_MESSAGE
            + count_tokens("assistant")
            + count_tokens("get_weather")
            + count_tokens("{\"city\":\"Paris\"}")
            + TOKENS_PER_CALL;
        assert_eq!(call, expected);

        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        let mut body = Map::new();
        assert_eq!(tool_tokens(&body), 0);
        body.insert("tools".into(), json!([]));
        assert_eq!(tool_tokens(&body), 0);
        body.insert("tools".into(), tools.clone());
        assert_eq!(tool_tokens(&body), count_tokens(&tools.to_string()));
        assert!(tool_tokens(&body) > 10);
    }

    #[test]
    fn counts_grow_with_content() {
        let mut previous = 0;
        for words in [1, 10, 100, 1_000] {
            let text = "routing gateway ".repeat(words);
            let n = count_tokens(&text);
            assert!(n > previous, "{words} words: {n} <= {previous}");
            previous = n;
        }
    }

    #[test]
    fn malformed_content_still_counts() {
        assert!(message_tokens(&json!({"role": "user", "content": 12345})) > TOKENS_PER_MESSAGE);
        assert!(message_tokens(&json!("not a message")) > TOKENS_PER_MESSAGE);
        assert!(
            message_tokens(
                &json!({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]})
            ) > 5
        );
        assert_eq!(message_tokens(&json!({})), TOKENS_PER_MESSAGE);
    }

    #[test]
    fn a_typical_prompt_counts_near_a_quarter_of_its_bytes() {
        // Not a timing assertion: a 2 KB prompt of mixed prose and code has the
        // same count on every run, and the count is near a quarter of its bytes.
        let prompt = "Please fix the bug in this function so it handles empty input.\n```rust\nfn parse(input: &str) -> Vec<u32> {\n    input.split(',').map(|s| s.trim().parse().unwrap_or(0)).collect()\n}\n```\n".repeat(10);
        let n = count_tokens(&prompt);
        assert_eq!(n, count_tokens(&prompt));
        let bytes = u64::try_from(prompt.len()).unwrap();
        assert!(
            n > bytes / 8 && n < bytes / 2,
            "{n} tokens for {bytes} bytes"
        );
    }
}
