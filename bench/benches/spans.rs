//! What a request's spans cost: the request span (with the caller's
//! `traceparent`), its fields once parsed, one attempt span entered for the
//! provider call with `traceparent` written for it, the answer's attributes
//! and the request's end, exactly the calls a data plane makes per request.
//! Under four subscribers: none; JSON logs at `warn` (the gateway
//! benchmark's setting, spans filtered out); JSON logs at `info` (the
//! default: export off, the request span's ids in every request-scoped
//! line); and JSON logs at `info` plus the OpenTelemetry bridge recording
//! every span and attribute (export on, without the network). Run: `cargo bench -p switchyard-bench --bench spans`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup: a failure is a broken benchmark"
)]

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use switchyard_data_plane::providers::Usage;
use switchyard_data_plane::request::{ChatRequest, Received};
use switchyard_data_plane::spans;
use switchyard_data_plane::workload::{
    Intent, RequiredCapabilities, Source, TimeoutProfile, WorkloadProfile,
};
use switchyard_domain::{ModelSpec, Target};
use switchyard_proto::v1 as pb;
use switchyard_telemetry::context::{self, RemoteContext};
use tracing_subscriber::layer::SubscriberExt as _;

fn headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    headers
}

fn request() -> ChatRequest {
    ChatRequest {
        replay_of: None,
        trace_context: RemoteContext::default(),
        received: Received::now(),
        request_id: "0195d3c8-7a4e-7d1a-9f3b-2c5e8a1b4d6f".into(),
        trace_id: "0195d3c8-7a4e-7d1a-9f3b-2c5e8a1b4d70".into(),
        workspace: "default".into(),
        model: "mock-model".into(),
        strategy: None,
        stream: false,
        max_tokens: Some(256),
        body: serde_json::Map::new(),
        workload: WorkloadProfile {
            intent: Intent::Chat,
            intent_source: Source::Classified,
            input_tokens: 12,
            output_tokens: 256,
            capabilities: RequiredCapabilities::default(),
            timeout: TimeoutProfile::Standard,
            timeout_source: Source::Classified,
            intent_reason: "chat".into(),
        },
    }
}

fn target() -> Target {
    let spec: ModelSpec = serde_json::from_value(serde_json::json!({
        "provider": "mock", "name": "mock-model", "family": "mock",
        "context_window": 100000, "input_price_per_mtok": 1.0,
        "output_price_per_mtok": 2.0, "tier": "standard",
    }))
    .unwrap();
    Target {
        id: spec.target_id(),
        spec,
    }
}

/// One request's span work, start to end.
fn one_request(headers: &http::HeaderMap, template: &ChatRequest, target: &Target) {
    let caller = RemoteContext::from_headers(headers);
    let span = spans::request(&caller);
    let _entered = span.enter();
    let mut request = template.clone();
    request.trace_context = caller;
    let otel_trace_id = spans::request_parsed(&span, &request);
    let attempt = spans::attempt(&span, &request, target, "openai", 1);
    {
        let _call = attempt.enter();
        let mut out = http::HeaderMap::new();
        context::inject(&tracing::Span::current(), &request.trace_context, &mut out);
        std::hint::black_box(out);
    }
    let usage = Usage {
        input_tokens: 12,
        output_tokens: 5,
    };
    spans::attempt_answered(&attempt, "mock-model", usage, 0.000_022);
    drop(attempt);
    let trace = pb::Trace {
        outcome: pb::Outcome::Success.into(),
        final_target: target.id.clone(),
        final_model: "mock-model".into(),
        tokens_in: 12,
        tokens_out: 5,
        cost_usd: 0.000_022,
        otel_trace_id: otel_trace_id.unwrap_or_default(),
        ..Default::default()
    };
    spans::request_finished(&span, &trace);
}

fn json_logs(
    filter: &str,
) -> impl tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a> {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::sink)
        .finish()
}

fn request_spans(c: &mut Criterion) {
    let (headers, template, target) = (headers(), request(), target());
    let mut group = c.benchmark_group("request_spans");
    group.bench_function("no_subscriber", |b| {
        b.iter(|| one_request(&headers, &template, &target));
    });
    tracing::subscriber::with_default(json_logs("warn"), || {
        group.bench_function("json_logs_warn", |b| {
            b.iter(|| one_request(&headers, &template, &target));
        });
    });
    tracing::subscriber::with_default(json_logs("info"), || {
        group.bench_function("json_logs_info", |b| {
            b.iter(|| one_request(&headers, &template, &target));
        });
    });
    // Every span sampled and recorded; no processor, so nothing is sent.
    switchyard_telemetry::assume_exporting_spans();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    tracing::subscriber::with_default(json_logs("info").with(otel), || {
        group.bench_function("json_logs_info_and_otel", |b| {
            b.iter(|| one_request(&headers, &template, &target));
        });
    });
    group.finish();
}

criterion_group!(benches, request_spans);
criterion_main!(benches);
