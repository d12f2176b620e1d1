//! [`MockAnthropic`], a mock of the Anthropic Messages API over real HTTP. It
//! takes the same [`Behavior`]s as [`crate::MockProvider`] and answers
//! `POST /v1/messages` in Anthropic's JSON and SSE shapes, so adapters are
//! exercised against the wire format they will meet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behavior::{Behavior, argument_pieces};
use crate::mock_provider::{ReceivedRequest, Server, Shared};
use crate::openai::{content_words, stream_pieces, word_count};
use crate::routes::{
    json_object, json_response, settle, slow_first_byte, sse_response, status_response,
    with_content_type,
};
use crate::sse::{self, Frame};

/// The model reported when a request names none.
const MOCK_MODEL: &str = "mock-claude";

/// A mock Anthropic provider on `127.0.0.1`, serving in a background task
/// until dropped.
///
/// Like the real API it rejects, with a 400 `invalid_request_error` that
/// consumes no behaviour, a request without the `anthropic-version` header,
/// without a positive integer `max_tokens`, or without a `messages` array.
#[derive(Debug)]
pub struct MockAnthropic {
    server: Server,
}

impl MockAnthropic {
    /// Binds 127.0.0.1:0 and serves in a background tokio task until dropped.
    pub async fn start() -> anyhow::Result<MockAnthropic> {
        Ok(MockAnthropic {
            server: Server::start(router).await?,
        })
    }

    /// The base URL an Anthropic client uses, e.g. `http://127.0.0.1:41234/v1`;
    /// requests go to `{base_url}/messages`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Queues a behaviour: each messages request pops the next one; when the
    /// queue is empty the default (initially [`Behavior::Ok`]) is used.
    pub fn push(&self, b: Behavior) {
        self.server.push(b);
    }

    /// Replaces the behaviour used when the queue is empty.
    pub fn set_default(&self, b: Behavior) {
        self.server.set_default(b);
    }

    /// Every messages request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.server.requests()
    }

    /// Number of messages requests received so far.
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    /// Number of streaming responses whose client went away before the
    /// stream finished.
    pub fn cancelled_streams(&self) -> usize {
        self.server.cancelled_streams()
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(messages))
        .with_state(shared)
}

async fn messages(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(request) = json_object(&shared, &headers, &body) else {
        return error_response(400, "request body is not a JSON object", None);
    };
    if let Some(problem) = invalid(&request, &headers) {
        shared.record(ReceivedRequest::new(request, &headers));
        return error_response(400, problem, None);
    }
    let (seq, behavior) = shared.accept(ReceivedRequest::new(request.clone(), &headers));
    let responder = Responder {
        reply: Reply::for_request(&request, seq),
        stream: request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        cancelled: Arc::clone(&shared.cancelled),
    };
    responder.respond(behavior).await
}

/// What the real API would reject before looking at the conversation.
fn invalid(request: &Value, headers: &HeaderMap) -> Option<&'static str> {
    if !headers.contains_key("anthropic-version") {
        return Some("anthropic-version: header is required");
    }
    if request
        .get("max_tokens")
        .and_then(Value::as_u64)
        .is_none_or(|n| n == 0)
    {
        return Some("max_tokens: Field required");
    }
    if !request.get("messages").is_some_and(Value::is_array) {
        return Some("messages: Field required");
    }
    None
}

/// Everything needed to answer one messages request.
struct Responder {
    reply: Reply,
    stream: bool,
    cancelled: Arc<AtomicUsize>,
}

impl Responder {
    async fn respond(&self, behavior: Behavior) -> Response {
        match settle(behavior).await {
            Behavior::Reply { text } => self.text(&text),
            Behavior::Ok => self.text(Behavior::DEFAULT_TEXT),
            Behavior::SlowFirstToken { delay, then } => {
                slow_first_byte(Box::pin(self.respond(*then)).await, delay)
            }
            Behavior::ToolCall { name, arguments } => self.tool_call(&name, &arguments),
            Behavior::Status {
                status,
                message,
                retry_after_secs,
            } => error_response(status, &message, retry_after_secs),
            Behavior::Garbage => self.garbage(),
            Behavior::DropStreamAfter { chunks } => self.drop_after(chunks),
            Behavior::SlowStream { .. } => {
                error_response(500, "slow streams are OpenAI-compatible only", None)
            }
            // `settle` never returns a delay.
            Behavior::Delay { .. } => error_response(500, "unexpected delay", None),
        }
    }

    fn text(&self, text: &str) -> Response {
        if !self.stream {
            return json_response(StatusCode::OK, self.reply.message(text).to_string());
        }
        let mut frames = vec![
            self.reply.message_start(),
            content_block_start(),
            // The real API pings early in a stream; clients must skip it.
            named("ping", &json!({ "type": "ping" })),
        ];
        frames.extend(stream_pieces(text).iter().map(|p| text_delta(p)));
        frames.push(content_block_stop());
        frames.push(message_delta(word_count(text)));
        frames.push(named("message_stop", &json!({ "type": "message_stop" })));
        sse_response(frames, &self.cancelled)
    }

    /// As Claude does it: a short text block first, then the `tool_use`
    /// block (index 1), its input streamed as JSON pieces.
    fn tool_call(&self, name: &str, arguments: &str) -> Response {
        let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        if !self.stream {
            return json_response(StatusCode::OK, self.reply.tool_use(name, input).to_string());
        }
        let mut frames = vec![
            self.reply.message_start(),
            content_block_start(),
            text_delta(TOOL_PREAMBLE),
            content_block_stop(),
            named(
                "content_block_start",
                &json!({
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": { "type": "tool_use", "id": self.reply.tool_use_id(), "name": name, "input": {} },
                }),
            ),
        ];
        frames.extend(argument_pieces(arguments).iter().map(|piece| {
            named(
                "content_block_delta",
                &json!({
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": { "type": "input_json_delta", "partial_json": piece },
                }),
            )
        }));
        frames.push(named(
            "content_block_stop",
            &json!({ "type": "content_block_stop", "index": 1 }),
        ));
        frames.push(named(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": { "stop_reason": "tool_use", "stop_sequence": null },
                "usage": { "output_tokens": word_count(arguments) + 1 },
            }),
        ));
        frames.push(named("message_stop", &json!({ "type": "message_stop" })));
        sse_response(frames, &self.cancelled)
    }

    fn garbage(&self) -> Response {
        if !self.stream {
            return json_response(StatusCode::OK, "{not json".to_owned());
        }
        // The malformed event is the only defect: the stream ends cleanly.
        let frames = vec![
            self.reply.message_start(),
            Frame::Named {
                event: "content_block_delta",
                data: "{garbage".to_owned(),
            },
            named("message_stop", &json!({ "type": "message_stop" })),
        ];
        sse_response(frames, &self.cancelled)
    }

    fn drop_after(&self, chunks: usize) -> Response {
        if !self.stream {
            let full = Bytes::from(self.reply.message(Behavior::DEFAULT_TEXT).to_string());
            let half = full.slice(..full.len() / 2);
            return with_content_type(sse::truncated(half), "application/json");
        }
        let mut frames = vec![self.reply.message_start(), content_block_start()];
        let words = Behavior::DEFAULT_TEXT.split_whitespace().cycle();
        frames.extend(words.take(chunks).map(|w| text_delta(&format!("{w} "))));
        frames.push(Frame::Abort);
        sse_response(frames, &self.cancelled)
    }
}

/// The text Claude says before calling a tool.
pub const TOOL_PREAMBLE: &str = "Let me check.";

/// Per-request fields shared by every body of one reply.
#[derive(Debug, Clone)]
struct Reply {
    id: String,
    model: String,
    input_tokens: u64,
}

impl Reply {
    /// `seq` makes the message id unique per request.
    fn for_request(request: &Value, seq: usize) -> Self {
        Self {
            id: format!("msg_mock{seq:06}"),
            model: request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(MOCK_MODEL)
                .to_owned(),
            input_tokens: input_tokens(request),
        }
    }

    /// A non-streaming `message` carrying `text`.
    fn message(&self, text: &str) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": { "input_tokens": self.input_tokens, "output_tokens": word_count(text) },
        })
    }

    fn tool_use_id(&self) -> String {
        format!("toolu_{}", self.id.trim_start_matches("msg_"))
    }

    /// A non-streaming `message` in which the model calls `name`.
    fn tool_use(&self, name: &str, input: Value) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [
                { "type": "text", "text": TOOL_PREAMBLE },
                { "type": "tool_use", "id": self.tool_use_id(), "name": name, "input": input },
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": { "input_tokens": self.input_tokens, "output_tokens": 12 },
        })
    }

    fn message_start(&self) -> Frame {
        named(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": { "input_tokens": self.input_tokens, "output_tokens": 1 },
                },
            }),
        )
    }
}

fn content_block_start() -> Frame {
    named(
        "content_block_start",
        &json!({
            "type": "content_block_start",
            "index": 0,
            "content_block": { "type": "text", "text": "" },
        }),
    )
}

fn text_delta(piece: &str) -> Frame {
    named(
        "content_block_delta",
        &json!({
            "type": "content_block_delta",
            "index": 0,
            "delta": { "type": "text_delta", "text": piece },
        }),
    )
}

fn content_block_stop() -> Frame {
    named(
        "content_block_stop",
        &json!({ "type": "content_block_stop", "index": 0 }),
    )
}

fn message_delta(output_tokens: u64) -> Frame {
    named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": "end_turn", "stop_sequence": null },
            "usage": { "output_tokens": output_tokens },
        }),
    )
}

fn named(event: &'static str, data: &Value) -> Frame {
    Frame::Named {
        event,
        data: data.to_string(),
    }
}

/// Rough prompt size: words of the system prompt and of every message's
/// text, at least 1.
fn input_tokens(request: &Value) -> u64 {
    let system = request.get("system").map_or(0, content_words);
    let messages: u64 = request
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content"))
        .map(content_words)
        .sum();
    (system + messages).max(1)
}

fn error_response(status: u16, message: &str, retry_after_secs: Option<u64>) -> Response {
    status_response(status, retry_after_secs, |code| error_body(code, message))
}

/// An Anthropic error body, with the error type Anthropic uses for the status.
fn error_body(status: u16, message: &str) -> Value {
    let kind = match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    };
    json!({ "type": "error", "error": { "type": kind, "message": message } })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::StreamExt as _;

    use super::*;

    fn client() -> reqwest::Client {
        // reqwest is built without a TLS provider and refuses to build a
        // client until one is installed, even for plain http://.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    fn request(stream: bool) -> Value {
        json!({
            "model": "claude-test",
            "max_tokens": 64,
            "stream": stream,
            "system": "be brief",
            "messages": [{ "role": "user", "content": "say hello to me" }],
        })
    }

    async fn send(provider: &MockAnthropic, body: Value) -> reqwest::Response {
        client()
            .post(format!("{}/messages", provider.base_url()))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .expect("request reaches the mock provider")
    }

    async fn read_body(response: reqwest::Response) -> (String, bool) {
        let mut stream = response.bytes_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(_) => return (String::from_utf8(bytes).unwrap(), true),
            }
        }
        (String::from_utf8(bytes).unwrap(), false)
    }

    /// `(event name, data)` of every SSE event, in order.
    fn events(body: &str) -> Vec<(String, String)> {
        body.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (event, data) = e.split_once('\n').expect("event and data lines");
                (
                    event
                        .strip_prefix("event: ")
                        .expect("event line")
                        .to_owned(),
                    data.strip_prefix("data: ").expect("data line").to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn ok_reply_has_the_messages_shape() {
        let provider = MockAnthropic::start().await.unwrap();
        assert!(provider.base_url().ends_with("/v1"));
        let response = send(&provider, request(false)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], "msg_mock000001");
        assert_eq!(body["type"], "message");
        assert_eq!(body["role"], "assistant");
        assert_eq!(body["model"], "claude-test");
        assert_eq!(
            body["content"],
            json!([{ "type": "text", "text": Behavior::DEFAULT_TEXT }])
        );
        assert_eq!(body["stop_reason"], "end_turn");
        // 6 prompt words over the system prompt and the message, 5 in the reply.
        assert_eq!(
            body["usage"],
            json!({ "input_tokens": 6, "output_tokens": 5 })
        );
        let received = &provider.requests()[0];
        assert_eq!(received.header("x-api-key"), Some("sk-ant-test"));
        assert_eq!(received.body, request(false));
    }

    #[tokio::test]
    async fn stream_sends_the_messages_event_sequence() {
        let provider = MockAnthropic::start().await.unwrap();
        provider.push(Behavior::Reply {
            text: "one two three".to_owned(),
        });
        let response = send(&provider, request(true)).await;
        assert_eq!(response.status(), 200);
        let (body, dropped) = read_body(response).await;
        assert!(!dropped);
        let events = events(&body);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let data: Vec<Value> = events
            .iter()
            .map(|(_, d)| serde_json::from_str(d).unwrap())
            .collect();
        for ((name, _), value) in events.iter().zip(&data) {
            assert_eq!(&value["type"], name.as_str());
        }
        assert_eq!(data[0]["message"]["usage"]["input_tokens"], 6);
        let words: Vec<&Value> = data[3..6].iter().map(|d| &d["delta"]["text"]).collect();
        assert_eq!(words, ["one ", "two ", "three"]);
        assert_eq!(data[7]["delta"]["stop_reason"], "end_turn");
        assert_eq!(data[7]["usage"]["output_tokens"], 3);
        assert_eq!(provider.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn status_sends_an_anthropic_error_body() {
        let provider = MockAnthropic::start().await.unwrap();
        provider.push(Behavior::Status {
            status: 529,
            message: "Overloaded".to_owned(),
            retry_after_secs: Some(3),
        });
        provider.push(Behavior::Status {
            status: 401,
            message: "invalid x-api-key".to_owned(),
            retry_after_secs: None,
        });
        let response = send(&provider, request(true)).await;
        assert_eq!(response.status().as_u16(), 529);
        assert_eq!(response.headers()["retry-after"], "3");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({ "type": "error", "error": { "type": "overloaded_error", "message": "Overloaded" } })
        );
        let body: Value = send(&provider, request(false)).await.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }

    #[tokio::test]
    async fn garbage_drops_and_delays() {
        let provider = MockAnthropic::start().await.unwrap();
        provider.push(Behavior::Garbage);
        provider.push(Behavior::DropStreamAfter { chunks: 2 });
        provider.push(Behavior::Delay {
            delay: Duration::from_millis(200),
            then: Box::new(Behavior::Ok),
        });

        let (body, dropped) = read_body(send(&provider, request(true)).await).await;
        assert!(!dropped);
        let garbage = events(&body);
        assert_eq!(
            garbage[1],
            ("content_block_delta".into(), "{garbage".into())
        );
        assert_eq!(garbage.last().unwrap().0, "message_stop");

        let (body, dropped) = read_body(send(&provider, request(true)).await).await;
        assert!(dropped, "the connection is dropped, not ended cleanly");
        let names: Vec<String> = events(&body).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta"
            ]
        );

        let started = Instant::now();
        let response = send(&provider, request(false)).await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(response.status(), 200);
        assert_eq!(provider.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn invalid_requests_are_rejected_without_consuming_behaviours() {
        let provider = MockAnthropic::start().await.unwrap();
        provider.push(Behavior::Reply {
            text: "kept".to_owned(),
        });
        let mut no_max = request(false);
        no_max.as_object_mut().unwrap().remove("max_tokens");
        let response = send(&provider, no_max).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");

        let response = client()
            .post(format!("{}/messages", provider.base_url()))
            .json(&request(false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "no anthropic-version header");

        let body: Value = send(&provider, request(false)).await.json().await.unwrap();
        assert_eq!(body["content"][0]["text"], "kept");
        assert_eq!(provider.request_count(), 3);
    }
}
