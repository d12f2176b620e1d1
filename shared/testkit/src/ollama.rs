//! [`MockOllama`], a mock of Ollama's native chat API over real HTTP. It takes
//! the same [`Behavior`]s as [`crate::MockProvider`] and answers
//! `POST /api/chat` in Ollama's JSON and newline-delimited JSON shapes, so
//! adapters are exercised against the wire format they will meet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::behavior::Behavior;
use crate::mock_provider::{ReceivedRequest, Server, Shared};
use crate::openai::{content_words, stream_pieces, word_count};
use crate::routes::{
    json_object, json_response, settle, slow_first_byte, status_response, with_content_type,
};
use crate::sse::{self, Frame};

/// The timestamp every reply carries; clients ignore it.
const CREATED_AT: &str = "2025-01-01T00:00:00.000000Z";

/// A mock Ollama server on `127.0.0.1`, serving in a background task until
/// dropped.
///
/// Like the real server it rejects, with a 400 `{"error":...}` that consumes
/// no behaviour, a request without a `model` or without a `messages` array.
/// [`Behavior::Status`] answers `{"error":"<message>"}`; streams are one line
/// per word, then a `"done": true` line with `done_reason` and token counts.
#[derive(Debug)]
pub struct MockOllama {
    server: Server,
}

impl MockOllama {
    /// Binds 127.0.0.1:0 and serves in a background tokio task until dropped.
    pub async fn start() -> anyhow::Result<MockOllama> {
        Ok(MockOllama {
            server: Server::start(router).await?,
        })
    }

    /// The server root an Ollama client uses, e.g. `http://127.0.0.1:41234`;
    /// requests go to `{base_url}/api/chat`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Queues a behaviour: each chat request pops the next one; when the queue
    /// is empty the default (initially [`Behavior::Ok`]) is used.
    pub fn push(&self, b: Behavior) {
        self.server.push(b);
    }

    /// Replaces the behaviour used when the queue is empty.
    pub fn set_default(&self, b: Behavior) {
        self.server.set_default(b);
    }

    /// Every chat request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.server.requests()
    }

    /// Number of chat requests received so far.
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
        .route("/api/chat", post(chat))
        .with_state(shared)
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(request) = json_object(&shared, &headers, &body) else {
        return error_response(400, "invalid request body", None);
    };
    if let Some(problem) = invalid(&request) {
        shared.record(ReceivedRequest::new(request, &headers));
        return error_response(400, problem, None);
    }
    let (_, behavior) = shared.accept(ReceivedRequest::new(request.clone(), &headers));
    let responder = Responder {
        reply: Reply::for_request(&request),
        // Ollama streams unless told not to.
        stream: request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        cancelled: Arc::clone(&shared.cancelled),
    };
    responder.respond(behavior).await
}

/// What the real server would reject before running the model.
fn invalid(request: &Value) -> Option<&'static str> {
    if request
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Some("model is required");
    }
    if !request.get("messages").is_some_and(Value::is_array) {
        return Some("messages is required");
    }
    None
}

/// `{"error":"<message>"}`, Ollama's error body for every status.
fn error_response(status: u16, message: &str, retry_after_secs: Option<u64>) -> Response {
    status_response(status, retry_after_secs, |_| json!({ "error": message }))
}

/// Everything needed to answer one chat request.
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
            return json_response(StatusCode::OK, self.reply.whole(text).to_string());
        }
        let mut frames: Vec<Frame> = stream_pieces(text)
            .iter()
            .map(|piece| Frame::Line(self.reply.piece(piece).to_string()))
            .collect();
        frames.push(Frame::Line(self.reply.done(word_count(text)).to_string()));
        self.ndjson(frames)
    }

    /// Ollama sends a call whole, its arguments as an object and without an
    /// id; streamed, on a line of its own before the done line.
    fn tool_call(&self, name: &str, arguments: &str) -> Response {
        let arguments: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
        let calls = json!([{ "function": { "name": name, "arguments": arguments } }]);
        if !self.stream {
            let mut body = self.reply.done(8);
            body["message"]["tool_calls"] = calls;
            return json_response(StatusCode::OK, body.to_string());
        }
        let mut line = self.reply.piece("");
        line["message"]["tool_calls"] = calls;
        self.ndjson(vec![
            Frame::Line(line.to_string()),
            Frame::Line(self.reply.done(8).to_string()),
        ])
    }

    fn garbage(&self) -> Response {
        if !self.stream {
            return json_response(StatusCode::OK, "{not json".to_owned());
        }
        // The malformed line is the only defect: the stream ends cleanly.
        self.ndjson(vec![
            Frame::Line("{garbage".to_owned()),
            Frame::Line(self.reply.done(0).to_string()),
        ])
    }

    fn drop_after(&self, chunks: usize) -> Response {
        if !self.stream {
            let full = Bytes::from(self.reply.whole(Behavior::DEFAULT_TEXT).to_string());
            let half = full.slice(..full.len() / 2);
            return with_content_type(sse::truncated(half), "application/json");
        }
        let words = Behavior::DEFAULT_TEXT.split_whitespace().cycle();
        let mut frames: Vec<Frame> = words
            .take(chunks)
            .map(|w| Frame::Line(self.reply.piece(&format!("{w} ")).to_string()))
            .collect();
        frames.push(Frame::Abort);
        self.ndjson(frames)
    }

    fn ndjson(&self, frames: Vec<Frame>) -> Response {
        let mut response = with_content_type(
            sse::body(frames, Arc::clone(&self.cancelled)),
            "application/x-ndjson",
        );
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// Per-request fields shared by every body of one reply.
#[derive(Debug, Clone)]
struct Reply {
    model: String,
    prompt_tokens: u64,
}

impl Reply {
    fn for_request(request: &Value) -> Self {
        let messages = request.get("messages").and_then(Value::as_array);
        let words: u64 = messages
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content"))
            .map(content_words)
            .sum();
        Self {
            model: request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            prompt_tokens: words.max(1),
        }
    }

    /// A non-streamed answer carrying `text`.
    fn whole(&self, text: &str) -> Value {
        let mut body = self.done(word_count(text));
        body["message"]["content"] = Value::String(text.to_owned());
        body
    }

    /// One streamed line carrying `piece`.
    fn piece(&self, piece: &str) -> Value {
        json!({
            "model": self.model,
            "created_at": CREATED_AT,
            "message": { "role": "assistant", "content": piece },
            "done": false,
        })
    }

    /// The last streamed line: empty content, why it stopped, and the counts.
    fn done(&self, eval_count: u64) -> Value {
        json!({
            "model": self.model,
            "created_at": CREATED_AT,
            "message": { "role": "assistant", "content": "" },
            "done": true,
            "done_reason": "stop",
            "total_duration": 1_200_000_u64,
            "load_duration": 100_000_u64,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": 300_000_u64,
            "eval_count": eval_count,
            "eval_duration": 800_000_u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::StreamExt as _;

    use super::*;

    fn client() -> reqwest::Client {
        // reqwest is built without a TLS provider and refuses to build a client
        // until one is installed, even for plain http://.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    }

    async fn chat(mock: &MockOllama, body: Value) -> reqwest::Response {
        client()
            .post(format!("{}/api/chat", mock.base_url()))
            .json(&body)
            .send()
            .await
            .expect("request reaches the mock")
    }

    fn request(stream: bool) -> Value {
        json!({
            "model": "llama3.2",
            "stream": stream,
            "messages": [{ "role": "user", "content": "say hello to me" }],
        })
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

    fn lines(body: &str) -> Vec<Value> {
        body.lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    #[tokio::test]
    async fn whole_reply_has_the_ollama_chat_shape() {
        let mock = MockOllama::start().await.unwrap();
        let response = chat(&mock, request(false)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"], "llama3.2");
        assert_eq!(body["message"]["role"], "assistant");
        assert_eq!(body["message"]["content"], Behavior::DEFAULT_TEXT);
        assert_eq!(body["done"], true);
        assert_eq!(body["done_reason"], "stop");
        assert_eq!(body["prompt_eval_count"], 4);
        assert_eq!(body["eval_count"], 5);
    }

    #[tokio::test]
    async fn stream_sends_a_line_per_word_then_done() {
        let mock = MockOllama::start().await.unwrap();
        mock.push(Behavior::Reply {
            text: "one two three".into(),
        });
        let response = chat(&mock, request(true)).await;
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/x-ndjson"
        );
        let (body, dropped) = read_body(response).await;
        assert!(!dropped);
        assert!(body.ends_with('\n'));
        let lines = lines(&body);
        let pieces: Vec<&str> = lines
            .iter()
            .map(|l| l["message"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(pieces, ["one ", "two ", "three", ""]);
        assert!(lines[..3].iter().all(|l| l["done"] == false));
        let done = &lines[3];
        assert_eq!(
            (&done["done"], &done["done_reason"], &done["eval_count"]),
            (&json!(true), &json!("stop"), &json!(3))
        );
        assert_eq!(mock.cancelled_streams(), 0);
    }

    #[tokio::test]
    async fn faults_use_ollama_shapes() {
        let mock = MockOllama::start().await.unwrap();
        mock.push(Behavior::Status {
            status: 404,
            message: "model \"x\" not found, try pulling it first".into(),
            retry_after_secs: Some(3),
        });
        let response = chat(&mock, request(false)).await;
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["retry-after"], "3");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({ "error": "model \"x\" not found, try pulling it first" })
        );

        mock.push(Behavior::Garbage);
        let (body, dropped) = read_body(chat(&mock, request(true)).await).await;
        assert!(!dropped);
        assert!(body.starts_with("{garbage\n"));

        mock.push(Behavior::DropStreamAfter { chunks: 2 });
        let (body, dropped) = read_body(chat(&mock, request(true)).await).await;
        assert!(dropped);
        assert_eq!(lines(&body).len(), 2);

        mock.push(Behavior::Delay {
            delay: Duration::from_millis(100),
            then: Box::new(Behavior::Ok),
        });
        let started = Instant::now();
        let response = chat(&mock, request(false)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert_eq!(response.status(), 200);
        assert_eq!(mock.request_count(), 4);
    }

    #[tokio::test]
    async fn requests_without_a_model_are_rejected_and_keep_the_queue() {
        let mock = MockOllama::start().await.unwrap();
        mock.push(Behavior::Reply {
            text: "kept".into(),
        });
        let response = chat(&mock, json!({ "messages": [] })).await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({ "error": "model is required" }));
        let body: Value = chat(&mock, request(false)).await.json().await.unwrap();
        assert_eq!(body["message"]["content"], "kept");
        assert_eq!(mock.requests().len(), 2);
    }

    #[tokio::test]
    async fn cancelled_streams_counts_clients_that_leave() {
        let mock = MockOllama::start().await.unwrap();
        mock.set_default(Behavior::Reply {
            text: "a b c d e f g h i j k l".into(),
        });
        let response = chat(&mock, request(true)).await;
        let mut body = response.bytes_stream();
        assert!(body.next().await.is_some());
        drop(body);
        let deadline = Instant::now() + Duration::from_secs(5);
        while mock.cancelled_streams() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(mock.cancelled_streams(), 1);
    }
}
