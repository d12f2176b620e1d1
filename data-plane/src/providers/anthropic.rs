//! Anthropic Messages API. The client's OpenAI chat-completions body is
//! translated: system and developer messages become the top-level `system`,
//! tools and tool calls become `tool_use`/`tool_result` blocks, consecutive
//! turns of one role are merged, and `max_tokens`, which Anthropic requires,
//! always gets a value. Answers and stream events are normalised back.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::sse::SseDecoder;
use super::{Completion, ErrorClass, EventStream, ProviderError, StreamEvent, Usage};
use crate::request::ChatRequest;

/// The API version every request pins; extra headers may override it.
const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Largest non-streamed response body read from a provider.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Longest provider error message passed on to clients and traces.
const MAX_ERROR_MESSAGE: usize = 500;
/// Anthropic's sampling temperature tops out at 1; OpenAI's at 2.
const MAX_TEMPERATURE: f64 = 1.0;

#[derive(Debug, Clone)]
pub struct AnthropicEndpoint {
    url: String,
    api_key: Option<SecretString>,
    headers: HeaderMap,
}

impl AnthropicEndpoint {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        extra_headers: BTreeMap<String, String>,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra_headers {
            // Validated by the registry; anything else is skipped rather than sent mangled.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.insert(name, value);
            }
        }
        Self {
            url: format!("{}/messages", base_url.trim_end_matches('/')),
            api_key,
            headers,
        }
    }

    fn request(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        stream: bool,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let body = build_body(request, model, stream)?;
        let mut headers = self.headers.clone();
        if let Some(key) = &self.api_key {
            let mut value = HeaderValue::from_str(key.expose_secret()).map_err(|_| {
                ProviderError::new(
                    ErrorClass::Configuration,
                    "the provider's API key is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-api-key"), value);
        }
        let body = serde_json::to_vec(&body).map_err(|e| {
            ProviderError::new(
                ErrorClass::Content,
                format!("request cannot be encoded: {e}"),
            )
        })?;
        Ok(client.post(&self.url).headers(headers).body(body))
    }

    pub async fn complete(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<Completion, ProviderError> {
        let builder = self.request(client, request, model, false)?;
        let call = async {
            let response = builder.send().await.map_err(transport_error)?;
            let status = response.status();
            let retry_after = super::retry_after(response.headers());
            let body = read_limited(response).await?;
            if !status.is_success() {
                return Err(status_error(status.as_u16(), &body).with_retry_after(retry_after));
            }
            parse_message(&body)
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| no_response_within(timeout))?
    }

    pub async fn stream(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<EventStream, ProviderError> {
        let send = self.request(client, request, model, true)?.send();
        let response = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| no_response_within(timeout))?
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = super::retry_after(response.headers());
            let body = read_limited(response).await?;
            return Err(status_error(status.as_u16(), &body).with_retry_after(retry_after));
        }
        Ok(Box::pin(sse_events(
            Box::pin(response.bytes_stream()),
            timeout,
        )))
    }
}

// ---------------------------------------------------------------------------
// Request mapping: OpenAI chat-completions body -> Anthropic messages body.

/// The request cannot be expressed for Anthropic; another provider may take it.
fn unsupported(what: &str) -> ProviderError {
    ProviderError::new(
        ErrorClass::Configuration,
        format!("Anthropic cannot take {what}"),
    )
}

/// The request is malformed whichever provider gets it.
fn malformed(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorClass::Content, message)
}

/// A turn's content: a plain string until it needs blocks.
#[derive(Debug)]
enum Content {
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
struct Turn {
    role: &'static str,
    content: Content,
}

/// Appends a turn, merging it into the previous one of the same role:
/// Anthropic wants user and assistant turns to alternate.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, content: Content) {
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

fn text_block(text: impl Into<String>) -> Value {
    json!({ "type": "text", "text": text.into() })
}

fn build_body(
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
fn max_tokens(request: &ChatRequest) -> u64 {
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
fn plain_text(content: &Value) -> Result<String, ProviderError> {
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

fn user_content(content: &Value) -> Result<Content, ProviderError> {
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
fn image_block(part: &Value) -> Result<Value, ProviderError> {
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
fn assistant_content(message: &Value) -> Result<Content, ProviderError> {
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

fn tool_use(call: &Value) -> Result<Value, ProviderError> {
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
fn tool_result(message: &Value) -> Result<Value, ProviderError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("a tool message has no tool_call_id"))?;
    let content = plain_text(message.get("content").unwrap_or(&Value::Null))?;
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": content }))
}

fn tool(tool: &Value) -> Result<Value, ProviderError> {
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
fn tool_choice(source: &Map<String, Value>) -> Result<Option<Value>, ProviderError> {
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

// ---------------------------------------------------------------------------
// Transport and errors.

fn no_response_within(timeout: Duration) -> ProviderError {
    ProviderError::new(
        ErrorClass::Timeout,
        format!("no response within {}s", timeout.as_secs()),
    )
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::new(ErrorClass::Timeout, "provider timed out")
    } else if e.is_connect() {
        ProviderError::new(ErrorClass::ProviderDown, "cannot connect to provider")
    } else if e.is_decode() || e.is_body() {
        ProviderError::new(
            ErrorClass::Protocol,
            "provider response was cut off or unreadable",
        )
    } else {
        ProviderError::new(ErrorClass::ProviderDown, "request to provider failed")
    }
}

async fn read_limited(response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(transport_error)?;
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ProviderError::new(
                ErrorClass::Protocol,
                "provider response too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `{"type":"error","error":{"type":..,"message":..}}`, as a body or a stream event.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

fn status_error(status: u16, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.error.message)
        .unwrap_or_else(|| format!("provider answered HTTP {status}"));
    let class = match status {
        // Anthropic's "overloaded": busy, not broken.
        529 => ErrorClass::Transient,
        // A 400 saying the prompt is too long stays Content: no retry makes
        // the same prompt shorter.
        _ => ErrorClass::from_status(status),
    };
    ProviderError {
        http_status: status,
        ..ProviderError::new(class, truncate(message))
    }
}

/// The class of an error Anthropic reports inside a stream, by its type.
fn error_type_class(kind: &str) -> ErrorClass {
    match kind {
        "rate_limit_error" => ErrorClass::RateLimited,
        "authentication_error" | "permission_error" | "billing_error" => ErrorClass::Auth,
        "invalid_request_error" | "not_found_error" | "request_too_large" => ErrorClass::Content,
        "timeout_error" => ErrorClass::Timeout,
        // overloaded_error, api_error and anything new: worth another try.
        _ => ErrorClass::Transient,
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE {
        let mut cut = MAX_ERROR_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

// ---------------------------------------------------------------------------
// Responses.

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// The whole prompt: Anthropic counts cache writes and reads apart from
    /// `input_tokens`, OpenAI's `prompt_tokens` includes them.
    fn input(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum())
    }
}

#[derive(Deserialize)]
struct WireMessage {
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    /// tool_use, thinking and anything newer: not carried by [`Completion`].
    #[serde(other)]
    Other,
}

/// Anthropic's stop reason in OpenAI's words.
fn finish_reason(stop_reason: Option<&str>) -> String {
    match stop_reason {
        None | Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some(other) => other,
    }
    .to_owned()
}

fn parse_message(body: &[u8]) -> Result<Completion, ProviderError> {
    let wire: WireMessage = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorClass::Protocol,
            format!("provider returned invalid JSON: {e}"),
        )
    })?;
    let content = wire
        .content
        .into_iter()
        .filter_map(|block| match block {
            WireBlock::Text { text } => Some(text),
            WireBlock::Other => None,
        })
        .collect();
    Ok(Completion {
        content,
        finish_reason: finish_reason(wire.stop_reason.as_deref()),
        usage: wire.usage.map(|u| Usage {
            input_tokens: u.input().unwrap_or(0),
            output_tokens: u.output_tokens.unwrap_or(0),
        }),
    })
}

// ---------------------------------------------------------------------------
// Streams.

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: WireStartMessage,
    },
    ContentBlockDelta {
        delta: WireDelta,
    },
    MessageDelta {
        delta: WireMessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        error: ErrorDetail,
    },
    /// ping, content_block_start, content_block_stop and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        text: String,
    },
    /// Tool input JSON, thinking, signatures, citations.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct SseState {
    body: ByteStream,
    decoder: SseDecoder,
    ready: VecDeque<Result<StreamEvent, ProviderError>>,
    stop_reason: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    ended: bool,
    idle_timeout: Duration,
}

impl SseState {
    /// Takes one SSE data payload; returns false when the stream is over.
    fn take(&mut self, data: &str) -> bool {
        let event: WireEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                self.ready.push_back(Err(ProviderError::new(
                    ErrorClass::Protocol,
                    format!("provider sent an invalid stream event: {e}"),
                )));
                return false;
            }
        };
        match event {
            WireEvent::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    self.count(&usage);
                }
            }
            WireEvent::ContentBlockDelta {
                delta: WireDelta::TextDelta { text },
            } if !text.is_empty() => self.ready.push_back(Ok(StreamEvent::Delta(text))),
            WireEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(usage) = usage {
                    self.count(&usage);
                }
            }
            WireEvent::MessageStop => {
                let usage =
                    (self.input_tokens.is_some() || self.output_tokens.is_some()).then(|| Usage {
                        input_tokens: self.input_tokens.unwrap_or(0),
                        output_tokens: self.output_tokens.unwrap_or(0),
                    });
                self.ready.push_back(Ok(StreamEvent::Finish {
                    finish_reason: finish_reason(self.stop_reason.as_deref()),
                    usage,
                }));
                return false;
            }
            WireEvent::Error { error } => {
                let class = error_type_class(error.kind.as_deref().unwrap_or(""));
                let message = truncate(
                    error
                        .message
                        .unwrap_or_else(|| "provider reported an error mid-stream".into()),
                );
                self.ready
                    .push_back(Err(ProviderError::new(class, message)));
                return false;
            }
            WireEvent::ContentBlockDelta { .. } | WireEvent::Other => {}
        }
        true
    }

    /// Usage figures are running totals: later ones replace earlier ones.
    fn count(&mut self, usage: &WireUsage) {
        if let Some(input) = usage.input() {
            self.input_tokens = Some(input);
        }
        if let Some(output) = usage.output_tokens {
            self.output_tokens = Some(output);
        }
    }
}

/// Pull-based, so dropping the stream drops the connection to the provider at once.
fn sse_events(
    body: ByteStream,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> {
    let state = SseState {
        body,
        decoder: SseDecoder::default(),
        ready: VecDeque::new(),
        stop_reason: None,
        input_tokens: None,
        output_tokens: None,
        ended: false,
        idle_timeout,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.ready.pop_front() {
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            let error = match tokio::time::timeout(st.idle_timeout, st.body.next()).await {
                Err(_) => ProviderError::new(
                    ErrorClass::Timeout,
                    format!("provider sent nothing for {}s", st.idle_timeout.as_secs()),
                ),
                Ok(None) => ProviderError::new(
                    ErrorClass::Protocol,
                    "provider stream ended before message_stop",
                ),
                Ok(Some(Err(_))) => {
                    ProviderError::new(ErrorClass::Transient, "provider stream was interrupted")
                }
                Ok(Some(Ok(bytes))) => match st.decoder.push(&bytes) {
                    Err(e) => ProviderError::new(ErrorClass::Protocol, e.to_string()),
                    Ok(events) => {
                        for event in events {
                            if !st.take(&event.data) {
                                st.ended = true;
                                break;
                            }
                        }
                        continue;
                    }
                },
            };
            st.ended = true;
            return Some((Err(error), st));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use switchyard_testkit::{Behavior, MockAnthropic};

    use super::*;
    use crate::request::{test_request, test_workload};

    /// A request carrying `body`, with no limit parsed out of it and a
    /// workload that plans for 300 output tokens.
    fn chat(body: Value) -> ChatRequest {
        let mut request = test_request("claude", None, test_workload(10, 300));
        request.max_tokens = None;
        request.body = body.as_object().cloned().unwrap();
        request
    }

    fn body_of(body: Value, stream: bool) -> Value {
        Value::Object(build_body(&chat(body), "claude-test", stream).unwrap())
    }

    #[test]
    fn request_mapping_matches_the_golden_body() {
        let openai = json!({
            "model": "auto",
            "messages": [
                { "role": "system", "content": "You are terse." },
                { "role": "developer", "content": [{ "type": "text", "text": "Answer in French." }] },
                { "role": "user", "content": "What is in this picture?" },
                { "role": "user", "content": [
                    { "type": "text", "text": "And this one?" },
                    { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                    { "type": "image_url", "image_url": { "url": "https://example.com/cat.jpg", "detail": "high" } },
                ] },
                { "role": "assistant", "content": null, "tool_calls": [
                    { "id": "call_1", "type": "function",
                      "function": { "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" } },
                    { "id": "call_2", "type": "function", "function": { "name": "now", "arguments": "" } },
                ] },
                { "role": "tool", "tool_call_id": "call_1", "content": "18C and sunny" },
                { "role": "tool", "tool_call_id": "call_2", "content": [{ "type": "text", "text": "no clock" }] },
                { "role": "user", "content": "Thanks. Summarise." },
                { "role": "assistant", "content": "Il fait" },
            ],
            "tools": [
                { "type": "function", "function": {
                    "name": "get_weather",
                    "description": "Weather by city",
                    "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] },
                } },
                { "type": "function", "function": { "name": "now" } },
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "\n\nUser:",
            "max_tokens": 200,
            "user": "u-42",
            "stream_options": { "include_usage": true },
        });
        let expected = json!({
            "model": "claude-test",
            "max_tokens": 200,
            "system": "You are terse.\n\nAnswer in French.",
            "messages": [
                { "role": "user", "content": [
                    { "type": "text", "text": "What is in this picture?" },
                    { "type": "text", "text": "And this one?" },
                    { "type": "image", "source": { "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" } },
                    { "type": "image", "source": { "type": "url", "url": "https://example.com/cat.jpg" } },
                ] },
                { "role": "assistant", "content": [
                    { "type": "tool_use", "id": "call_1", "name": "get_weather", "input": { "city": "Paris" } },
                    { "type": "tool_use", "id": "call_2", "name": "now", "input": {} },
                ] },
                { "role": "user", "content": [
                    { "type": "tool_result", "tool_use_id": "call_1", "content": "18C and sunny" },
                    { "type": "tool_result", "tool_use_id": "call_2", "content": "no clock" },
                    { "type": "text", "text": "Thanks. Summarise." },
                ] },
                { "role": "assistant", "content": "Il fait" },
            ],
            "tools": [
                { "name": "get_weather", "description": "Weather by city",
                  "input_schema": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } },
                { "name": "now", "input_schema": { "type": "object", "properties": {} } },
            ],
            "tool_choice": { "type": "any", "disable_parallel_tool_use": true },
            "temperature": 0.3,
            "top_p": 0.9,
            "stop_sequences": ["\n\nUser:"],
            "metadata": { "user_id": "u-42" },
            "stream": true,
        });
        assert_eq!(body_of(openai, true), expected);
    }

    #[test]
    fn plain_conversations_keep_string_content() {
        let body = body_of(
            json!({ "messages": [
                { "role": "user", "content": "hi" },
                { "role": "assistant", "content": "hello" },
                { "role": "user", "content": "bye" },
            ], "stop": ["a", "b"], "temperature": 1.7 }),
            false,
        );
        assert_eq!(
            body,
            json!({
                "model": "claude-test",
                "max_tokens": 300,
                "messages": [
                    { "role": "user", "content": "hi" },
                    { "role": "assistant", "content": "hello" },
                    { "role": "user", "content": "bye" },
                ],
                "stop_sequences": ["a", "b"],
                "temperature": 1.0,
                "stream": false,
            })
        );
    }

    #[test]
    fn max_tokens_comes_from_the_request_or_else_the_workload() {
        let messages = json!([{ "role": "user", "content": "hi" }]);
        let limit = |body: Value, parsed: Option<u32>| {
            let mut request = chat(body);
            request.max_tokens = parsed;
            build_body(&request, "m", false).unwrap()["max_tokens"].clone()
        };
        assert_eq!(limit(json!({ "messages": messages }), None), 300);
        assert_eq!(limit(json!({ "messages": messages }), Some(42)), 42);
        assert_eq!(
            limit(
                json!({ "messages": messages, "max_tokens": 7, "max_completion_tokens": 9 }),
                None
            ),
            9
        );
        assert_eq!(
            limit(json!({ "messages": messages, "max_tokens": 7 }), None),
            7
        );
    }

    #[test]
    fn tool_choices_map_to_anthropic_ones() {
        let choice = |extra: Value| {
            let mut body = json!({
                "messages": [{ "role": "user", "content": "hi" }],
                "tools": [{ "type": "function", "function": { "name": "f" } }],
            });
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body_of(body, false).get("tool_choice").cloned()
        };
        assert_eq!(choice(json!({})), None);
        assert_eq!(
            choice(json!({ "tool_choice": "auto" })),
            Some(json!({ "type": "auto" }))
        );
        assert_eq!(
            choice(json!({ "tool_choice": "none" })),
            Some(json!({ "type": "none" }))
        );
        assert_eq!(
            choice(json!({ "tool_choice": { "type": "function", "function": { "name": "f" } } })),
            Some(json!({ "type": "tool", "name": "f" }))
        );
        assert_eq!(
            choice(json!({ "parallel_tool_calls": false })),
            Some(json!({ "type": "auto", "disable_parallel_tool_use": true }))
        );
        // Without tools there is nothing to choose from.
        let body = body_of(
            json!({ "messages": [{ "role": "user", "content": "hi" }], "tool_choice": "auto" }),
            false,
        );
        assert!(body.get("tool_choice").is_none() && body.get("tools").is_none());
    }

    #[test]
    fn inputs_anthropic_cannot_take_are_refused() {
        let class = |message: Value| {
            build_body(&chat(json!({ "messages": [message] })), "m", false)
                .unwrap_err()
                .class
        };
        // Another provider may take these.
        assert_eq!(
            class(
                json!({ "role": "user", "content": [{ "type": "input_audio", "input_audio": {} }] })
            ),
            ErrorClass::Configuration
        );
        assert_eq!(
            class(json!({ "role": "function", "name": "f", "content": "x" })),
            ErrorClass::Configuration
        );
        // No provider can use these.
        assert_eq!(
            class(json!({ "role": "assistant", "tool_calls": [
                { "id": "c", "type": "function", "function": { "name": "f", "arguments": "{oops" } }
            ] })),
            ErrorClass::Content
        );
        assert_eq!(
            class(json!({ "role": "tool", "content": "x" })),
            ErrorClass::Content
        );
        assert_eq!(
            class(json!({ "role": "user", "content": [
                { "type": "image_url", "image_url": { "url": "data:image/png,notbase64" } }
            ] })),
            ErrorClass::Content
        );
        assert_eq!(
            class(json!({ "role": "user", "content": [
                { "type": "image_url", "image_url": { "url": "file:///etc/passwd" } }
            ] })),
            ErrorClass::Content
        );
    }

    #[test]
    fn messages_are_parsed_and_stop_reasons_mapped() {
        let completion = parse_message(
            br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude",
                "content":[{"type":"thinking","thinking":"hmm","signature":"s"},
                           {"type":"text","text":"Hello "},
                           {"type":"tool_use","id":"toolu_1","name":"f","input":{}},
                           {"type":"text","text":"world"}],
                "stop_reason":"tool_use","stop_sequence":null,
                "usage":{"input_tokens":10,"cache_creation_input_tokens":null,
                         "cache_read_input_tokens":5,"output_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(completion.content, "Hello world");
        assert_eq!(completion.finish_reason, "tool_calls");
        assert_eq!(
            completion.usage,
            Some(Usage {
                input_tokens: 15,
                output_tokens: 7
            })
        );
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            let body = format!(r#"{{"content":[],"stop_reason":"{stop}"}}"#);
            let completion = parse_message(body.as_bytes()).unwrap();
            assert_eq!(completion.finish_reason, finish, "{stop}");
            assert_eq!(completion.usage, None);
        }
        assert_eq!(
            parse_message(b"{not json").unwrap_err().class,
            ErrorClass::Protocol
        );
        assert_eq!(
            parse_message(b"{}").unwrap_err().class,
            ErrorClass::Protocol
        );
    }

    #[test]
    fn error_bodies_keep_the_provider_message_and_class() {
        let e = status_error(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            (e.class, e.http_status, e.message.as_str()),
            (ErrorClass::Transient, 529, "Overloaded")
        );
        let e = status_error(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(e.class, ErrorClass::RateLimited);
        let e = status_error(
            401,
            br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        );
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::Auth, "invalid x-api-key")
        );
        let e = status_error(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        );
        assert_eq!(
            (e.class, e.message.as_str()),
            (
                ErrorClass::Content,
                "prompt is too long: 210000 tokens > 200000 maximum"
            )
        );
        let long = json!({ "type": "error", "error": { "type": "api_error", "message": "é".repeat(400) } });
        let e = status_error(500, long.to_string().as_bytes());
        assert_eq!(e.message.chars().count(), MAX_ERROR_MESSAGE / 2 + 1);
        assert!(e.message.ends_with('…'));
        let e = status_error(502, b"<html>bad gateway</html>");
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::Transient, "provider answered HTTP 502")
        );
    }

    /// Events with errors reduced to something comparable.
    type Outcome = Result<StreamEvent, (ErrorClass, String)>;

    async fn events_of(pieces: Vec<Vec<u8>>) -> Vec<Outcome> {
        let body: ByteStream = Box::pin(futures::stream::iter(
            pieces.into_iter().map(|p| Ok(Bytes::from(p))),
        ));
        sse_events(body, Duration::from_secs(5))
            .map(|r| r.map_err(|e| (e.class, e.message)))
            .collect()
            .await
    }

    async fn events_whole(raw: &[u8]) -> Vec<Outcome> {
        events_of(vec![raw.to_vec()]).await
    }

    /// A stream as Anthropic sends it: a text block, then a tool_use block
    /// whose input deltas are not text.
    const RECORDED: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
        "event: ping\n",
        r#"data: {"type": "ping"}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bonjour"}}"#,
        "\n\n",
        "event: content_block_delta\r\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", ça va ?"}}"#,
        "\r\n\r\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":1}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":12}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );

    #[tokio::test]
    async fn recorded_stream_parses_the_same_split_anywhere() {
        let raw = RECORDED.as_bytes();
        let whole = events_whole(raw).await;
        assert_eq!(
            whole,
            vec![
                Ok(StreamEvent::Delta("Bonjour".into())),
                Ok(StreamEvent::Delta(", ça va ?".into())),
                Ok(StreamEvent::Finish {
                    finish_reason: "length".into(),
                    usage: Some(Usage {
                        input_tokens: 25,
                        output_tokens: 12
                    }),
                }),
            ]
        );
        for cut in 1..raw.len() {
            let (a, b) = raw.split_at(cut);
            assert_eq!(
                events_of(vec![a.to_vec(), b.to_vec()]).await,
                whole,
                "cut at {cut}"
            );
        }
        let bytes: Vec<Vec<u8>> = raw.iter().map(|b| vec![*b]).collect();
        assert_eq!(events_of(bytes).await, whole, "one byte at a time");
    }

    #[tokio::test]
    async fn garbage_and_dropped_streams_are_protocol_errors() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
        let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";

        let events = events_whole(
            format!("{start}event: content_block_delta\ndata: {{garbage\n\n").as_bytes(),
        )
        .await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err().0, ErrorClass::Protocol);

        // Well-formed JSON of the wrong shape is no better.
        let events = events_whole(b"data: {\"type\":\"content_block_delta\"}\n\n").await;
        assert_eq!(events[0].as_ref().unwrap_err().0, ErrorClass::Protocol);

        let events = events_whole(format!("{start}{delta}").as_bytes()).await;
        assert_eq!(
            events,
            vec![
                Ok(StreamEvent::Delta("Hi".into())),
                Err((
                    ErrorClass::Protocol,
                    "provider stream ended before message_stop".into()
                )),
            ]
        );
    }

    #[tokio::test]
    async fn error_events_end_the_stream_with_their_class() {
        for (kind, class) in [
            ("overloaded_error", ErrorClass::Transient),
            ("api_error", ErrorClass::Transient),
            ("rate_limit_error", ErrorClass::RateLimited),
            ("authentication_error", ErrorClass::Auth),
            ("invalid_request_error", ErrorClass::Content),
        ] {
            let raw = format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Hi\"}}}}\n\n\
                 event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"bad {kind}\"}}}}\n\n\
                 event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
            );
            assert_eq!(
                events_whole(raw.as_bytes()).await,
                vec![
                    Ok(StreamEvent::Delta("Hi".into())),
                    Err((class, format!("bad {kind}"))),
                ],
                "{kind}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out() {
        let body: ByteStream = Box::pin(futures::stream::pending());
        let events: Vec<_> = sse_events(body, Duration::from_secs(3)).collect().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err().class, ErrorClass::Timeout);
    }

    // End to end, over real HTTP against the test kit's mock.

    fn client() -> reqwest::Client {
        // reqwest is built without a TLS provider and refuses to build a
        // client until one is installed, even for plain http://.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn endpoint(mock: &MockAnthropic) -> AnthropicEndpoint {
        AnthropicEndpoint::new(
            &format!("{}/", mock.base_url()),
            Some(SecretString::from("sk-ant-test".to_owned())),
            BTreeMap::from([("anthropic-beta".to_owned(), "test-beta".to_owned())]),
        )
    }

    fn hello() -> ChatRequest {
        chat(json!({ "messages": [
            { "role": "system", "content": "be brief" },
            { "role": "user", "content": "say hello to me" },
        ] }))
    }

    const SECS: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn complete_against_the_mock() {
        let mock = MockAnthropic::start().await.unwrap();
        let completion = endpoint(&mock)
            .complete(&client(), &hello(), "claude-test", SECS)
            .await
            .unwrap();
        assert_eq!(completion.content, Behavior::DEFAULT_TEXT);
        assert_eq!(completion.finish_reason, "stop");
        assert_eq!(
            completion.usage,
            Some(Usage {
                input_tokens: 6,
                output_tokens: 5
            })
        );

        let received = &mock.requests()[0];
        assert_eq!(received.header("x-api-key"), Some("sk-ant-test"));
        assert_eq!(received.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(received.header("anthropic-beta"), Some("test-beta"));
        assert_eq!(received.header("content-type"), Some("application/json"));
        assert_eq!(received.authorization, None);
        assert_eq!(
            received.body,
            json!({
                "model": "claude-test",
                "max_tokens": 300,
                "system": "be brief",
                "messages": [{ "role": "user", "content": "say hello to me" }],
                "stream": false,
            })
        );
    }

    #[tokio::test]
    async fn stream_against_the_mock() {
        let mock = MockAnthropic::start().await.unwrap();
        mock.push(Behavior::Reply {
            text: "one two three".into(),
        });
        let events: Vec<_> = endpoint(&mock)
            .stream(&client(), &hello(), "claude-test", SECS)
            .await
            .unwrap()
            .map(|r| r.map_err(|e| (e.class, e.message)))
            .collect()
            .await;
        assert_eq!(
            events,
            vec![
                Ok(StreamEvent::Delta("one ".into())),
                Ok(StreamEvent::Delta("two ".into())),
                Ok(StreamEvent::Delta("three".into())),
                Ok(StreamEvent::Finish {
                    finish_reason: "stop".into(),
                    usage: Some(Usage {
                        input_tokens: 6,
                        output_tokens: 3
                    }),
                }),
            ]
        );
        assert_eq!(mock.requests()[0].body["stream"], true);
        assert_eq!(mock.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn overloaded_is_transient_and_a_bad_key_is_auth() {
        let mock = MockAnthropic::start().await.unwrap();
        let status = |status: u16, message: &str| Behavior::Status {
            status,
            message: message.into(),
            retry_after_secs: None,
        };
        mock.push(Behavior::Status {
            status: 529,
            message: "Overloaded".into(),
            retry_after_secs: Some(2),
        });
        mock.push(status(529, "Overloaded"));
        mock.push(status(401, "invalid x-api-key"));
        mock.push(status(401, "invalid x-api-key"));
        let (endpoint, client) = (endpoint(&mock), client());

        let e = endpoint
            .complete(&client, &hello(), "m", SECS)
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.http_status, e.message.as_str()),
            (ErrorClass::Transient, 529, "Overloaded")
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        let Err(e) = endpoint.stream(&client, &hello(), "m", SECS).await else {
            panic!("a 529 stream is refused");
        };
        assert_eq!((e.class, e.http_status), (ErrorClass::Transient, 529));
        assert_eq!(e.retry_after, None);

        let e = endpoint
            .complete(&client, &hello(), "m", SECS)
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.http_status, e.message.as_str()),
            (ErrorClass::Auth, 401, "invalid x-api-key")
        );
        let Err(e) = endpoint.stream(&client, &hello(), "m", SECS).await else {
            panic!("a 401 stream is refused");
        };
        assert_eq!((e.class, e.http_status), (ErrorClass::Auth, 401));
    }

    #[tokio::test]
    async fn mock_faults_surface_as_errors() {
        let mock = MockAnthropic::start().await.unwrap();
        let (endpoint, client) = (endpoint(&mock), client());

        mock.push(Behavior::Garbage);
        let e = endpoint
            .complete(&client, &hello(), "m", SECS)
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Protocol);

        mock.push(Behavior::Garbage);
        let events: Vec<_> = endpoint
            .stream(&client, &hello(), "m", SECS)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err().class, ErrorClass::Protocol);

        mock.push(Behavior::DropStreamAfter { chunks: 2 });
        let events: Vec<_> = endpoint
            .stream(&client, &hello(), "m", SECS)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(
            events[0].as_ref().unwrap(),
            &StreamEvent::Delta("Hello ".into())
        );
        assert_eq!(
            events[1].as_ref().unwrap(),
            &StreamEvent::Delta("from ".into())
        );
        assert!(events[2].is_err(), "a dropped stream does not finish");

        mock.push(Behavior::Delay {
            delay: Duration::from_secs(2),
            then: Box::new(Behavior::Ok),
        });
        let started = Instant::now();
        let e = endpoint
            .complete(&client, &hello(), "m", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn dropping_the_stream_closes_the_connection() {
        let mock = MockAnthropic::start().await.unwrap();
        mock.push(Behavior::Reply {
            text: vec!["word"; 400].join(" "),
        });
        let mut events = endpoint(&mock)
            .stream(&client(), &hello(), "m", SECS)
            .await
            .unwrap();
        assert!(matches!(
            events.next().await,
            Some(Ok(StreamEvent::Delta(_)))
        ));
        drop(events);
        let deadline = Instant::now() + Duration::from_secs(5);
        while mock.cancelled_streams() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(mock.cancelled_streams(), 1);
    }
}
