//! OpenTelemetry end to end: a data plane exporting spans over OTLP/gRPC to a
//! collector in this test. A client's `traceparent` (HTTP header or gRPC
//! metadata) becomes the parent of the request's server span; each provider
//! attempt is a client span under it with the GenAI attributes, and its
//! context is what the provider receives; the stored execution trace and the
//! response name the W3C trace id; buffered spans are flushed on shutdown;
//! log lines carry the request's ids; no key or prompt leaks into a span.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is a failed test"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::json;
use support::{API_KEY, ControlPlane, DataPlane, MOCK_KEY, http_client, registry_yaml};
use switchyard_proto::v1 as pb;
use switchyard_testkit::{Behavior, MockProvider};
use tokio::sync::Mutex;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// A prompt that must never appear in a span.
const PROMPT: &str = "a private prompt: zebra-quartz-7781";

/// One exported span, flattened with its resource's service name.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: opentelemetry_proto::tonic::trace::v1::Span,
}

impl Exported {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    fn attr(&self, key: &str) -> Option<&AnyValue> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }
    fn str_attr(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            AnyValue::StringValue(s) => Some(s),
            _ => None,
        }
    }
    fn int_attr(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            AnyValue::IntValue(n) => Some(*n),
            _ => None,
        }
    }
    fn f64_attr(&self, key: &str) -> Option<f64> {
        match self.attr(key)? {
            AnyValue::DoubleValue(x) => Some(*x),
            _ => None,
        }
    }
    fn is_error(&self) -> bool {
        self.span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/gRPC trace receiver on loopback, keeping every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().await;
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free loopback port; returns the endpoint to export to.
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        format!("http://{addr}")
    }

    async fn all(&self) -> Vec<Exported> {
        self.spans.lock().await.clone()
    }

    /// The spans of W3C trace `trace_id`, once `done` says they are all
    /// there; polls for at most `within`.
    async fn wait_for(
        &self,
        trace_id: &str,
        within: Duration,
        done: impl Fn(&[Exported]) -> bool,
    ) -> Vec<Exported> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans: Vec<Exported> = self
                .all()
                .await
                .into_iter()
                .filter(|s| s.trace_id() == trace_id)
                .collect();
            if done(&spans) {
                return spans;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("spans of trace {trace_id} incomplete after {within:?}: {spans:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn server_span(spans: &[Exported]) -> Option<&Exported> {
    spans
        .iter()
        .find(|s| s.span.kind == SpanKind::Server as i32)
}

fn attempt_spans(spans: &[Exported]) -> Vec<&Exported> {
    let mut attempts: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.span.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.int_attr("switchyard.attempt"));
    attempts
}

/// Parent span id and trace id of a `traceparent` value.
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// A data plane with `envs`, and its state directory (removed when dropped).
async fn data_plane(
    cp: &ControlPlane,
    envs: &[(&'static str, String)],
) -> (DataPlane, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let dp = DataPlane::start_on(&[cp], "otel-dp", state.path(), envs)
        .await
        .unwrap();
    (dp, state)
}

#[tokio::test]
async fn a_clients_traceparent_reaches_the_spans_the_provider_and_the_stored_trace() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let provider = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("mock", &provider.base_url())]))
        .await
        .unwrap();
    let (dp, _state) = data_plane(
        &cp,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_SERVICE_NAME", "dp-under-test".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("SWITCHYARD_LOG_FORMAT", "json".to_owned()),
        ],
    )
    .await;

    // The first attempt fails (retried on the same target), the second answers.
    provider.push(Behavior::Status {
        status: 503,
        message: "overloaded".into(),
        retry_after_secs: None,
    });
    let response = http_client()
        .post(dp.chat_url())
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=opaque")
        .json(&json!({
            "model": "mock-model",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": PROMPT}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("x-switchyard-otel-trace-id").as_deref(),
        Some(CLIENT_TRACE)
    );
    let trace_id = header("x-switchyard-trace-id").unwrap();
    let request_id = header("x-request-id").unwrap();

    let spans = collector
        .wait_for(CLIENT_TRACE, Duration::from_secs(15), |spans| {
            server_span(spans).is_some() && attempt_spans(spans).len() == 2
        })
        .await;

    // The request's span: a server span, the client's span its parent.
    let request = server_span(&spans).unwrap();
    assert_eq!(request.service, "dp-under-test");
    assert_eq!(request.parent_span_id(), CLIENT_SPAN);
    assert_eq!(
        request.str_attr("switchyard.trace_id"),
        Some(trace_id.as_str())
    );
    assert_eq!(request.str_attr("request_id"), Some(request_id.as_str()));
    assert_eq!(request.str_attr("gen_ai.operation.name"), Some("chat"));
    assert_eq!(request.str_attr("gen_ai.request.model"), Some("mock-model"));
    assert_eq!(request.int_attr("gen_ai.request.max_tokens"), Some(64));
    assert_eq!(
        request.str_attr("gen_ai.response.model"),
        Some("mock-model")
    );
    assert_eq!(request.int_attr("switchyard.attempts"), Some(2));
    assert!(!request.is_error(), "{request:#?}");

    // Two attempts under it: the failed one marked as an error, the second
    // with the answer's tokens and cost.
    let attempts = attempt_spans(&spans);
    let (failed, answered) = (attempts[0], attempts[1]);
    for (number, attempt) in [(1, failed), (2, answered)] {
        assert_eq!(attempt.parent_span_id(), request.span_id());
        assert_eq!(attempt.int_attr("switchyard.attempt"), Some(number));
        assert_eq!(attempt.str_attr("gen_ai.operation.name"), Some("chat"));
        assert_eq!(attempt.str_attr("gen_ai.provider.name"), Some("openai"));
        assert_eq!(attempt.str_attr("gen_ai.system"), Some("openai"));
        assert_eq!(attempt.str_attr("gen_ai.request.model"), Some("mock-model"));
        assert_eq!(attempt.int_attr("gen_ai.request.max_tokens"), Some(64));
        assert_eq!(
            attempt.str_attr("switchyard.target_id"),
            Some("mock/mock-model")
        );
        assert_eq!(
            attempt.str_attr("switchyard.trace_id"),
            Some(trace_id.as_str())
        );
    }
    assert!(failed.is_error(), "{failed:#?}");
    assert_eq!(failed.str_attr("switchyard.error_class"), Some("transient"));
    assert_eq!(failed.str_attr("error.type"), Some("transient"));
    assert_eq!(failed.int_attr("http.response.status_code"), Some(503));
    assert!(!answered.is_error(), "{answered:#?}");
    assert_eq!(
        answered.str_attr("gen_ai.response.model"),
        Some("mock-model")
    );
    let input = answered.int_attr("gen_ai.usage.input_tokens").unwrap();
    let output = answered.int_attr("gen_ai.usage.output_tokens").unwrap();
    assert!(input > 0 && output > 0, "{input} {output}");
    let cost = answered.f64_attr("switchyard.cost_usd").unwrap();
    assert!(cost > 0.0, "{cost}");
    assert_eq!(request.int_attr("gen_ai.usage.input_tokens"), Some(input));
    assert_eq!(request.int_attr("gen_ai.usage.output_tokens"), Some(output));
    assert_eq!(request.f64_attr("switchyard.cost_usd"), Some(cost));

    // The provider saw each attempt's own span as its parent, in the client's trace.
    let received = provider.requests();
    assert_eq!(received.len(), 2);
    for (got, attempt) in received.iter().zip([failed, answered]) {
        let (trace, parent) = parse_traceparent(got.header("traceparent").unwrap());
        assert_eq!(trace, CLIENT_TRACE);
        assert_eq!(parent, attempt.span_id());
        assert_eq!(got.header("tracestate"), Some("vendor=opaque"));
    }

    // The stored execution trace names the W3C trace.
    let stored = cp.wait_for_trace(&trace_id).await;
    assert_eq!(stored.otel_trace_id, CLIENT_TRACE);

    // No key and no prompt in any span.
    let everything = format!("{:?}", collector.all().await);
    for secret in [MOCK_KEY, API_KEY, PROMPT] {
        assert!(!everything.contains(secret), "{secret} leaked into a span");
    }

    // Log lines within the request carry its ids.
    let logs = dp.process.log_text();
    let line = logs
        .lines()
        .find(|l| l.contains("attempt failed"))
        .unwrap_or_else(|| panic!("no attempt failure logged:\n{logs}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &line["span"];
    assert_eq!(span["request_id"], request_id.as_str(), "{line}");
    assert_eq!(span["switchyard.trace_id"], trace_id.as_str(), "{line}");
    assert_eq!(span["trace_id"], CLIENT_TRACE, "{line}");
    assert!(!logs.contains(PROMPT) && !logs.contains(MOCK_KEY));
}

#[tokio::test]
async fn grpc_metadata_carries_the_trace_and_spans_are_flushed_on_shutdown() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let provider = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("mock", &provider.base_url())]))
        .await
        .unwrap();
    // Batches are due only after an hour: the spans can arrive only by the
    // flush at shutdown.
    let (mut dp, _state) = data_plane(
        &cp,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000".to_owned()),
        ],
    )
    .await;

    let mut request = tonic::Request::new(pb::CompleteRequest {
        model: "mock-model".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: PROMPT.into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let response = dp.inference().await.complete(request).await.unwrap();
    assert_eq!(
        response
            .metadata()
            .get("x-switchyard-otel-trace-id")
            .and_then(|v| v.to_str().ok()),
        Some(CLIENT_TRACE)
    );
    let trace_id = response.into_inner().meta.unwrap().trace_id;
    let got = provider.requests();
    let (trace, _) = parse_traceparent(got[0].header("traceparent").unwrap());
    assert_eq!(trace, CLIENT_TRACE);
    assert!(
        collector.all().await.is_empty(),
        "spans were exported before the batch was due"
    );

    let status = dp.process.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let spans = collector
        .wait_for(CLIENT_TRACE, Duration::from_secs(5), |spans| {
            server_span(spans).is_some() && attempt_spans(spans).len() == 1
        })
        .await;
    let request = server_span(&spans).unwrap();
    assert_eq!(request.parent_span_id(), CLIENT_SPAN);
    assert_eq!(request.service, "switchyard-data-plane");
    assert_eq!(
        request.str_attr("switchyard.trace_id"),
        Some(trace_id.as_str())
    );
    let attempt = attempt_spans(&spans)[0];
    assert_eq!(attempt.parent_span_id(), request.span_id());
    assert_eq!(
        parse_traceparent(got[0].header("traceparent").unwrap()).1,
        attempt.span_id()
    );
    assert_eq!(
        cp.wait_for_trace(&trace_id).await.otel_trace_id,
        CLIENT_TRACE
    );
}

#[tokio::test]
async fn without_an_exporter_the_callers_trace_passes_through() {
    let provider = MockProvider::start().await.unwrap();
    let cp = ControlPlane::start(&registry_yaml(&[("mock", &provider.base_url())]))
        .await
        .unwrap();
    let dp = DataPlane::start(&cp).await.unwrap();
    let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = http_client()
        .post(dp.chat_url())
        .header("traceparent", &parent)
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = response.headers()["x-switchyard-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.headers()["x-switchyard-otel-trace-id"],
        CLIENT_TRACE
    );
    assert_eq!(
        provider.requests()[0].header("traceparent"),
        Some(parent.as_str())
    );
    assert_eq!(
        cp.wait_for_trace(&trace_id).await.otel_trace_id,
        CLIENT_TRACE
    );

    // A request without a traceparent has no W3C trace to name.
    let response = http_client()
        .post(dp.chat_url())
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("x-switchyard-otel-trace-id")
            .is_none()
    );
    assert!(provider.requests()[1].header("traceparent").is_none());
}
