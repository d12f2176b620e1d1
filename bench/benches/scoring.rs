//! Scoring one request against 10, 100 and 1,000 targets: filter, five
//! dimensions (with fresh fleet telemetry for every target), strategy weights,
//! the diverse fallback chain and the explanation, exactly as a data plane does
//! per request. Run: `cargo bench -p switchyard-bench --bench scoring`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark setup: a failure is a broken benchmark"
)]

use std::collections::BTreeMap;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_data_plane::breaker::Breakers;
use switchyard_data_plane::health::LocalSignals;
use switchyard_data_plane::request::{ChatRequest, Received};
use switchyard_data_plane::scoring;
use switchyard_data_plane::snapshot::LiveSnapshot;
use switchyard_data_plane::workload::{
    Intent, RequiredCapabilities, Source, TimeoutProfile, WorkloadProfile,
};
use switchyard_domain::{
    Capabilities, ModelSpec, ProviderKind, ProviderSpec, RoutingSnapshot, TargetTelemetry,
    Telemetry, Tier, builtin_strategies, confidence,
};

const PROVIDERS: usize = 8;

/// `n` targets over eight providers, all serving the alias "chat"; one in ten
/// too small for the request and one in ten without tools, so filtering is
/// exercised too.
fn snapshot(n: usize) -> LiveSnapshot {
    let providers = (0..PROVIDERS)
        .map(|p| ProviderSpec {
            name: format!("p{p}"),
            kind: ProviderKind::Openai,
            base_url: format!("http://127.0.0.1:9/v{p}"),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: None,
        })
        .collect();
    let tiers = [Tier::Economy, Tier::Standard, Tier::Frontier];
    let models = (0..n)
        .map(|i| ModelSpec {
            provider: format!("p{}", i % PROVIDERS),
            name: format!("model-{i}"),
            family: format!("family-{}", i % 13),
            capabilities: Capabilities {
                streaming: true,
                tools: i % 10 != 3,
                vision: false,
                json_output: true,
            },
            context_window: if i % 10 == 7 { 4_000 } else { 128_000 },
            input_price_per_mtok: 0.1 + (i % 17) as f64 * 0.3,
            output_price_per_mtok: 0.4 + (i % 19) as f64 * 1.1,
            region: format!("region-{}", i % 3),
            tier: tiers[i % 3],
            aliases: vec!["chat".into()],
            enabled: true,
            circuit: switchyard_domain::CircuitMode::Auto,
        })
        .collect();
    let routing = RoutingSnapshot::new(
        1,
        0,
        0,
        providers,
        models,
        builtin_strategies(),
        "balanced".into(),
    )
    .unwrap();
    // Fresh fleet telemetry for every target, as in a busy production fleet.
    let targets = routing
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let telemetry = TargetTelemetry {
                target_id: t.id.clone(),
                attempts: 50 + i as u64,
                success_rate: 0.9,
                error_rate: 0.1,
                rate_limited_rate: 0.02,
                retry_rate: 0.05,
                latency_p50_ms: 400.0 + i as f64,
                latency_p99_ms: 2_000.0,
                ttft_p50_ms: 150.0,
                ttft_p95_ms: 300.0,
                latency_p95_ms: 1500.0,
                confidence: confidence(50 + i as u64),
                strategies: vec![],
                ..Default::default()
            };
            (t.id.clone(), telemetry)
        })
        .collect();
    let telemetry = Telemetry {
        targets,
        computed_at_ms: Received::now().unix_ms,
        stale_after_ms: 3_600_000,
        probe_interval_ms: 0,
        data_planes: 1,
    };
    LiveSnapshot::prepare(routing.with_telemetry(telemetry))
}

fn request() -> ChatRequest {
    ChatRequest {
        replay_of: None,
        trace_context: Default::default(),
        received: Received::now(),
        request_id: "bench".into(),
        trace_id: "bench".into(),
        workspace: "default".into(),
        model: "chat".into(),
        strategy: None,
        stream: false,
        max_tokens: Some(512),
        body: serde_json::Map::new(),
        workload: WorkloadProfile {
            intent: Intent::Coding,
            intent_source: Source::Classified,
            input_tokens: 6_000,
            output_tokens: 512,
            capabilities: RequiredCapabilities {
                tools: true,
                ..RequiredCapabilities::default()
            },
            timeout: TimeoutProfile::Standard,
            timeout_source: Source::Classified,
            intent_reason: "coding: bench".into(),
        },
    }
}

fn scoring(c: &mut Criterion) {
    let request = request();
    let mut group = c.benchmark_group("score_one_request");
    for n in [10, 100, 1_000] {
        let snapshot = snapshot(n);
        let breakers = Breakers::default();
        let signals = LocalSignals::default();
        let plan = scoring::plan(&snapshot, &request, 3, &breakers, &signals).unwrap();
        assert_eq!(plan.chain.len(), 3, "every size must yield a full chain");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &snapshot, |b, snapshot| {
            b.iter(|| {
                scoring::plan(
                    std::hint::black_box(snapshot),
                    std::hint::black_box(&request),
                    3,
                    &breakers,
                    &signals,
                )
                .unwrap()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
