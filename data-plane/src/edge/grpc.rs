//! `InferenceService`: `Complete`, `StreamComplete` and `Route` over gRPC, with
//! the same validation, routing and traces as the HTTP edge.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::inference_service_server::InferenceService;
use switchyard_telemetry::context::RemoteContext;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::validation::{self, Sampling};
use super::{ApiError, AppState};
use crate::engine::{EngineEvent, ResponseMeta};
use crate::request::{ChatRequest, Received};
use crate::tool_args::ToolSchemas;
use crate::workload::{MIN_CUSTOM_TIMEOUT, Source as WorkloadSource, TimeoutProfile};

pub struct InferenceApi {
    state: AppState,
}

impl InferenceApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The client's gRPC deadline (`grpc-timeout`: digits and a unit of H, M, S, m, u or n).
fn client_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Validates a gRPC request; a client deadline shorter than the workload's
/// timeout profile becomes the request's deadline.
/// The request, authenticated by the API key in its metadata (`authorization: Bearer <key>`).
fn from_grpc(
    state: &AppState,
    req: Request<pb::CompleteRequest>,
    stream: bool,
) -> Result<(ChatRequest, ToolSchemas, switchyard_domain::KeyGrant), ApiError> {
    let grant = state.authenticate(
        req.metadata()
            .get("authorization")
            .map(|v| v.as_encoded_bytes()),
    )?;
    let deadline = client_deadline(req.metadata());
    let (mut chat, tools) = to_chat_request(req.into_inner(), stream)?;
    super::auth::authorize(&grant, &mut chat)?;
    if let Some(deadline) = deadline
        && deadline < chat.workload.timeout.duration()
    {
        chat.workload.timeout = TimeoutProfile::Custom(deadline.max(MIN_CUSTOM_TIMEOUT));
        chat.workload.timeout_source = WorkloadSource::Requested;
    }
    Ok((chat, tools, grant))
}

/// The request as the HTTP edge would receive it, checked by the same rules
/// (errors name the gRPC fields), and its tools' compiled argument schemas.
fn to_chat_request(
    req: pb::CompleteRequest,
    stream: bool,
) -> Result<(ChatRequest, ToolSchemas), ApiError> {
    let received = Received::now();
    if req.model.is_empty() {
        return Err(ApiError::invalid("model", "required"));
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        messages.push(message(i, m)?);
    }
    let max_tokens = (req.max_tokens > 0).then_some(req.max_tokens);
    Sampling {
        max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        ..Sampling::default()
    }
    .check()?;

    let mut body = Map::new();
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        body.insert("tools".into(), tools(&req.tools)?);
    }
    if req.json_output {
        body.insert("response_format".into(), json!({ "type": "json_object" }));
    }
    if let Some(n) = max_tokens {
        body.insert("max_tokens".into(), n.into());
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), t.into());
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), p.into());
    }
    let tools = validation::check_body(&body).map_err(grpc_names)?;
    let overrides = super::overrides(non_empty(req.intent), non_empty(req.timeout_profile))?;
    let workload = crate::workload::profile(&body, stream, max_tokens, &overrides);
    let request = ChatRequest {
        trace_context: Default::default(),
        replay_of: None,
        received,
        request_id: super::request_id(Some(req.request_id))?,
        trace_id: uuid::Uuid::now_v7().to_string(),
        workspace: super::workspace(Some(req.workspace))?,
        model: req.model,
        strategy: (!req.strategy.is_empty()).then_some(req.strategy),
        stream,
        max_tokens,
        workload,
        body,
    };
    Ok((request, tools))
}

/// An error of the shared rules, named by the gRPC message's fields.
fn grpc_names(e: ApiError) -> ApiError {
    let ApiError::InvalidRequest {
        message,
        param: Some(param),
    } = e
    else {
        return e;
    };
    let renamed = param
        .replace(".function.parameters", ".parameters_json")
        .replace(".function.arguments", ".arguments_json")
        .replace(".function.", ".");
    let message = message
        .strip_prefix(&format!("{param}: "))
        .unwrap_or(&message)
        .to_owned();
    ApiError::invalid(renamed, message)
}

/// One OpenAI chat message from its gRPC twin, tool calls and results included.
fn message(i: usize, m: &pb::ChatMessage) -> Result<Value, ApiError> {
    let mut message = json!({ "role": m.role, "content": m.content });
    if !m.name.is_empty() {
        message["name"] = Value::String(m.name.clone());
    }
    if !m.tool_calls.is_empty() {
        let mut calls = Vec::with_capacity(m.tool_calls.len());
        for (j, call) in m.tool_calls.iter().enumerate() {
            if !serde_json::from_str::<Value>(&call.arguments_json).is_ok_and(|v| v.is_object()) {
                return Err(ApiError::invalid(
                    format!("messages[{i}].tool_calls[{j}].arguments_json"),
                    "must be a JSON object",
                ));
            }
            calls.push(json!({
                "id": call.id,
                "type": "function",
                "function": { "name": call.name, "arguments": call.arguments_json },
            }));
        }
        if m.content.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = Value::Array(calls);
    }
    if !m.tool_call_id.is_empty() {
        message["tool_call_id"] = Value::String(m.tool_call_id.clone());
    }
    Ok(message)
}

/// OpenAI's `tools` array from gRPC tool definitions; errors name the field.
fn tools(defs: &[pb::ToolDefinition]) -> Result<Value, ApiError> {
    let mut out = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        let parameters: Value = if def.parameters_json.is_empty() {
            json!({ "type": "object", "properties": {} })
        } else {
            serde_json::from_str(&def.parameters_json).map_err(|e| {
                ApiError::invalid(
                    format!("tools[{i}].parameters_json"),
                    format!("not JSON: {e}"),
                )
            })?
        };
        out.push(json!({
            "type": "function",
            "function": { "name": def.name, "description": def.description, "parameters": parameters },
        }));
    }
    Ok(Value::Array(out))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn wire_meta(meta: &ResponseMeta) -> pb::ResponseMeta {
    pb::ResponseMeta {
        request_id: meta.request_id.clone(),
        trace_id: meta.trace_id.clone(),
        target_id: meta.target_id.clone(),
        latency_ms: meta.latency_ms,
        ttft_ms: meta.ttft_ms,
        cost_usd: meta.cost_usd,
        attempts: meta.attempts,
        snapshot_version: meta.snapshot_version,
        invalid_tool_calls: meta
            .invalid_tool_calls
            .iter()
            .map(crate::tool_args::InvalidToolCall::to_wire)
            .collect(),
    }
}

fn wire_usage(meta: &ResponseMeta) -> pb::Usage {
    pb::Usage {
        input_tokens: meta.usage.input_tokens,
        output_tokens: meta.usage.output_tokens,
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CompleteChunk, Status>> + Send>>;

/// The chunk an engine event becomes, if any, and whether the stream is over.
/// A failure is counted as an error answered.
fn chunk_for(
    event: EngineEvent,
    state: &AppState,
) -> (Option<Result<pb::CompleteChunk, Status>>, bool) {
    use pb::complete_chunk::Kind;
    let (chunk, over) = match event {
        // The answering model is in the end's meta; no chunk of its own.
        EngineEvent::Answering { .. } => return (None, false),
        EngineEvent::Delta(text) => (
            Ok(pb::CompleteChunk {
                kind: Some(Kind::Delta(text)),
            }),
            false,
        ),
        EngineEvent::ToolCall(piece) => (
            Ok(pb::CompleteChunk {
                kind: Some(Kind::ToolCall(pb::ToolCallDelta {
                    index: piece.index,
                    id: piece.id.unwrap_or_default(),
                    name: piece.name.unwrap_or_default(),
                    arguments_json: piece.arguments,
                })),
            }),
            false,
        ),
        EngineEvent::Done {
            finish_reason,
            meta,
            ..
        } => {
            let end = pb::StreamEnd {
                finish_reason,
                usage: Some(wire_usage(&meta)),
                meta: Some(wire_meta(&meta)),
            };
            (
                Ok(pb::CompleteChunk {
                    kind: Some(Kind::End(end)),
                }),
                true,
            )
        }
        EngineEvent::Failed(failure) => (Err(state.reject(ApiError::from(&failure))), true),
    };
    (Some(chunk), over)
}

/// The caller's W3C trace context, from `traceparent` and `tracestate` metadata.
fn caller_context(metadata: &tonic::metadata::MetadataMap) -> RemoteContext {
    let mut headers = http::HeaderMap::new();
    for name in [TRACEPARENT, TRACESTATE] {
        if let Some(Ok(value)) = metadata
            .get(name.as_str())
            .map(|v| http::HeaderValue::from_bytes(v.as_bytes()))
        {
            headers.insert(name, value);
        }
    }
    RemoteContext::from_headers(&headers)
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
/// The W3C trace id of the request's spans, as the HTTP edge names it.
const OTEL_TRACE_ID: &str = "x-switchyard-otel-trace-id";

/// A started request: its events, and the W3C trace id it belongs to.
type Started = (mpsc::Receiver<EngineEvent>, Option<String>);

impl InferenceApi {
    /// Authenticates, routes and admits the request, then starts it, within
    /// the request's span.
    async fn start(
        &self,
        req: Request<pb::CompleteRequest>,
        stream: bool,
    ) -> Result<Started, Status> {
        let caller = caller_context(req.metadata());
        let span = crate::spans::request(&caller);
        let started = self
            .start_in_span(req, stream, caller)
            .instrument(span.clone())
            .await;
        started.map_err(|e| {
            super::error::note_rejection(&span, &e);
            self.state.reject(e)
        })
    }

    async fn start_in_span(
        &self,
        req: Request<pb::CompleteRequest>,
        stream: bool,
        caller: RemoteContext,
    ) -> Result<Started, ApiError> {
        let (mut request, tools, grant) = from_grpc(&self.state, req, stream)?;
        request.trace_context = caller;
        let otel_trace_id = crate::spans::request_parsed(&tracing::Span::current(), &request);
        let (snapshot, plan) = self.state.route(&request)?;
        let admitted = self.state.admit(&grant, &snapshot, &request, &plan).await?;
        let events = self
            .state
            .engine
            .execute(snapshot, request, tools, plan, admitted.ticket);
        Ok((events, otel_trace_id))
    }
}

/// Adds the W3C trace id to a response's metadata.
fn with_otel_trace_id<T>(mut response: Response<T>, otel_trace_id: Option<&str>) -> Response<T> {
    if let Some(Ok(value)) = otel_trace_id.map(tonic::metadata::MetadataValue::try_from) {
        response.metadata_mut().insert(OTEL_TRACE_ID, value);
    }
    response
}

#[tonic::async_trait]
impl InferenceService for InferenceApi {
    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let (mut events, otel_trace_id) = self.start(req, false).await?;
        loop {
            match events.recv().await {
                Some(
                    EngineEvent::Answering { .. }
                    | EngineEvent::Delta(_)
                    | EngineEvent::ToolCall(_),
                ) => continue,
                Some(EngineEvent::Done {
                    content,
                    tool_calls,
                    finish_reason,
                    meta,
                }) => {
                    let response = Response::new(pb::CompleteResponse {
                        content,
                        tool_calls: tool_calls
                            .into_iter()
                            .map(|c| pb::ToolCall {
                                id: c.id,
                                name: c.name,
                                arguments_json: c.arguments,
                            })
                            .collect(),
                        finish_reason,
                        usage: Some(wire_usage(&meta)),
                        meta: Some(wire_meta(&meta)),
                    });
                    return Ok(with_otel_trace_id(response, otel_trace_id.as_deref()));
                }
                Some(EngineEvent::Failed(failure)) => {
                    return Err(self.state.reject(ApiError::from(&failure)));
                }
                None => return Err(self.state.reject(ApiError::Internal)),
            }
        }
    }

    type StreamCompleteStream = ChunkStream;

    async fn stream_complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let (mut events, otel_trace_id) = self.start(req, true).await?;
        // A failure before the first token is the call's status, not a stream item.
        let first = loop {
            match events.recv().await {
                Some(EngineEvent::Answering { .. }) => continue,
                Some(EngineEvent::Failed(failure)) if !failure.partial => {
                    return Err(self.state.reject(ApiError::from(&failure)));
                }
                Some(event) => break event,
                None => return Err(self.state.reject(ApiError::Internal)),
            }
        };
        let (first, over) = chunk_for(first, &self.state);
        let tail = futures::stream::unfold(
            (events, over, self.state.clone()),
            |(mut events, over, state): (mpsc::Receiver<EngineEvent>, bool, AppState)| async move {
                if over {
                    return None;
                }
                let (item, over) = chunk_for(events.recv().await?, &state);
                Some((item, (events, over, state)))
            },
        );
        let stream =
            futures::stream::iter(first).chain(tail.filter_map(|item| async move { item }));
        let response = Response::new(Box::pin(stream) as ChunkStream);
        Ok(with_otel_trace_id(response, otel_trace_id.as_deref()))
    }

    async fn route(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        let (request, _, _) =
            from_grpc(&self.state, req, false).map_err(|e| self.state.reject(e))?;
        let (snapshot, plan) = self
            .state
            .route(&request)
            .map_err(|e| self.state.reject(e))?;
        let (candidates, ineligible) = crate::plan_wire::candidates(&plan, &snapshot);
        Ok(Response::new(pb::RouteResponse {
            snapshot_version: snapshot.version(),
            estimated_input_tokens: request.workload.input_tokens,
            estimated_output_tokens: request.workload.output_tokens,
            candidates,
            ineligible,
            workload: Some(crate::plan_wire::workload(&request.workload)),
            fallback_chain: crate::plan_wire::chain(&plan, &snapshot),
            explanation: plan.explanation,
            strategy: plan.strategy,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: &str) -> pb::ChatMessage {
        pb::ChatMessage {
            role: role.into(),
            content: "hi".into(),
            ..Default::default()
        }
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let field =
            |req: pb::CompleteRequest| match to_chat_request(req, false).map(drop).unwrap_err() {
                ApiError::InvalidRequest { param, .. } => param,
                other => panic!("unexpected {other:?}"),
            };
        let ok = pb::CompleteRequest {
            model: "auto".into(),
            messages: vec![message("user")],
            ..Default::default()
        };
        assert!(to_chat_request(ok.clone(), false).is_ok());
        assert_eq!(
            field(pb::CompleteRequest {
                model: String::new(),
                ..ok.clone()
            })
            .as_deref(),
            Some("model")
        );
        assert_eq!(
            field(pb::CompleteRequest {
                messages: vec![],
                ..ok.clone()
            })
            .as_deref(),
            Some("messages")
        );
        assert_eq!(
            field(pb::CompleteRequest {
                messages: vec![message("user"), message("robot")],
                ..ok.clone()
            })
            .as_deref(),
            Some("messages[1].role")
        );
        assert_eq!(
            field(pb::CompleteRequest {
                temperature: Some(9.0),
                ..ok.clone()
            })
            .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            field(pb::CompleteRequest {
                workspace: "no spaces".into(),
                ..ok
            })
            .as_deref(),
            Some("workspace")
        );
    }

    #[test]
    fn tools_and_json_output_become_capability_needs() {
        let request = pb::CompleteRequest {
            model: "auto".into(),
            messages: vec![message("user")],
            tools: vec![pb::ToolDefinition {
                name: "lookup".into(),
                description: "Looks things up".into(),
                parameters_json: r#"{"type":"object","properties":{"q":{"type":"string"}}}"#.into(),
            }],
            json_output: true,
            ..Default::default()
        };
        let (chat, tools) = to_chat_request(request.clone(), false).unwrap();
        assert!(!tools.is_empty());
        assert!(chat.workload.capabilities.tools);
        assert!(chat.workload.capabilities.json_output);
        assert_eq!(
            chat.body["tools"][0]["function"]["parameters"]["properties"]["q"]["type"],
            "string"
        );

        let mut bad = request;
        bad.tools[0].parameters_json = "[1,2]".into();
        match to_chat_request(bad.clone(), false).map(drop).unwrap_err() {
            ApiError::InvalidRequest { param, .. } => {
                assert_eq!(param.as_deref(), Some("tools[0].parameters_json"))
            }
            other => panic!("unexpected {other:?}"),
        }
        bad.tools[0].name = "no spaces allowed".into();
        match to_chat_request(bad, false).map(drop).unwrap_err() {
            ApiError::InvalidRequest { param, .. } => {
                assert_eq!(param.as_deref(), Some("tools[0].name"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_shared_rules_name_the_grpc_fields() {
        let tool = |name: &str, parameters_json: &str| pb::ToolDefinition {
            name: name.into(),
            parameters_json: parameters_json.into(),
            ..Default::default()
        };
        let field = |req: pb::CompleteRequest| match to_chat_request(req, false).map(drop) {
            Err(ApiError::InvalidRequest { param, message }) => {
                assert!(message.starts_with(param.as_deref().unwrap()), "{message}");
                param
            }
            other => panic!("unexpected {other:?}"),
        };
        let ok = pb::CompleteRequest {
            model: "auto".into(),
            messages: vec![message("user")],
            ..Default::default()
        };
        let cases = [
            (
                pb::CompleteRequest {
                    tools: vec![tool("a", ""), tool("a", "")],
                    ..ok.clone()
                },
                "tools[1].name",
            ),
            (
                pb::CompleteRequest {
                    tools: vec![tool("a", r#"{"type":"objekt"}"#)],
                    ..ok.clone()
                },
                "tools[0].parameters_json",
            ),
            (
                pb::CompleteRequest {
                    messages: vec![message("user"), message("tool")],
                    ..ok.clone()
                },
                "messages[1].tool_call_id",
            ),
            (
                pb::CompleteRequest {
                    messages: vec![pb::ChatMessage {
                        tool_calls: vec![pb::ToolCall {
                            id: "call_1".into(),
                            name: "a".into(),
                            arguments_json: "{}".into(),
                        }],
                        ..message("user")
                    }],
                    ..ok.clone()
                },
                "messages[0].tool_calls",
            ),
            (
                pb::CompleteRequest {
                    messages: vec![message("user"); validation::MAX_MESSAGES + 1],
                    ..ok.clone()
                },
                "messages",
            ),
            (
                pb::CompleteRequest {
                    top_p: Some(1.5),
                    ..ok
                },
                "top_p",
            ),
        ];
        for (request, expected) in cases {
            assert_eq!(field(request).as_deref(), Some(expected));
        }
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_garbage_is_ignored() {
        let parse = |v: &'static str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert(
                "grpc-timeout",
                tonic::metadata::MetadataValue::from_static(v),
            );
            client_deadline(&m)
        };
        assert_eq!(parse("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1M"), Some(Duration::from_secs(60)));
        assert_eq!(parse("5000u"), Some(Duration::from_millis(5)));
        assert_eq!(parse("12x"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(client_deadline(&tonic::metadata::MetadataMap::new()), None);
    }
}
