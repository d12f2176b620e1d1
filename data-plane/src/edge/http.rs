//! OpenAI-compatible HTTP: `POST /v1/chat/completions` (JSON, and SSE with
//! `stream: true` ending in `data: [DONE]`), `GET /v1/models`, health, readiness
//! and metrics. Any OpenAI SDK works against it unchanged.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use switchyard_telemetry::context::RemoteContext;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::openai::{self, Hints};
use super::{ApiError, AppState, ErrorKind};
use crate::engine::{EngineEvent, ResponseMeta};
use crate::metrics::Metrics;
use crate::request::Received;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACE_ID: HeaderName = HeaderName::from_static("x-switchyard-trace-id");
/// The W3C trace id of the request's spans (the caller's `traceparent`'s, or
/// this node's own when it exports spans).
const OTEL_TRACE_ID: HeaderName = HeaderName::from_static("x-switchyard-otel-trace-id");
const TARGET: HeaderName = HeaderName::from_static("x-switchyard-target");
const ATTEMPTS: HeaderName = HeaderName::from_static("x-switchyard-attempts");
const ROUTE: HeaderName = HeaderName::from_static("x-switchyard-route");
const INVALID_TOOL_CALLS: HeaderName = HeaderName::from_static("x-switchyard-invalid-tool-calls");
/// Bodies larger than this are parsed and tokenized on the blocking pool.
const BLOCKING_PARSE_BYTES: usize = 256 << 10;
/// Longest `x-switchyard-route` value; proxies reject very long headers.
const MAX_ROUTE_HEADER: usize = 2048;

/// `https`: the listener serves TLS, so answers carry HSTS too.
pub fn router(state: AppState, https: bool) -> Router {
    let router = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|uri: Uri| async move { ApiError::UnknownRoute(uri.path().to_owned()) })
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(axum::middleware::map_response_with_state(
            state.metrics.clone(),
            count_errors,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state);
    if https {
        router.layer(axum::middleware::map_response(strict_transport_security))
    } else {
        router
    }
}

/// Counts every error answer by its kind, whichever handler gave it.
async fn count_errors(State(metrics): State<Arc<Metrics>>, response: Response) -> Response {
    if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
        metrics.error(kind);
    }
    response
}

/// Over HTTPS only (browsers ignore it over plain HTTP, RFC 6797): clients
/// that honour it refuse plain HTTP to this host for a year.
async fn strict_transport_security(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static("strict-transport-security"),
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

/// Headers that keep browsers from sniffing, framing, caching or leaking
/// what an API answer holds (prompts and completions are private).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

fn authorization(headers: &HeaderMap) -> Option<&[u8]> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
}

/// `x-switchyard-replay-of`: the trace id a control plane replays.
fn replay_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let id = header(headers, "x-switchyard-replay-of")?;
    if id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 128)
    {
        return Err(ApiError::invalid(
            "x-switchyard-replay-of",
            "a trace id of 1 to 128 characters",
        ));
    }
    Ok(id)
}

fn header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::invalid(name, "header must be ASCII"))
        })
        .transpose()
}

fn unix_seconds(received: &Received) -> i64 {
    received.unix_ms / 1000
}

/// The ids that tie a response to its traces.
struct Ids {
    request_id: String,
    trace_id: String,
    otel_trace_id: Option<String>,
}

impl Ids {
    /// The refusal's response, marked on the request's span.
    fn rejected(&self, error: ApiError) -> Response {
        super::error::note_rejection(&tracing::Span::current(), &error);
        self.on(error.into_response())
    }

    fn on(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert(REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.trace_id) {
            headers.insert(TRACE_ID, v);
        }
        if let Some(Ok(v)) = self.otel_trace_id.as_deref().map(HeaderValue::from_str) {
            headers.insert(OTEL_TRACE_ID, v);
        }
        response
    }
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let caller = RemoteContext::from_headers(&headers);
    let span = crate::spans::request(&caller);
    let handled = handle_chat(state, headers, body, caller)
        .instrument(span.clone())
        .await;
    match handled {
        Ok(response) => response,
        Err(e) => {
            super::error::note_rejection(&span, &e);
            e.into_response()
        }
    }
}

async fn handle_chat(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    caller: RemoteContext,
) -> Result<Response, ApiError> {
    let received = Received::now();
    // Checked before the body is parsed: an unknown caller costs one hash.
    let grant = state.authenticate(authorization(&headers))?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.max_body_bytes)
        } else {
            ApiError::invalid("", rejection.body_text())
        }
    })?;
    super::validation::json_content_type(&headers)?;
    let hints = Hints {
        strategy: header(&headers, "x-switchyard-strategy")?,
        workspace: header(&headers, "x-switchyard-workspace")?,
        request_id: header(&headers, "x-request-id")?,
        intent: header(&headers, "x-switchyard-intent")?,
        timeout: header(&headers, "x-switchyard-timeout")?,
        replay_of: replay_of(&headers)?,
    };
    let explain =
        header(&headers, "x-switchyard-explain")?.is_some_and(|v| v == "true" || v == "1");
    // Tokenizing a multi-megabyte prompt takes milliseconds: keep it off the async threads.
    let (mut request, tools) = if body.len() > BLOCKING_PARSE_BYTES {
        tokio::task::spawn_blocking(move || openai::parse(&body, hints, received))
            .await
            .map_err(|_| ApiError::Internal)??
    } else {
        openai::parse(&body, hints, received)?
    };
    super::auth::authorize(&grant, &mut request)?;
    request.trace_context = caller;
    let ids = Ids {
        request_id: request.request_id.clone(),
        trace_id: request.trace_id.clone(),
        otel_trace_id: crate::spans::request_parsed(&tracing::Span::current(), &request),
    };
    let (snapshot, plan) = match state.route(&request) {
        Ok(routed) => routed,
        Err(e) => return Ok(ids.rejected(e)),
    };
    let include_usage = request
        .body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = ChunkShape {
        id: format!("chatcmpl-{}", ids.trace_id),
        created: unix_seconds(&received),
        model: request.model.clone(),
        include_usage,
        metrics: state.metrics.clone(),
    };
    let stream = request.stream;
    let route_header = explain.then(|| route_header(&plan.explanation));
    let admitted = match state.admit(&grant, &snapshot, &request, &plan).await {
        Ok(admitted) => admitted,
        Err(e) => return Ok(ids.rejected(e)),
    };
    let events = state
        .engine
        .execute(snapshot, request, tools, plan, admitted.ticket);
    let response = if stream {
        stream_response(events, chunk)
            .await
            .map(IntoResponse::into_response)
    } else {
        json_response(events, &chunk).await
    };
    let mut response = response.unwrap_or_else(IntoResponse::into_response);
    if let Some(value) = route_header {
        response.headers_mut().insert(ROUTE, value);
    }
    super::error::append_headers(&mut response, &admitted.headers);
    Ok(ids.on(response))
}

/// The explanation as a header value: printable ASCII, bounded.
fn route_header(explanation: &str) -> HeaderValue {
    let safe: String = explanation
        .chars()
        .take(MAX_ROUTE_HEADER)
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&safe).unwrap_or_else(|_| HeaderValue::from_static("unavailable"))
}

fn meta_json(meta: &ResponseMeta) -> Value {
    let mut json = json!({
        "request_id": meta.request_id,
        "trace_id": meta.trace_id,
        "target": meta.target_id,
        "attempts": meta.attempts,
        "latency_ms": meta.latency_ms,
        "ttft_ms": meta.ttft_ms,
        "cost_usd": meta.cost_usd,
        "snapshot_version": meta.snapshot_version,
    });
    // Only when some are: SDKs ignore the field, and a valid answer stays unmarked.
    if !meta.invalid_tool_calls.is_empty() {
        json["invalid_tool_calls"] = meta
            .invalid_tool_calls
            .iter()
            .map(crate::tool_args::InvalidToolCall::to_json)
            .collect();
    }
    json
}

fn usage_json(meta: &ResponseMeta) -> Value {
    json!({
        "prompt_tokens": meta.usage.input_tokens,
        "completion_tokens": meta.usage.output_tokens,
        "total_tokens": meta.usage.input_tokens + meta.usage.output_tokens,
    })
}

async fn json_response(
    mut events: mpsc::Receiver<EngineEvent>,
    chunk: &ChunkShape,
) -> Result<Response, ApiError> {
    loop {
        match events.recv().await {
            Some(
                EngineEvent::Answering { .. } | EngineEvent::Delta(_) | EngineEvent::ToolCall(_),
            ) => continue,
            Some(EngineEvent::Done {
                content,
                tool_calls,
                finish_reason,
                meta,
            }) => {
                let mut message =
                    json!({ "role": "assistant", "content": content, "refusal": null });
                if !tool_calls.is_empty() {
                    if content.is_empty() {
                        message["content"] = Value::Null;
                    }
                    message["tool_calls"] = tool_calls
                        .iter()
                        .map(|c| {
                            json!({
                                "id": c.id,
                                "type": "function",
                                "function": { "name": c.name, "arguments": c.arguments },
                            })
                        })
                        .collect();
                }
                let body = json!({
                    "id": chunk.id,
                    "object": "chat.completion",
                    "created": chunk.created,
                    "model": meta.model,
                    "choices": [{
                        "index": 0,
                        "message": message,
                        "logprobs": null,
                        "finish_reason": finish_reason,
                    }],
                    "usage": usage_json(&meta),
                    "system_fingerprint": null,
                    "switchyard": meta_json(&meta),
                });
                let mut response = Json(body).into_response();
                if let Ok(v) = HeaderValue::from_str(&meta.target_id) {
                    response.headers_mut().insert(TARGET, v);
                }
                response
                    .headers_mut()
                    .insert(ATTEMPTS, HeaderValue::from(meta.attempts));
                if !meta.invalid_tool_calls.is_empty() {
                    response.headers_mut().insert(
                        INVALID_TOOL_CALLS,
                        HeaderValue::from(meta.invalid_tool_calls.len()),
                    );
                }
                return Ok(response);
            }
            Some(EngineEvent::Failed(failure)) => return Err(ApiError::from(&failure)),
            None => return Err(ApiError::Internal),
        }
    }
}

/// What every chunk of one streamed response shares.
struct ChunkShape {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    /// Counts a failure after the first token, which no status can tell.
    metrics: Arc<Metrics>,
}

impl ChunkShape {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Event {
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        });
        Event::default().data(body.to_string())
    }

    /// The events one engine event becomes; the bool says whether the stream is over.
    fn events_for(&mut self, event: EngineEvent) -> (Vec<Event>, bool) {
        match event {
            // Chunks name the model that answers, as OpenAI's do.
            EngineEvent::Answering { model } => {
                self.model = model;
                (Vec::new(), false)
            }
            EngineEvent::Delta(text) => (vec![self.chunk(json!({ "content": text }), None)], false),
            EngineEvent::ToolCall(piece) => {
                // OpenAI's shape: id, type and name on a call's first piece only.
                let mut function = json!({ "arguments": piece.arguments });
                let mut call = json!({ "index": piece.index });
                if let Some(name) = piece.name {
                    function["name"] = Value::String(name);
                }
                if let Some(id) = piece.id {
                    call["id"] = Value::String(id);
                    call["type"] = Value::String("function".into());
                }
                call["function"] = function;
                (
                    vec![self.chunk(json!({ "tool_calls": [call] }), None)],
                    false,
                )
            }
            EngineEvent::Done {
                finish_reason,
                meta,
                ..
            } => {
                let mut last = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "system_fingerprint": null,
                    "choices": [{ "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason }],
                    "switchyard": meta_json(&meta),
                });
                let mut out = Vec::with_capacity(3);
                if self.include_usage {
                    out.push(Event::default().data(last.to_string()));
                    last = json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage_json(&meta),
                    });
                }
                out.push(Event::default().data(last.to_string()));
                out.push(Event::default().data("[DONE]"));
                (out, true)
            }
            // Never a clean end that hides the failure: an explicit error event, no [DONE].
            EngineEvent::Failed(failure) => {
                let error = ApiError::from(&failure);
                self.metrics.error(error.kind());
                (vec![Event::default().data(error.body().to_string())], true)
            }
        }
    }
}

/// Waits for the first event, so a request that fails before its first token
/// gets a proper HTTP error status instead of a stream.
async fn stream_response(
    mut events: mpsc::Receiver<EngineEvent>,
    mut shape: ChunkShape,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let mut first = events.recv().await;
    if let Some(EngineEvent::Answering { model }) = first {
        shape.model = model;
        first = events.recv().await;
    }
    let first = match first {
        Some(EngineEvent::Failed(failure)) if !failure.partial => {
            return Err(ApiError::from(&failure));
        }
        Some(event) => event,
        None => return Err(ApiError::Internal),
    };
    let role = shape.chunk(json!({ "role": "assistant", "content": "" }), None);
    let (first_events, over) = shape.events_for(first);
    let head = futures::stream::iter(std::iter::once(role).chain(first_events));
    // The receiver moves into the body: when the client leaves, axum drops the
    // body, the receiver closes, and the engine cancels the upstream call.
    let tail = futures::stream::unfold(
        (events, shape, over),
        |(mut events, mut shape, over)| async move {
            if over {
                return None;
            }
            let (out, over) = shape.events_for(events.recv().await?);
            Some((out, (events, shape, over)))
        },
    )
    .flat_map(futures::stream::iter);
    Ok(Sse::new(head.chain(tail).map(Ok)))
}

async fn models(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    state.authenticate(authorization(&headers))?;
    let snapshot = state.snapshot.load_full().ok_or(ApiError::NotReady)?;
    let created = snapshot.routing.created_at_ms / 1000;
    let mut names = BTreeSet::from([switchyard_domain::AUTO_MODEL.to_owned()]);
    for target in &snapshot.routing.targets {
        names.insert(target.spec.name.clone());
        names.insert(target.id.clone());
        names.extend(target.spec.aliases.iter().cloned());
    }
    let data: Vec<Value> = names
        .into_iter()
        .map(|id| json!({ "id": id, "object": "model", "created": created, "owned_by": "switchyard" }))
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down, finishing the requests under way",
        )
            .into_response();
    }
    match state.snapshot.load().as_ref() {
        Some(snapshot) => (
            StatusCode::OK,
            format!("ready: snapshot {}", snapshot.version()),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no snapshot yet",
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    // Breakers move from open to half-open with time alone: read them now.
    let now = crate::request::Received::now().unix_ms;
    for (target, circuit) in state.breakers.all(now) {
        state
            .metrics
            .breaker_state
            .get_or_create(&crate::metrics::TargetLabels { target })
            .set(circuit.gauge());
    }
    switchyard_telemetry::metrics_response(&state.metrics.registry).into_response()
}
