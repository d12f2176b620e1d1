//! W3C trace context (`traceparent`, `tracestate`) in and out of HTTP
//! headers, and the OpenTelemetry ids of `tracing` spans.
//!
//! With span export on, a request span takes the caller's context as its
//! parent and outbound calls carry the span's own context. With export off
//! there is no span context; outbound calls then carry the caller's context
//! unchanged, so a trace passes through untouched.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A caller's trace context, as its headers gave it. Empty when it sent none
/// or sent one that does not parse.
#[derive(Debug, Clone, Default)]
pub struct RemoteContext {
    context: Option<opentelemetry::Context>,
}

impl RemoteContext {
    /// From `traceparent` and `tracestate`; anything malformed is ignored,
    /// as the W3C recommendation says.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let well_formed = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(well_formed);
        if !well_formed {
            return Self::default();
        }
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        Self::new(context)
    }

    fn new(context: opentelemetry::Context) -> Self {
        let valid = context.span().span_context().is_valid();
        Self {
            context: valid.then_some(context),
        }
    }

    fn span_context(&self) -> Option<SpanContext> {
        self.context
            .as_ref()
            .map(|c| c.span().span_context().clone())
    }

    /// The caller's trace id (32 hex digits).
    pub fn trace_id(&self) -> Option<String> {
        self.span_context().map(|c| c.trace_id().to_string())
    }

    /// The caller's span id (16 hex digits).
    pub fn span_id(&self) -> Option<String> {
        self.span_context().map(|c| c.span_id().to_string())
    }

    /// Makes `span` a child of the caller's span. Call before the span is
    /// first entered; a no-op when spans are not exported.
    pub fn adopt(&self, span: &tracing::Span) {
        if let Some(context) = &self.context {
            // Errors only when export is off or the span has started: both leave it as is.
            let _ = span.set_parent(context.clone());
        }
    }
}

const TRACEPARENT: &str = "traceparent";

/// `version-traceid-parentid-flags` with exactly 2, 32, 16 and 2 lowercase
/// hex digits (later versions may append fields). The SDK's parser takes
/// shorter ids, which the W3C format does not allow.
fn well_formed(traceparent: &str) -> bool {
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let mut parts = traceparent.trim().split('-');
    [2, 32, 16, 2]
        .iter()
        .all(|len| parts.next().is_some_and(|p| hex(p, *len)))
}

/// The trace id (32 hex digits) of `span`, when spans are exported.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Adds `traceparent` (and `tracestate`) for a call made within `span`: the
/// span's own context when spans are exported, else the caller's, else
/// nothing.
pub fn inject(span: &tracing::Span, caller: &RemoteContext, headers: &mut http::HeaderMap) {
    let own = span.context();
    let propagator = TraceContextPropagator::new();
    if own.span().span_context().is_valid() {
        propagator.inject_context(&own, &mut HeaderInjector(headers));
    } else if let Some(context) = &caller.context {
        propagator.inject_context(context, &mut HeaderInjector(headers));
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        headers
    }

    #[test]
    fn a_valid_traceparent_is_read() {
        let remote = RemoteContext::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "a=b"),
        ]));
        assert_eq!(
            remote.trace_id().as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(remote.span_id().as_deref(), Some("00f067aa0ba902b7"));
    }

    #[test]
    fn malformed_or_missing_traceparents_are_ignored() {
        for value in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let remote = RemoteContext::from_headers(&headers(&[("traceparent", value)]));
            assert!(remote.trace_id().is_none(), "{value:?}");
        }
        assert!(
            RemoteContext::from_headers(&http::HeaderMap::new())
                .trace_id()
                .is_none()
        );
    }

    #[test]
    fn without_export_the_callers_context_passes_through() {
        let remote = RemoteContext::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "a=b"),
        ]));
        let mut out = http::HeaderMap::new();
        inject(&tracing::Span::none(), &remote, &mut out);
        assert_eq!(
            out.get("traceparent").and_then(|v| v.to_str().ok()),
            Some(PARENT)
        );
        assert_eq!(
            out.get("tracestate").and_then(|v| v.to_str().ok()),
            Some("a=b")
        );
        let mut none = http::HeaderMap::new();
        inject(&tracing::Span::none(), &RemoteContext::default(), &mut none);
        assert!(none.is_empty());
    }
}
