//! OpenAI chat-completions body -> Anthropic Messages request.

use crate::providers::{ErrorClass, ProviderError};
use crate::request::ChatRequest;
use serde_json::{Map, Value, json};

use super::*;

// ---------------------------------------------------------------------------
// Request mapping: OpenAI chat-completions body -> Anthropic messages body.

/// The request cannot be expressed for Anthropic; another provider may take it.
pub(super) fn unsupported(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorClass::Configuration,
        format!("Anthropic cannot take {what}"),
    )
}

/// The request is malformed whichever provider gets it.
pub(super) fn malformed(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorClass::Content, message)
}

/// A turn's content: a plain string until it needs blocks.
#[derive(Debug)]
pub(super) enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

impl Content {
    fn into_blocks(self) -> Vec<Value> {
        match self {
            Self::Text(text) if text.is_empty() => Vec::new(),
            Self::Text(text) => vec![text_block(text)],
            Self::Blocks(blocks) => blocks,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Self::Text(text) => Value::String(text),
            Self::Blocks(blocks) => Value::Array(blocks),
        }
    }
}

#[derive(Debug)]
pub(super) struct Turn {
    pub(super) role: &'static str,
    pub(super) content: Content,
}

/// Appends a turn, merging it into the previous one of the same role:
/// Anthropic wants user and assistant turns to alternate.
pub(super) fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Content) {
    if let Some(last) = turns.last_mut()
        && last.role == role
    {
        let previous = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
        let mut blocks = previous.into_blocks();
        blocks.extend(content.into_blocks());
        last.content = Content::Blocks(blocks);
        return;
    }
    turns.push(Turn { role, content });
}

pub(super) fn text_block(text: impl Into<String>) -> Value {
    json!({ "type": "text", "text": text.into() })
}

pub(super) fn build_body(
    request: &ChatRequest,
    model: &str,
    stream: bool,
) -> Result<Map<String, Value>, ProviderError> {
    let source = &request.body;
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    let messages = source
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        let content = message.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let text = plain_text(content)?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => push_turn(&mut turns, "user", user_content(content)?),
            "assistant" => push_turn(&mut turns, "assistant", assistant_content(message)?),
            "tool" => push_turn(
                &mut turns,
                "user",
                Content::Blocks(vec![tool_result(message)?]),
            ),
            other => return Err(unsupported(&format!("messages with role {other:?}"))),
        }
    }

    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    body.insert("max_tokens".into(), max_tokens(request).into());
    if !system.is_empty() {
        body.insert("system".into(), Value::String(system.join("\n\n")));
    }
    body.insert(
        "messages".into(),
        turns
            .into_iter()
            .map(|t| json!({ "role": t.role, "content": t.content.into_value() }))
            .collect(),
    );
    if let Some(tools) = source.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        body.insert(
            "tools".into(),
            tools.iter().map(tool).collect::<Result<_, _>>()?,
        );
        if let Some(choice) = tool_choice(source)? {
            body.insert("tool_choice".into(), choice);
        }
    }
    if let Some(t) = source.get("temperature").and_then(Value::as_f64) {
        body.insert("temperature".into(), t.clamp(0.0, MAX_TEMPERATURE).into());
    }
    if let Some(p) = source.get("top_p").filter(|v| v.is_number()) {
        body.insert("top_p".into(), p.clone());
    }
    match source.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if !list.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(list.clone()));
        }
        _ => {}
    }
    if let Some(user) = source.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    body.insert("stream".into(), Value::Bool(stream));
    Ok(body)
}

/// The request's own limit, else the output the workload planned for.
pub(super) fn max_tokens(request: &ChatRequest) -> u64 {
    let from_body = || {
        ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| request.body.get(*k).and_then(Value::as_u64))
    };
    request
        .max_tokens
        .map(u64::from)
        .or_else(from_body)
        .unwrap_or(request.workload.output_tokens)
        .max(1)
}

/// Text of a system or tool message: a string, or text parts joined by newlines.
pub(super) fn plain_text(content: &Value) -> Result<String, ProviderError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let texts = parts
                .iter()
                .map(|part| match part.get("type").and_then(Value::as_str) {
                    Some("text") => part
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or_else(|| malformed("a text part has no text")),
                    other => Err(unsupported(&format!(
                        "{} parts in system or tool messages",
                        other.unwrap_or("untyped")
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(texts.join("\n"))
        }
        _ => Err(malformed("message content must be a string or an array")),
    }
}

pub(super) fn user_content(content: &Value) -> Result<Content, ProviderError> {
    match content {
        Value::Null => Ok(Content::Blocks(Vec::new())),
        Value::String(s) => Ok(Content::Text(s.clone())),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = part
                            .get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| malformed("a text part has no text"))?;
                        // Anthropic refuses empty text blocks.
                        if !text.is_empty() {
                            blocks.push(text_block(text));
                        }
                    }
                    Some("image_url") => blocks.push(image_block(part)?),
                    other => {
                        return Err(unsupported(&format!(
                            "{} content parts",
                            other.unwrap_or("untyped")
                        )));
                    }
                }
            }
            Ok(Content::Blocks(blocks))
        }
        _ => Err(malformed("message content must be a string or an array")),
    }
}

/// An OpenAI `image_url` part: a base64 data URL or an http(s) URL.
pub(super) fn image_block(part: &Value) -> Result<Value, ProviderError> {
    let image = part.get("image_url");
    let url = image
        .and_then(|i| i.get("url"))
        .or(image)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("an image_url part has no url"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| malformed("an image data URL has no data"))?;
        let media_type = header
            .strip_suffix(";base64")
            .ok_or_else(|| malformed("an image data URL must be base64-encoded"))?;
        // Parameters such as `;name=` are not Anthropic's business.
        let media_type = media_type.split(';').next().unwrap_or(media_type);
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(malformed("an image URL must be http(s) or a data URL"))
}

/// An assistant turn: its text and refusals, then its tool calls as `tool_use` blocks.
pub(super) fn assistant_content(message: &Value) -> Result<Content, ProviderError> {
    let content = match message.get("content").unwrap_or(&Value::Null) {
        Value::Null => Content::Blocks(Vec::new()),
        Value::String(s) => Content::Text(s.clone()),
        Value::Array(parts) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                let kind = part.get("type").and_then(Value::as_str);
                let text = match kind {
                    Some("text") => part.get("text"),
                    Some("refusal") => part.get("refusal"),
                    other => {
                        return Err(unsupported(&format!(
                            "{} parts in assistant messages",
                            other.unwrap_or("untyped")
                        )));
                    }
                };
                let text = text
                    .and_then(Value::as_str)
                    .ok_or_else(|| malformed("an assistant part has no text"))?;
                if !text.is_empty() {
                    blocks.push(text_block(text));
                }
            }
            Content::Blocks(blocks)
        }
        _ => return Err(malformed("message content must be a string or an array")),
    };
    let calls = match message.get("tool_calls") {
        Some(Value::Array(calls)) if !calls.is_empty() => calls,
        _ => return Ok(content),
    };
    let mut blocks = content.into_blocks();
    for call in calls {
        blocks.push(tool_use(call)?);
    }
    Ok(Content::Blocks(blocks))
}

pub(super) fn tool_use(call: &Value) -> Result<Value, ProviderError> {
    if call
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
        != "function"
    {
        return Err(unsupported("tool calls other than functions"));
    }
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a tool call has no id"))?;
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a tool call has no function name"))?;
    let input = match function.and_then(|f| f.get("arguments")) {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => json!({}),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .map_err(|_| malformed("tool call arguments are not valid JSON"))?,
        Some(other) => other.clone(),
    };
    if !input.is_object() {
        return Err(malformed("tool call arguments must be a JSON object"));
    }
    Ok(json!({ "type": "tool_use", "id": id, "name": name, "input": input }))
}

/// A `tool` message: the result of the call it names, sent as a user turn.
pub(super) fn tool_result(message: &Value) -> Result<Value, ProviderError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a tool message has no tool_call_id"))?;
    let content = plain_text(message.get("content").unwrap_or(&Value::Null))?;
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": content }))
}

pub(super) fn tool(tool: &Value) -> Result<Value, ProviderError> {
    if tool
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function")
        != "function"
    {
        return Err(unsupported("tools other than functions"));
    }
    let function = tool
        .get("function")
        .ok_or_else(|| malformed("a tool has no function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a tool has no name"))?;
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.to_owned()));
    if let Some(description) = function.get("description").and_then(Value::as_str) {
        out.insert("description".into(), Value::String(description.to_owned()));
    }
    let schema = function
        .get("parameters")
        .filter(|p| p.is_object())
        .cloned()
        .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// OpenAI `tool_choice` and `parallel_tool_calls` as one Anthropic `tool_choice`.
pub(super) fn tool_choice(source: &Map<String, Value>) -> Result<Option<Value>, ProviderError> {
    let mut choice = match source.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Some(json!({ "type": "auto" })),
            "required" => Some(json!({ "type": "any" })),
            "none" => Some(json!({ "type": "none" })),
            other => return Err(malformed(format!("unknown tool_choice {other:?}"))),
        },
        Some(named) => {
            let name = named
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("tool_choice names no function"))?;
            Some(json!({ "type": "tool", "name": name }))
        }
    };
    if source.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    Ok(choice)
}
