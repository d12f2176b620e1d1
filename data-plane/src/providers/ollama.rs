//! Ollama's native chat API (`POST /api/chat`). The client's OpenAI-shaped body
//! is translated: messages (text and base64 images), tools, sampling options,
//! JSON output; answers come back as one JSON object or as NDJSON lines.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::Stream;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::framed::{self, ByteStream, Dialect, Ready};
use super::http::{self, truncate};
use super::ndjson::NdjsonDecoder;
use super::{
    Completion, ErrorClass, EventStream, ProviderError, StreamEvent, ToolCall, ToolCallDelta,
    Usage, new_tool_call_id,
};
use crate::request::ChatRequest;

#[derive(Debug, Clone)]
pub struct OllamaEndpoint {
    url: String,
    api_key: Option<SecretString>,
    headers: HeaderMap,
}

impl OllamaEndpoint {
    /// `base_url` is the server root, e.g. `http://127.0.0.1:11434`. The key
    /// is optional: Ollama needs none, proxies in front of it may.
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        extra_headers: BTreeMap<String, String>,
    ) -> Self {
        let headers = http::extra_headers(extra_headers);
        Self {
            url: format!("{}/api/chat", base_url.trim_end_matches('/')),
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
        let body = chat_body(&request.body, model, stream)?;
        let mut builder = client
            .post(&self.url)
            .headers(self.headers.clone())
            .headers(http::trace_headers(request))
            .json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose_secret());
        }
        Ok(builder)
    }

    pub async fn complete(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<Completion, ProviderError> {
        let body = http::call(
            self.request(client, request, model, false)?,
            timeout,
            status_error,
        )
        .await?;
        parse_completion(&body)
    }

    pub async fn stream(
        &self,
        client: &reqwest::Client,
        request: &ChatRequest,
        model: &str,
        timeout: Duration,
    ) -> Result<EventStream, ProviderError> {
        let response = http::open(
            self.request(client, request, model, true)?,
            timeout,
            status_error,
        )
        .await?;
        Ok(Box::pin(ndjson_events(
            Box::pin(response.bytes_stream()),
            timeout,
        )))
    }
}

/// A request this provider cannot express; another target may still serve it.
fn unsupported(message: &str) -> ProviderError {
    ProviderError::new(ErrorClass::Configuration, message)
}

/// The `/api/chat` body for an OpenAI chat-completions body.
fn chat_body(
    openai: &Map<String, Value>,
    model: &str,
    stream: bool,
) -> Result<Map<String, Value>, ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    let messages = openai
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let messages = messages
        .iter()
        .map(chat_message)
        .collect::<Result<Vec<_>, _>>()?;
    body.insert("messages".into(), Value::Array(messages));

    let tool_choice_none = openai.get("tool_choice").and_then(Value::as_str) == Some("none");
    if let Some(tools) = openai.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
        && !tool_choice_none
    {
        // Ollama takes OpenAI's function tool shape as is.
        body.insert("tools".into(), Value::Array(tools.clone()));
    }

    let format = openai.get("response_format");
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        Some("json_object") => {
            body.insert("format".into(), Value::String("json".into()));
        }
        Some("json_schema") => {
            let schema = format
                .and_then(|f| f.pointer("/json_schema/schema"))
                .filter(|s| s.is_object())
                .ok_or_else(|| unsupported("response_format json_schema carries no schema"))?;
            body.insert("format".into(), schema.clone());
        }
        _ => {}
    }

    let options = chat_options(openai);
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    body.insert("stream".into(), Value::Bool(stream));
    Ok(body)
}

/// Sampling options: OpenAI's top-level knobs become Ollama's `options`.
fn chat_options(openai: &Map<String, Value>) -> Map<String, Value> {
    let mut options = Map::new();
    for name in ["temperature", "top_p", "seed"] {
        if let Some(value) = openai.get(name).filter(|v| v.is_number()) {
            options.insert(name.into(), value.clone());
        }
    }
    match openai.get("stop") {
        Some(Value::String(stop)) => {
            options.insert("stop".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            options.insert("stop".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|name| openai.get(*name).filter(|v| v.is_u64()));
    if let Some(max_tokens) = max_tokens {
        options.insert("num_predict".into(), max_tokens.clone());
    }
    options
}

/// One OpenAI message as an Ollama message: content flattened to text, images
/// moved to `images`, tool calls with their arguments as JSON objects.
fn chat_message(message: &Value) -> Result<Value, ProviderError> {
    let role = match message.get("role").and_then(Value::as_str) {
        Some("developer") => "system",
        Some(role) => role,
        None => return Err(unsupported("a message has no role")),
    };
    let mut out = Map::new();
    out.insert("role".into(), Value::String(role.to_owned()));
    let mut images = Vec::new();
    let content = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(part_str(part, "text")?),
                    Some("refusal") => texts.push(part_str(part, "refusal")?),
                    Some("image_url") => {
                        let url = part
                            .pointer("/image_url/url")
                            .and_then(Value::as_str)
                            .ok_or_else(|| unsupported("an image part has no URL"))?;
                        images.push(Value::String(data_url_base64(url)?.to_owned()));
                    }
                    _ => {
                        return Err(unsupported(
                            "this provider accepts only text and image message parts",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
        Some(_) => return Err(unsupported("a message content is neither text nor parts")),
    };
    out.insert("content".into(), Value::String(content));
    if !images.is_empty() {
        out.insert("images".into(), Value::Array(images));
    }
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        let calls = calls.iter().map(tool_call).collect::<Result<Vec<_>, _>>()?;
        if !calls.is_empty() {
            out.insert("tool_calls".into(), Value::Array(calls));
        }
    }
    if role == "tool"
        && let Some(name) = message.get("name").and_then(Value::as_str)
    {
        out.insert("tool_name".into(), Value::String(name.to_owned()));
    }
    Ok(Value::Object(out))
}

fn part_str(part: &Value, field: &str) -> Result<String, ProviderError> {
    part.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| unsupported("a text message part has no text"))
}

/// The base64 payload of a `data:image/...;base64,` URL; Ollama cannot fetch URLs.
fn data_url_base64(url: &str) -> Result<&str, ProviderError> {
    url.strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .filter(|(meta, _)| meta.ends_with(";base64"))
        .map(|(_, data)| data)
        .ok_or_else(|| unsupported("this provider accepts images only as base64 data URLs"))
}

/// OpenAI tool call (arguments as a JSON string) -> Ollama (arguments as an object).
fn tool_call(call: &Value) -> Result<Value, ProviderError> {
    let function = call
        .get("function")
        .ok_or_else(|| unsupported("a tool call has no function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| unsupported("a tool call has no function name"))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::String(raw)) if raw.trim().is_empty() => Value::Object(Map::new()),
        Some(Value::String(raw)) => serde_json::from_str::<Value>(raw)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| unsupported("tool call arguments are not a JSON object"))?,
        Some(object @ Value::Object(_)) => object.clone(),
        Some(_) => return Err(unsupported("tool call arguments are not a JSON object")),
    };
    Ok(json!({ "function": { "name": name, "arguments": arguments } }))
}

/// The message of an error body: Ollama's `{"error":"..."}`, or the OpenAI
/// shape `{"error":{"message":"..."}}` that proxies in front of it send.
fn error_message(value: &Value) -> Option<String> {
    match value.get("error")? {
        Value::String(message) => Some(message.clone()),
        detail => detail
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

fn status_error(status: u16, body: &[u8]) -> ProviderError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or_else(|| format!("provider answered HTTP {status}"));
    ProviderError::from_status(status, ErrorClass::from_status(status), truncate(message))
}

/// One `/api/chat` answer: the whole reply, or one line of a stream.
#[derive(Deserialize)]
struct WireChat {
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

/// Ollama sends each call whole, arguments as a JSON object; ids only from
/// newer servers.
#[derive(Deserialize)]
struct WireToolCall {
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

impl WireToolCall {
    fn into_call(self) -> ToolCall {
        let arguments = match self.function.arguments {
            Value::Null => "{}".to_owned(),
            Value::String(text) => text,
            object => object.to_string(),
        };
        ToolCall {
            id: self
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(new_tool_call_id),
            name: self.function.name,
            arguments,
        }
    }
}

impl WireChat {
    fn usage(&self) -> Option<Usage> {
        if self.prompt_eval_count.is_none() && self.eval_count.is_none() {
            return None;
        }
        Some(Usage {
            input_tokens: self.prompt_eval_count.unwrap_or(0),
            output_tokens: self.eval_count.unwrap_or(0),
        })
    }

    /// Ollama says "stop" after tool calls too; OpenAI clients expect "tool_calls".
    fn finish_reason(&self, called_tools: bool) -> String {
        match self.done_reason.as_deref() {
            Some("length") => "length".into(),
            _ if called_tools => "tool_calls".into(),
            // "stop", and "load"/"unload" or none from older servers.
            _ => "stop".into(),
        }
    }

    /// The error a body or line reports, if any.
    fn error(&self) -> Option<ProviderError> {
        let message = match self.error.as_ref()? {
            Value::String(message) => message.clone(),
            detail => detail
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| "provider reported an error".to_owned(), str::to_owned),
        };
        Some(ProviderError::new(ErrorClass::Transient, truncate(message)))
    }
}

fn parse_completion(body: &[u8]) -> Result<Completion, ProviderError> {
    let wire: WireChat = serde_json::from_slice(body).map_err(|e| {
        ProviderError::new(
            ErrorClass::Protocol,
            format!("provider returned invalid JSON: {e}"),
        )
    })?;
    if let Some(error) = wire.error() {
        return Err(error);
    }
    let usage = wire.usage();
    let called_tools = wire
        .message
        .as_ref()
        .is_some_and(|m| !m.tool_calls.is_empty());
    let finish_reason = wire.finish_reason(called_tools);
    let message = wire
        .message
        .ok_or_else(|| ProviderError::new(ErrorClass::Protocol, "provider returned no message"))?;
    Ok(Completion {
        content: message.content,
        tool_calls: message
            .tool_calls
            .into_iter()
            .map(WireToolCall::into_call)
            .collect(),
        finish_reason,
        usage,
    })
}

/// Ollama's NDJSON lines: each complete in itself; tool calls are numbered
/// across lines as they come.
#[derive(Default)]
struct Lines {
    tool_calls: u32,
}

impl Dialect for Lines {
    const UNFINISHED: &'static str = "provider stream ended before done";

    fn take(&mut self, line: &str, ready: &mut Ready) -> bool {
        let mut chunk: WireChat = match serde_json::from_str(line) {
            Ok(chunk) => chunk,
            Err(e) => {
                let error = ProviderError::new(
                    ErrorClass::Protocol,
                    format!("provider sent an invalid stream line: {e}"),
                );
                ready.push_back(Err(error));
                return false;
            }
        };
        if let Some(error) = chunk.error() {
            ready.push_back(Err(error));
            return false;
        }
        if let Some(message) = chunk.message.take() {
            if !message.content.is_empty() {
                ready.push_back(Ok(StreamEvent::Delta(message.content)));
            }
            for call in message.tool_calls {
                let call = call.into_call();
                ready.push_back(Ok(StreamEvent::ToolCall(ToolCallDelta {
                    index: self.tool_calls,
                    id: Some(call.id),
                    name: Some(call.name),
                    arguments: call.arguments,
                })));
                self.tool_calls = self.tool_calls.saturating_add(1);
            }
        }
        if chunk.done {
            ready.push_back(Ok(StreamEvent::Finish {
                finish_reason: chunk.finish_reason(self.tool_calls > 0),
                usage: chunk.usage(),
            }));
            return false;
        }
        true
    }
}

pub(super) fn ndjson_events(
    body: ByteStream,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, ProviderError>> {
    framed::events(
        body,
        idle_timeout,
        NdjsonDecoder::default(),
        Lines::default(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use futures::StreamExt;

    use switchyard_testkit::{Behavior, MockOllama};

    use super::*;
    use crate::request::{test_request, test_workload};

    fn chat_request(body: Value) -> ChatRequest {
        let mut request = test_request("auto", None, test_workload(10, 10));
        request.body = match body {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        request
    }

    #[test]
    fn openai_bodies_map_to_ollama_chat() {
        let openai = json!({
            "model": "ignored",
            "messages": [
                { "role": "developer", "content": "be brief" },
                { "role": "user", "content": [
                    { "type": "text", "text": "what is" },
                    { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
                    { "type": "text", "text": "in this picture?" },
                ]},
                { "role": "assistant", "content": null, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": { "name": "lookup", "arguments": "{\"q\":\"cat\"}" },
                }]},
                { "role": "tool", "tool_call_id": "call_1", "name": "lookup", "content": "a cat" },
            ],
            "tools": [{ "type": "function", "function": {
                "name": "lookup", "description": "looks up",
                "parameters": { "type": "object", "properties": { "q": { "type": "string" } } },
            }}],
            "temperature": 0.2,
            "top_p": 0.9,
            "seed": 7,
            "stop": "END",
            "max_tokens": 100,
            "max_completion_tokens": 50,
            "response_format": { "type": "json_object" },
            "stream_options": { "include_usage": true },
            "user": "someone",
        });
        let body = chat_body(&chat_request(openai).body, "llama3.2", false).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({
                "model": "llama3.2",
                "messages": [
                    { "role": "system", "content": "be brief" },
                    { "role": "user", "content": "what is\nin this picture?", "images": ["iVBORw0KGgo="] },
                    { "role": "assistant", "content": "", "tool_calls": [
                        { "function": { "name": "lookup", "arguments": { "q": "cat" } } },
                    ]},
                    { "role": "tool", "content": "a cat", "tool_name": "lookup" },
                ],
                "tools": [{ "type": "function", "function": {
                    "name": "lookup", "description": "looks up",
                    "parameters": { "type": "object", "properties": { "q": { "type": "string" } } },
                }}],
                "format": "json",
                "options": {
                    "temperature": 0.2, "top_p": 0.9, "seed": 7,
                    "stop": ["END"], "num_predict": 50,
                },
                "stream": false,
            })
        );
    }

    #[test]
    fn schemas_stops_and_tool_choice_none_map_as_designed() {
        let schema = json!({ "type": "object", "properties": { "a": { "type": "integer" } } });
        let openai = json!({
            "messages": [{ "role": "user", "content": "hi" }],
            "tools": [{ "type": "function", "function": { "name": "f" } }],
            "tool_choice": "none",
            "stop": ["a", "b"],
            "max_tokens": 9,
            "response_format": { "type": "json_schema", "json_schema": { "name": "s", "schema": schema } },
        });
        let body = chat_body(&chat_request(openai).body, "m", true).unwrap();
        assert_eq!(
            Value::Object(body),
            json!({
                "model": "m",
                "messages": [{ "role": "user", "content": "hi" }],
                "format": schema,
                "options": { "stop": ["a", "b"], "num_predict": 9 },
                "stream": true,
            })
        );
    }

    #[test]
    fn what_ollama_cannot_express_is_refused_before_sending() {
        let remote_image = json!({ "messages": [{ "role": "user", "content": [
            { "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } },
        ]}]});
        let e = chat_body(&chat_request(remote_image).body, "m", false).unwrap_err();
        assert_eq!(e.class, ErrorClass::Configuration);
        assert!(e.class.try_next_target());
        let audio = json!({ "messages": [{ "role": "user", "content": [
            { "type": "input_audio", "input_audio": { "data": "", "format": "wav" } },
        ]}]});
        assert!(chat_body(&chat_request(audio).body, "m", false).is_err());
        let bad_args = json!({ "messages": [{ "role": "assistant", "tool_calls": [
            { "function": { "name": "f", "arguments": "[1]" } },
        ]}]});
        assert!(chat_body(&chat_request(bad_args).body, "m", false).is_err());
    }

    #[test]
    fn completions_and_error_bodies_are_parsed() {
        let completion = parse_completion(
            br#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"Hi there"},"done":true,"done_reason":"length","total_duration":5,"prompt_eval_count":26,"eval_count":2}"#,
        )
        .unwrap();
        assert_eq!(completion.content, "Hi there");
        assert_eq!(completion.finish_reason, "length");
        assert_eq!(
            completion.usage,
            Some(Usage {
                input_tokens: 26,
                output_tokens: 2
            })
        );
        let stop = parse_completion(
            br#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}"#,
        )
        .unwrap();
        assert_eq!((stop.finish_reason.as_str(), stop.usage), ("stop", None));
        assert_eq!(
            parse_completion(b"{not json").unwrap_err().class,
            ErrorClass::Protocol
        );
        assert_eq!(
            parse_completion(br#"{"done":true}"#).unwrap_err().class,
            ErrorClass::Protocol
        );

        let e = status_error(
            404,
            br#"{"error":"model \"nope\" not found, try pulling it first"}"#,
        );
        assert_eq!(
            (e.class, e.http_status, e.message.as_str()),
            (
                ErrorClass::Content,
                404,
                "model \"nope\" not found, try pulling it first"
            )
        );
        let e = status_error(429, br#"{"error":{"message":"slow down"}}"#);
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::RateLimited, "slow down")
        );
        let e = status_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.message, "provider answered HTTP 502");
        let long = format!("{{\"error\":\"{}\"}}", "é".repeat(400));
        let e = status_error(500, long.as_bytes());
        assert!(e.message.len() <= http::MAX_ERROR_MESSAGE + '…'.len_utf8());
        assert!(e.message.ends_with('…'));
    }

    /// A stream as Ollama sends it.
    const RECORDED: &[u8] = b"{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.1Z\",\"message\":{\"role\":\"assistant\",\"content\":\"The\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.2Z\",\"message\":{\"role\":\"assistant\",\"content\":\" sky \\u00e9\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.3Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.4Z\",\"message\":{\"role\":\"assistant\",\"content\":\" is blue.\"},\"done\":false}\n\
{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T00:00:00.5Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":4,\"eval_duration\":4535599000}\n";

    async fn events_of(pieces: Vec<Vec<u8>>) -> Vec<Result<StreamEvent, ProviderError>> {
        let body: ByteStream = Box::pin(futures::stream::iter(
            pieces.into_iter().map(|p| Ok(Bytes::from(p))),
        ));
        ndjson_events(body, Duration::from_secs(5)).collect().await
    }

    fn recorded_events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Delta("The".into()),
            StreamEvent::Delta(" sky é".into()),
            StreamEvent::Delta(" is blue.".into()),
            StreamEvent::Finish {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    input_tokens: 26,
                    output_tokens: 4,
                }),
            },
        ]
    }

    #[tokio::test]
    async fn a_recorded_stream_parses_the_same_split_at_every_byte() {
        let whole: Vec<StreamEvent> = events_of(vec![RECORDED.to_vec()])
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(whole, recorded_events());
        for cut in 0..=RECORDED.len() {
            let (a, b) = RECORDED.split_at(cut);
            let events: Vec<StreamEvent> = events_of(vec![a.to_vec(), b.to_vec()])
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(events, whole, "cut at {cut}");
        }
        let bytes = RECORDED.iter().map(|b| vec![*b]).collect();
        let events: Vec<StreamEvent> = events_of(bytes)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(events, whole);
        // A last line without its newline still finishes the stream.
        let unterminated = RECORDED[..RECORDED.len() - 1].to_vec();
        let events: Vec<StreamEvent> = events_of(vec![unterminated])
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(events, whole);
    }

    #[tokio::test]
    async fn garbage_dropped_and_error_streams_are_errors() {
        let first_line = RECORDED.split(|b| *b == b'\n').next().unwrap();
        let mut with_garbage = first_line.to_vec();
        with_garbage.extend_from_slice(b"\n{garbage\n");
        let events = events_of(vec![with_garbage]).await;
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0].as_ref().ok(),
            Some(&StreamEvent::Delta("The".into()))
        );
        assert_eq!(events[1].as_ref().unwrap_err().class, ErrorClass::Protocol);

        let mut dropped = first_line.to_vec();
        dropped.push(b'\n');
        let events = events_of(vec![dropped]).await;
        assert_eq!(events.len(), 2);
        let e = events[1].as_ref().unwrap_err();
        assert_eq!(e.class, ErrorClass::Protocol);
        assert_eq!(e.message, "provider stream ended before done");

        let mut errored = first_line.to_vec();
        errored.extend_from_slice(
            b"\n{\"error\":\"an error was encountered while running the model\"}\n",
        );
        errored.extend_from_slice(&RECORDED[first_line.len() + 1..]);
        let events = events_of(vec![errored]).await;
        assert_eq!(events.len(), 2);
        let e = events[1].as_ref().unwrap_err();
        assert_eq!(
            (e.class, e.message.as_str()),
            (
                ErrorClass::Transient,
                "an error was encountered while running the model"
            )
        );

        let events = events_of(vec![b"{\"message\":{\"content\":\"\xff\"}}\n".to_vec()]).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err().class, ErrorClass::Protocol);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_times_out() {
        let first_line = RECORDED.split(|b| *b == b'\n').next().unwrap();
        let mut head = first_line.to_vec();
        head.push(b'\n');
        let body: ByteStream = Box::pin(
            futures::stream::iter([Ok(Bytes::from(head))]).chain(futures::stream::pending()),
        );
        let events: Vec<_> = ndjson_events(body, Duration::from_secs(3)).collect().await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].as_ref().unwrap_err().class, ErrorClass::Timeout);
    }

    fn client() -> reqwest::Client {
        // reqwest is built without a TLS provider and refuses to build a client
        // until one is installed, even for plain http://.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn user_request(text: &str) -> ChatRequest {
        chat_request(json!({
            "model": "auto",
            "messages": [{ "role": "user", "content": text }],
            "temperature": 0.5,
            "max_tokens": 20,
        }))
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn completes_against_the_mock_over_http() {
        let mock = MockOllama::start().await.unwrap();
        mock.push(Behavior::Reply {
            text: "Hello there friend".into(),
        });
        let mut headers = BTreeMap::new();
        headers.insert("x-team".to_owned(), "search".to_owned());
        let endpoint = OllamaEndpoint::new(&format!("{}/", mock.base_url()), None, headers);
        let completion = endpoint
            .complete(&client(), &user_request("say hi"), "llama3.2", TIMEOUT)
            .await
            .unwrap();
        assert_eq!(completion.content, "Hello there friend");
        assert_eq!(completion.finish_reason, "stop");
        assert_eq!(
            completion.usage,
            Some(Usage {
                input_tokens: 2,
                output_tokens: 3
            })
        );
        let received = mock.requests();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].authorization, None);
        assert_eq!(received[0].header("x-team"), Some("search"));
        assert_eq!(
            received[0].body,
            json!({
                "model": "llama3.2",
                "messages": [{ "role": "user", "content": "say hi" }],
                "options": { "temperature": 0.5, "num_predict": 20 },
                "stream": false,
            })
        );
    }

    #[tokio::test]
    async fn streams_against_the_mock_over_http() {
        let mock = MockOllama::start().await.unwrap();
        let endpoint = OllamaEndpoint::new(
            &mock.base_url(),
            Some(SecretString::from("proxy-key")),
            BTreeMap::new(),
        );
        let events: Vec<StreamEvent> = endpoint
            .stream(&client(), &user_request("say hi"), "llama3.2", TIMEOUT)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Delta(t) => Some(t.as_str()),
                StreamEvent::ToolCall(_) | StreamEvent::Finish { .. } => None,
            })
            .collect();
        assert_eq!(text, Behavior::DEFAULT_TEXT);
        let words = Behavior::DEFAULT_TEXT.split_whitespace().count();
        assert_eq!(events.len(), words + 1);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                finish_reason: "stop".into(),
                usage: Some(Usage {
                    input_tokens: 2,
                    output_tokens: words as u64
                }),
            })
        );
        let received = mock.requests();
        assert_eq!(
            received[0].authorization.as_deref(),
            Some("Bearer proxy-key")
        );
        assert_eq!(received[0].body["stream"], json!(true));
        assert_eq!(mock.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn mock_faults_map_to_error_classes() {
        let mock = MockOllama::start().await.unwrap();
        let endpoint = OllamaEndpoint::new(&mock.base_url(), None, BTreeMap::new());
        let request = user_request("say hi");
        let client = client();

        mock.push(Behavior::Status {
            status: 503,
            message: "server busy".into(),
            retry_after_secs: Some(2),
        });
        let e = endpoint
            .complete(&client, &request, "llama3.2", TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.http_status, e.message.as_str()),
            (ErrorClass::Transient, 503, "server busy")
        );
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));

        mock.push(Behavior::Status {
            status: 404,
            message: "model \"nope\" not found, try pulling it first".into(),
            retry_after_secs: None,
        });
        let e = match endpoint.stream(&client, &request, "nope", TIMEOUT).await {
            Err(e) => e,
            Ok(_) => panic!("a 404 must fail the stream before any event"),
        };
        assert_eq!((e.class, e.http_status), (ErrorClass::Content, 404));
        assert!(e.message.contains("not found"));

        mock.push(Behavior::Garbage);
        let e = endpoint
            .complete(&client, &request, "llama3.2", TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Protocol);

        mock.push(Behavior::Garbage);
        let events: Vec<_> = endpoint
            .stream(&client, &request, "llama3.2", TIMEOUT)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(
            events.last().unwrap().as_ref().unwrap_err().class,
            ErrorClass::Protocol
        );

        mock.push(Behavior::DropStreamAfter { chunks: 2 });
        let events: Vec<_> = endpoint
            .stream(&client, &request, "llama3.2", TIMEOUT)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(events.len(), 3);
        assert!(
            events[..2]
                .iter()
                .all(|e| matches!(e, Ok(StreamEvent::Delta(_))))
        );
        assert!(events[2].is_err());

        mock.push(Behavior::Delay {
            delay: Duration::from_millis(500),
            then: Box::new(Behavior::Ok),
        });
        let e = endpoint
            .complete(&client, &request, "llama3.2", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Timeout);
    }

    #[tokio::test]
    async fn dropping_a_stream_closes_the_connection() {
        let mock = MockOllama::start().await.unwrap();
        mock.push(Behavior::Reply {
            text: "one two three four five six seven eight nine ten".into(),
        });
        let endpoint = OllamaEndpoint::new(&mock.base_url(), None, BTreeMap::new());
        let mut stream = endpoint
            .stream(&client(), &user_request("count"), "llama3.2", TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            StreamEvent::Delta("one ".into())
        );
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(5);
        while mock.cancelled_streams() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(mock.cancelled_streams(), 1);
    }
}
