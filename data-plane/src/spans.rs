//! The request as `tracing` spans: one server span per request (a child of
//! the caller's `traceparent`), one client span per provider attempt, with
//! OpenTelemetry's GenAI attributes. Exported over OTLP when configured; in
//! the logs either way, so request-scoped lines carry the request and trace
//! ids.
//!
//! Spans carry ids, model names, token counts, cost and error classes only:
//! never keys, prompts, answers or provider URLs.

use switchyard_domain::Target;
use switchyard_proto::v1 as pb;
use switchyard_telemetry::context;
use tracing::Span;
use tracing::field::Empty;

use crate::providers::{ProviderError, Usage};
use crate::request::ChatRequest;

const OPERATION: &str = "chat";

/// The span of one request, opened as it arrives; its caller's context
/// (`traceparent`) is `caller`.
pub fn request(caller: &context::RemoteContext) -> Span {
    let span = tracing::info_span!(
        "request",
        otel.name = OPERATION,
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        request_id = Empty,
        trace_id = Empty,
        switchyard.trace_id = Empty,
        switchyard.workspace = Empty,
        gen_ai.operation.name = OPERATION,
        gen_ai.request.model = Empty,
        gen_ai.request.max_tokens = Empty,
        gen_ai.response.model = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        switchyard.target_id = Empty,
        switchyard.attempts = Empty,
        switchyard.outcome = Empty,
        switchyard.error_class = Empty,
        switchyard.cost_usd = Empty,
        "error.type" = Empty,
    );
    caller.adopt(&span);
    span
}

/// What the request asked for, once it is parsed. Returns the OpenTelemetry
/// trace id it belongs to (the caller's, or this node's own when spans are
/// exported), for the response headers and the execution trace.
pub fn request_parsed(span: &Span, request: &ChatRequest) -> Option<String> {
    let trace_id = otel_trace_id(span, request);
    if span.is_disabled() {
        return trace_id;
    }
    span.record("otel.name", format!("{OPERATION} {}", request.model));
    span.record("request_id", request.request_id.as_str());
    if let Some(id) = &trace_id {
        span.record("trace_id", id.as_str());
    }
    span.record("switchyard.trace_id", request.trace_id.as_str());
    span.record("switchyard.workspace", request.workspace.as_str());
    span.record("gen_ai.request.model", request.model.as_str());
    if let Some(max) = request.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(max));
    }
    trace_id
}

/// The OpenTelemetry trace id of `request`: its span's when spans are
/// exported, else the caller's, else none.
pub fn otel_trace_id(span: &Span, request: &ChatRequest) -> Option<String> {
    context::trace_id(span).or_else(|| request.trace_context.trace_id())
}

/// The request was turned away before it ran (bad input, no key, over a
/// limit, nowhere to go): `kind` is the error's low-cardinality name.
pub fn request_rejected(span: &Span, kind: &str, server_fault: bool) {
    if span.is_disabled() {
        return;
    }
    span.record("switchyard.outcome", "rejected");
    span.record("error.type", kind);
    // The caller's mistakes are not the server's errors (OpenTelemetry's HTTP conventions).
    if server_fault {
        span.record("otel.status_code", "error");
    }
}

/// The request's end, from its execution trace.
pub fn request_finished(span: &Span, trace: &pb::Trace) {
    if span.is_disabled() {
        return;
    }
    let outcome = pb::Outcome::try_from(trace.outcome).unwrap_or(pb::Outcome::Unspecified);
    span.record(
        "switchyard.outcome",
        wire_name(outcome.as_str_name(), "OUTCOME_").as_str(),
    );
    span.record("switchyard.attempts", int(trace.attempts.len()));
    if !trace.final_target.is_empty() {
        span.record("switchyard.target_id", trace.final_target.as_str());
        span.record("gen_ai.response.model", trace.final_model.as_str());
        span.record("gen_ai.usage.input_tokens", int(trace.tokens_in));
        span.record("gen_ai.usage.output_tokens", int(trace.tokens_out));
        span.record("switchyard.cost_usd", trace.cost_usd);
    }
    if outcome != pb::Outcome::Success {
        let class = pb::ErrorClass::try_from(trace.error_class)
            .ok()
            .filter(|c| *c != pb::ErrorClass::Unspecified)
            .map_or_else(
                || "failed".to_owned(),
                |c| wire_name(c.as_str_name(), "ERROR_CLASS_"),
            );
        span.record("switchyard.error_class", class.as_str());
        span.record("error.type", class.as_str());
        span.record("otel.status_code", "error");
        span.record("otel.status_description", trace.error_message.as_str());
    }
}

/// A count as OpenTelemetry's integer attribute: the bridge exports
/// unsigned integers as strings.
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// `ERROR_CLASS_RATE_LIMITED` as `rate_limited`, as the data plane names it elsewhere.
fn wire_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// The span of attempt `number` (1-based) of `request` on `target`, whose
/// provider is of `kind`; a child of the request's span.
pub fn attempt(
    parent: &Span,
    request: &ChatRequest,
    target: &Target,
    kind: &str,
    number: u32,
) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        parent: parent,
        "attempt",
        otel.name = format!("{OPERATION} {}", target.spec.name),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        gen_ai.operation.name = OPERATION,
        gen_ai.system = kind,
        gen_ai.provider.name = kind,
        gen_ai.request.model = target.spec.name.as_str(),
        gen_ai.request.max_tokens = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        switchyard.trace_id = request.trace_id.as_str(),
        switchyard.target_id = target.id.as_str(),
        switchyard.attempt = i64::from(number),
        switchyard.hedge = Empty,
        switchyard.error_class = Empty,
        switchyard.cost_usd = Empty,
        http.response.status_code = Empty,
        "error.type" = Empty,
    );
    if let Some(max) = request.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(max));
    }
    span
}

pub fn attempt_hedged(span: &Span) {
    span.record("switchyard.hedge", true);
}

pub fn attempt_failed(span: &Span, error: &ProviderError) {
    if span.is_disabled() {
        return;
    }
    let class = error.class.as_str();
    span.record("switchyard.error_class", class);
    span.record("error.type", class);
    if error.http_status > 0 {
        span.record("http.response.status_code", i64::from(error.http_status));
    }
    span.record("otel.status_code", "error");
    span.record("otel.status_description", error.message.as_str());
}

/// The attempt answered (whole, or partly when a stream broke): what it
/// produced and cost.
pub fn attempt_answered(span: &Span, model: &str, usage: Usage, cost_usd: f64) {
    if span.is_disabled() {
        return;
    }
    span.record("gen_ai.response.model", model);
    span.record("gen_ai.usage.input_tokens", int(usage.input_tokens));
    span.record("gen_ai.usage.output_tokens", int(usage.output_tokens));
    span.record("switchyard.cost_usd", cost_usd);
}
