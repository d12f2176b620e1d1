//! HTTP routes of the mock provider and how each [`Behavior`] becomes a
//! response.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

use crate::behavior::Behavior;
use crate::mock_provider::{ReceivedRequest, Shared};
use crate::openai::{self, Reply};
use crate::sse::{self, Frame};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .with_state(shared)
}

async fn models() -> Response {
    json_response(StatusCode::OK, openai::model_list().to_string())
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(request) = json_object(&shared, &headers, &body) else {
        return error_response(400, "request body is not a JSON object", None);
    };
    let (seq, behavior) = shared.accept(ReceivedRequest::new(request.clone(), &headers));
    let reply = Reply::for_request(&request, seq);
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let responder = Responder {
        reply,
        stream,
        cancelled: Arc::clone(&shared.cancelled),
    };
    responder.respond(behavior).await
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
            Behavior::SlowStream { chunks, every } => self.slow_stream(chunks, every),
            // `settle` never returns a delay.
            Behavior::Delay { .. } => error_response(500, "unexpected delay", None),
        }
    }

    fn text(&self, text: &str) -> Response {
        if !self.stream {
            return json_response(StatusCode::OK, self.reply.completion(text).to_string());
        }
        let mut events = vec![self.reply.role_chunk()];
        events.extend(
            openai::stream_pieces(text)
                .iter()
                .map(|piece| self.reply.content_chunk(piece)),
        );
        events.push(self.reply.stop_chunk());
        events.extend(self.reply.usage_chunk(openai::word_count(text)));
        let mut frames: Vec<Frame> = events.iter().map(|e| Frame::Event(e.to_string())).collect();
        frames.push(Frame::Event("[DONE]".to_owned()));
        self.sse(frames)
    }

    fn tool_call(&self, name: &str, arguments: &str) -> Response {
        if !self.stream {
            let body = self.reply.tool_completion(name, arguments);
            return json_response(StatusCode::OK, body.to_string());
        }
        let mut events = vec![self.reply.role_chunk()];
        events.extend(self.reply.tool_chunks(name, arguments));
        let mut frames: Vec<Frame> = events.iter().map(|e| Frame::Event(e.to_string())).collect();
        frames.push(Frame::Event("[DONE]".to_owned()));
        self.sse(frames)
    }

    fn garbage(&self) -> Response {
        if !self.stream {
            return json_response(StatusCode::OK, "{not json".to_owned());
        }
        self.sse(vec![
            Frame::Event("{garbage".to_owned()),
            Frame::Event("[DONE]".to_owned()),
        ])
    }

    fn drop_after(&self, chunks: usize) -> Response {
        if !self.stream {
            let full = Bytes::from(self.reply.completion(Behavior::DEFAULT_TEXT).to_string());
            let half = full.slice(..full.len() / 2);
            return with_content_type(sse::truncated(half), "application/json");
        }
        let mut frames = vec![Frame::Event(self.reply.role_chunk().to_string())];
        let words = Behavior::DEFAULT_TEXT.split_whitespace().cycle();
        frames.extend(
            words
                .take(chunks)
                .map(|w| Frame::Event(self.reply.content_chunk(&format!("{w} ")).to_string())),
        );
        frames.push(Frame::Abort);
        self.sse(frames)
    }

    fn slow_stream(&self, chunks: usize, every: std::time::Duration) -> Response {
        if !self.stream {
            return error_response(400, "the mock's slow streams need \"stream\": true", None);
        }
        let mut frames = vec![Frame::Event(self.reply.role_chunk().to_string())];
        for i in 0..chunks {
            frames.push(Frame::Pause(every));
            frames.push(Frame::Event(
                self.reply.content_chunk(&format!("part{i} ")).to_string(),
            ));
        }
        frames.push(Frame::Event(self.reply.stop_chunk().to_string()));
        frames.extend(
            self.reply
                .usage_chunk(chunks as u64)
                .map(|usage| Frame::Event(usage.to_string())),
        );
        frames.push(Frame::Event("[DONE]".to_owned()));
        self.sse(frames)
    }

    fn sse(&self, frames: Vec<Frame>) -> Response {
        sse_response(frames, &self.cancelled)
    }
}

/// Parses a request body that must be a JSON object. Anything else is
/// recorded as a string, consumes no behaviour, and gives None.
pub(crate) fn json_object(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(request) if request.is_object() => Some(request),
        _ => {
            let raw = Value::String(String::from_utf8_lossy(body).into_owned());
            shared.record(ReceivedRequest::new(raw, headers));
            None
        }
    }
}

/// Sleeps through [`Behavior::Delay`]s, which can nest, and returns the
/// behaviour to answer with; never a delay.
pub(crate) async fn settle(mut behavior: Behavior) -> Behavior {
    while let Behavior::Delay { delay, then } = behavior {
        tokio::time::sleep(delay).await;
        behavior = *then;
    }
    behavior
}

/// Holds `response`'s body back for `delay`; its headers go at once. The body
/// inside still notices a client that leaves during the wait.
pub(crate) fn slow_first_byte(response: Response, delay: std::time::Duration) -> Response {
    let (parts, body) = response.into_parts();
    let wait = futures::stream::once(tokio::time::sleep(delay))
        .filter_map(|()| async { None::<Result<Bytes, axum::Error>> });
    Response::from_parts(
        parts,
        Body::from_stream(wait.chain(body.into_data_stream())),
    )
}

/// A `text/event-stream` response streaming `frames`.
pub(crate) fn sse_response(frames: Vec<Frame>, cancelled: &Arc<AtomicUsize>) -> Response {
    let mut response = with_content_type(
        sse::body(frames, Arc::clone(cancelled)),
        "text/event-stream",
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn error_response(status: u16, message: &str, retry_after_secs: Option<u64>) -> Response {
    status_response(status, retry_after_secs, |code| {
        openai::error_body(code, message)
    })
}

/// `status` (500 when it is not a valid HTTP code) with the JSON error body
/// `body` builds for the final code, plus `Retry-After` when set.
pub(crate) fn status_response(
    status: u16,
    retry_after_secs: Option<u64>,
    body: impl FnOnce(u16) -> Value,
) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, body(code.as_u16()).to_string());
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = with_content_type(Body::from(body), "application/json");
    *response.status_mut() = status;
    response
}

pub(crate) fn with_content_type(body: Body, content_type: &'static str) -> Response {
    (
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}
