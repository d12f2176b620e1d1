//! The request as `tracing` spans: one server span per request (a child of
//! the caller's `traceparent`), one client span per provider attempt, with
//! OpenTelemetry's GenAI attributes.
//!
//! The request span is always there, for the logs: request-scoped lines
//! carry its `request_id`, `trace_id` (W3C) and `switchyard.trace_id`. The
//! rest (attempt spans, attributes, statuses) only exists when spans are
//! exported: JSON logs re-serialize a span's fields on every record, which
//! would cost tens of microseconds per request for nobody.
//!
//! Spans carry ids, model names, token counts, cost and error classes only:
//! never keys, prompts, answers or provider URLs.

use opentelemetry::trace::Status;
use switchyard_domain::Target;
use switchyard_proto::v1 as pb;
use switchyard_telemetry::context;
use tracing::Span;
use tracing::field::{Empty, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
        request_id = Empty,
        trace_id = Empty,
        switchyard.trace_id = Empty,
    );
    caller.adopt(&span);
    span
}

/// What the request asked for, once it is parsed. Returns the OpenTelemetry
/// trace id it belongs to (the caller's, or this node's own when spans are
/// exported), for the response headers and the execution trace.
pub fn request_parsed(span: &Span, request: &ChatRequest) -> Option<String> {
    let trace_id = otel_trace_id(span, request);
    record_ids(span, request, trace_id.as_deref());
    if exporting(span) {
        span.record("otel.name", format!("{OPERATION} {}", request.model));
        span.set_attribute("gen_ai.operation.name", OPERATION);
        span.set_attribute("gen_ai.request.model", request.model.clone());
        span.set_attribute("switchyard.workspace", request.workspace.clone());
        if let Some(max) = request.max_tokens {
            span.set_attribute("gen_ai.request.max_tokens", i64::from(max));
        }
    }
    trace_id
}

/// The three ids in one record: each record makes the JSON log layer parse
/// and write the span's fields again.
fn record_ids(span: &Span, request: &ChatRequest, trace_id: Option<&str>) {
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let (Some(request_id), Some(w3c), Some(switchyard)) = (
        fields.field("request_id"),
        fields.field("trace_id"),
        fields.field("switchyard.trace_id"),
    ) else {
        return;
    };
    let values: [(&tracing::field::Field, Option<&dyn Value>); 3] = [
        (&request_id, Some(&request.request_id.as_str())),
        (&w3c, trace_id.as_ref().map(|t| t as &dyn Value)),
        (&switchyard, Some(&request.trace_id.as_str())),
    ];
    span.record_all(&fields.value_set(&values));
}

fn exporting(span: &Span) -> bool {
    !span.is_disabled() && switchyard_telemetry::exports_spans()
}

/// The OpenTelemetry trace id of `request`: its span's when spans are
/// exported, else the caller's, else none.
pub fn otel_trace_id(span: &Span, request: &ChatRequest) -> Option<String> {
    context::trace_id(span).or_else(|| request.trace_context.trace_id())
}

/// The request was turned away before it ran (bad input, no key, over a
/// limit, nowhere to go): `kind` is the error's low-cardinality name.
pub fn request_rejected(span: &Span, kind: &str, server_fault: bool) {
    if !exporting(span) {
        return;
    }
    span.set_attribute("switchyard.outcome", "rejected");
    span.set_attribute("error.type", kind.to_owned());
    // The caller's mistakes are not the server's errors (OpenTelemetry's HTTP conventions).
    if server_fault {
        span.set_status(Status::error(kind.to_owned()));
    }
}

/// The request's end, from its execution trace.
pub fn request_finished(span: &Span, trace: &pb::Trace) {
    if !exporting(span) {
        return;
    }
    let outcome = pb::Outcome::try_from(trace.outcome).unwrap_or(pb::Outcome::Unspecified);
    span.set_attribute(
        "switchyard.outcome",
        wire_name(outcome.as_str_name(), "OUTCOME_"),
    );
    span.set_attribute("switchyard.attempts", int(trace.attempts.len()));
    if !trace.final_target.is_empty() {
        span.set_attribute("switchyard.target_id", trace.final_target.clone());
        span.set_attribute("gen_ai.response.model", trace.final_model.clone());
        span.set_attribute("gen_ai.usage.input_tokens", int(trace.tokens_in));
        span.set_attribute("gen_ai.usage.output_tokens", int(trace.tokens_out));
        span.set_attribute("switchyard.cost_usd", trace.cost_usd);
    }
    if outcome != pb::Outcome::Success {
        let class = pb::ErrorClass::try_from(trace.error_class)
            .ok()
            .filter(|c| *c != pb::ErrorClass::Unspecified)
            .map_or_else(
                || "failed".to_owned(),
                |c| wire_name(c.as_str_name(), "ERROR_CLASS_"),
            );
        span.set_attribute("switchyard.error_class", class.clone());
        span.set_attribute("error.type", class);
        span.set_status(Status::error(trace.error_message.clone()));
    }
}

/// A count as OpenTelemetry's integer attribute.
fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// `ERROR_CLASS_RATE_LIMITED` as `rate_limited`, as the data plane names it elsewhere.
fn wire_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// The span of attempt `number` (1-based) of `request` on `target`, whose
/// provider is of `kind`; a child of the request's span. A disabled span
/// when spans are not exported.
pub fn attempt(
    parent: &Span,
    request: &ChatRequest,
    target: &Target,
    kind: &'static str,
    number: u32,
) -> Span {
    if !exporting(parent) {
        return Span::none();
    }
    let span = tracing::info_span!(
        parent: parent,
        "attempt",
        otel.name = format!("{OPERATION} {}", target.spec.name),
        otel.kind = "client",
        switchyard.target_id = target.id.as_str(),
        switchyard.attempt = i64::from(number),
    );
    span.set_attribute("gen_ai.operation.name", OPERATION);
    span.set_attribute("gen_ai.system", kind);
    span.set_attribute("gen_ai.provider.name", kind);
    span.set_attribute("gen_ai.request.model", target.spec.name.clone());
    span.set_attribute("switchyard.trace_id", request.trace_id.clone());
    if let Some(max) = request.max_tokens {
        span.set_attribute("gen_ai.request.max_tokens", i64::from(max));
    }
    span
}

pub fn attempt_hedged(span: &Span) {
    if !span.is_disabled() {
        span.set_attribute("switchyard.hedge", true);
    }
}

pub fn attempt_failed(span: &Span, error: &ProviderError) {
    if span.is_disabled() {
        return;
    }
    let class = error.class.as_str();
    span.set_attribute("switchyard.error_class", class);
    span.set_attribute("error.type", class);
    if error.http_status > 0 {
        span.set_attribute("http.response.status_code", i64::from(error.http_status));
    }
    span.set_status(Status::error(error.message.clone()));
}

/// The attempt answered (whole, or partly when a stream broke): what it
/// produced and cost.
pub fn attempt_answered(span: &Span, model: &str, usage: Usage, cost_usd: f64) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("gen_ai.response.model", model.to_owned());
    span.set_attribute("gen_ai.usage.input_tokens", int(usage.input_tokens));
    span.set_attribute("gen_ai.usage.output_tokens", int(usage.output_tokens));
    span.set_attribute("switchyard.cost_usd", cost_usd);
}
