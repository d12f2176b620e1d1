//! Active probes: a one-token request to each target the snapshot marks
//! `probe` (no recent traffic, or ejected), so the fleet notices recovery
//! without sending client traffic into a failing target. The snapshot's probe
//! interval is already scaled by the number of data planes, so the fleet as a
//! whole probes a target about once per configured interval; each node adds
//! ±20 % jitter so probes do not arrive together. Results join this node's
//! health windows, marked as probes.
//!
//! A target whose breaker on this node is half-open is probed too, holding
//! the breaker's probe lease: scoring ranks a half-open target lower, so
//! client traffic alone might never try it and it would stay half-open.
//! Every probe's result goes to this node's breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Sample;
use crate::breaker::{self, Breakers};
use crate::request::{ChatRequest, DEFAULT_WORKSPACE, Received};
use crate::snapshot::SnapshotCell;
use crate::workload::{Intent, RequiredCapabilities, Source, TimeoutProfile, WorkloadProfile};

const TICK: Duration = Duration::from_secs(1);
/// A probe waits no longer than this for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Prober {
    pub cell: SnapshotCell,
    pub client: reqwest::Client,
    pub samples: mpsc::Sender<Sample>,
    pub breakers: Arc<Breakers>,
}

fn probe_request(model: &str) -> ChatRequest {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.to_owned()));
    body.insert(
        "messages".into(),
        json!([{ "role": "user", "content": "ping" }]),
    );
    body.insert("max_tokens".into(), json!(1));
    let id = uuid::Uuid::now_v7().to_string();
    ChatRequest {
        received: Received::now(),
        request_id: format!("probe-{id}"),
        trace_id: id,
        workspace: DEFAULT_WORKSPACE.into(),
        model: model.to_owned(),
        strategy: None,
        stream: false,
        max_tokens: Some(1),
        body,
        workload: WorkloadProfile {
            intent: Intent::Chat,
            intent_source: Source::Classified,
            input_tokens: 8,
            output_tokens: 1,
            capabilities: RequiredCapabilities::default(),
            timeout: TimeoutProfile::Fast,
            timeout_source: Source::Classified,
            intent_reason: "probe".into(),
        },
    }
}

impl Prober {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next_due: HashMap<String, i64> = HashMap::new();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let Some(snapshot) = self.cell.load_full() else {
                continue;
            };
            let telemetry = &snapshot.routing.telemetry;
            let interval = i64::try_from(telemetry.probe_interval_ms).unwrap_or(i64::MAX);
            let now = Received::now().unix_ms;
            let circuits = self.breakers.view();
            let mut due = Vec::new();
            for target in &snapshot.routing.targets {
                if circuits.state(&target.id, now) == breaker::State::HalfOpen {
                    // The lease makes this the breaker's one probe.
                    if self.breakers.admit(&target.id, now) {
                        due.push(target);
                    }
                    continue;
                }
                let marked =
                    interval > 0 && telemetry.fresh(&target.id, now).is_some_and(|t| t.probe);
                if !marked {
                    next_due.remove(&target.id);
                    continue;
                }
                let mut rng = rand::rng();
                // A target newly marked waits a random share of the interval, so nodes spread out.
                let at = *next_due
                    .entry(target.id.clone())
                    .or_insert_with(|| now + rng.random_range(0..=interval));
                if now >= at {
                    let jittered = (interval as f64 * rng.random_range(0.8..1.2)) as i64;
                    next_due.insert(target.id.clone(), now + jittered);
                    due.push(target);
                }
            }
            for target in due {
                let Some(endpoint) = snapshot.endpoints.get(&target.spec.provider) else {
                    continue;
                };
                if endpoint.unavailable_reason().is_some() {
                    continue;
                }
                let probe = Probe {
                    client: self.client.clone(),
                    samples: self.samples.clone(),
                    breakers: self.breakers.clone(),
                    endpoint: endpoint.clone(),
                    target_id: target.id.clone(),
                    model: target.spec.name.clone(),
                };
                tokio::spawn(probe.run());
            }
        }
    }
}

/// One probe request and where its result goes.
struct Probe {
    client: reqwest::Client,
    samples: mpsc::Sender<Sample>,
    breakers: Arc<Breakers>,
    endpoint: crate::providers::Endpoint,
    target_id: String,
    model: String,
}

impl Probe {
    async fn run(self) {
        let request = probe_request(&self.model);
        let started = std::time::Instant::now();
        let result = self
            .endpoint
            .complete(&self.client, &request, &self.model, PROBE_TIMEOUT)
            .await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let error_class = match &result {
            Ok(_) => {
                self.breakers.probe_succeeded(&self.target_id);
                None
            }
            Err(e) => {
                tracing::info!(target = %self.target_id, class = e.class.as_str(), error = %e.message, "probe failed");
                if e.class.trips_breaker() {
                    self.breakers
                        .failure(&self.target_id, Received::now().unix_ms);
                }
                Some(switchyard_proto::v1::ErrorClass::from(e.class) as i32)
            }
        };
        let sample = Sample {
            target_id: self.target_id,
            error_class,
            latency_ms,
            ttft_ms: 0.0,
            tpot_ms: 0.0,
            retry: false,
            probe: true,
            retry_after_until_ms: 0,
        };
        let _ = self.samples.try_send(sample);
    }
}
