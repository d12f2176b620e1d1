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
//! client traffic alone might never try it and it would stay half-open. Every
//! probe's result goes to this node's breaker; a good one closes it at once.

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
use crate::snapshot::LiveSnapshot;
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
        trace_context: Default::default(),
        replay_of: None,
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

/// When each target marked for probing is next due on this node.
#[derive(Debug, Default)]
pub struct ProbeSchedule {
    next_due: HashMap<String, i64>,
}

impl ProbeSchedule {
    /// The targets (indices into the snapshot's targets) to probe now:
    /// - the breaker's one probe for every target held half-open here (the
    ///   lease is taken, so client traffic does not race it);
    /// - a probe every interval (±20 %, the first after a random share of it)
    ///   for each target the fleet marks `probe`.
    ///
    /// `draw` gives uniform numbers in [0, 1). Pure apart from the breakers'
    /// leases, so a simulation in virtual time runs the same rules.
    pub fn due(
        &mut self,
        snapshot: &LiveSnapshot,
        breakers: &Breakers,
        now_ms: i64,
        mut draw: impl FnMut() -> f64,
    ) -> Vec<usize> {
        let telemetry = &snapshot.routing.telemetry;
        let interval = i64::try_from(telemetry.probe_interval_ms).unwrap_or(i64::MAX);
        let circuits = breakers.view();
        let mut due = Vec::new();
        for (index, target) in snapshot.routing.targets.iter().enumerate() {
            let fleet = telemetry.fresh(&target.id, now_ms);
            if circuits.state(&target.id, now_ms) == breaker::State::HalfOpen {
                if breakers.admit(&target.id, now_ms) {
                    due.push(index);
                }
                continue;
            }
            if !(interval > 0 && fleet.is_some_and(|t| t.probe)) {
                self.next_due.remove(&target.id);
                continue;
            }
            let at = *self
                .next_due
                .entry(target.id.clone())
                .or_insert_with(|| now_ms + (draw() * interval as f64) as i64);
            if now_ms >= at {
                let jittered = (interval as f64 * (0.8 + 0.4 * draw())) as i64;
                self.next_due.insert(target.id.clone(), now_ms + jittered);
                due.push(index);
            }
        }
        due
    }
}

impl Prober {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut schedule = ProbeSchedule::default();
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
            let mut rng = rand::rng();
            let now = Received::now().unix_ms;
            let due = schedule.due(&snapshot, &self.breakers, now, || rng.random::<f64>());
            for index in due {
                let target = &snapshot.routing.targets[index];
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use switchyard_domain::{
        HealthState, ModelSpec, ProviderKind, ProviderSpec, RoutingSnapshot, TargetTelemetry,
        Telemetry, Tier, builtin_strategies,
    };

    use super::*;

    fn snapshot(verdicts: &[(&str, HealthState, bool)], now_ms: i64) -> LiveSnapshot {
        let provider = |name: &str| ProviderSpec {
            name: name.into(),
            kind: ProviderKind::Openai,
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: None,
        };
        let model = |p: &str| ModelSpec {
            provider: p.into(),
            name: "m".into(),
            family: "m".into(),
            capabilities: Default::default(),
            context_window: 8192,
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 1.0,
            region: String::new(),
            tier: Tier::Standard,
            aliases: vec![],
            enabled: true,
            circuit: Default::default(),
        };
        let names = ["a", "b", "c"];
        let routing = RoutingSnapshot::new(
            1,
            0,
            0,
            names.iter().map(|n| provider(n)).collect(),
            names.iter().map(|n| model(n)).collect(),
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap()
        .with_telemetry(Telemetry {
            targets: verdicts
                .iter()
                .map(|&(id, state, probe)| {
                    let t = TargetTelemetry {
                        target_id: id.into(),
                        state,
                        probe,
                        ..Default::default()
                    };
                    (id.to_owned(), t)
                })
                .collect(),
            computed_at_ms: now_ms,
            stale_after_ms: 60_000,
            probe_interval_ms: 10_000,
            data_planes: 1,
        });
        LiveSnapshot::prepare(routing)
    }

    #[test]
    fn half_open_open_but_healthy_and_marked_targets_are_probed_each_by_its_rule() {
        let now = 1_000_000;
        let snap = snapshot(
            &[
                ("a/m", HealthState::Healthy, false),
                ("b/m", HealthState::Ejected, true),
                ("c/m", HealthState::Healthy, false),
            ],
            now,
        );
        let breakers = Breakers::default();
        // a: open here (healthy in the fleet: its cool-down is still waited out). c: half-open here.
        for _ in 0..5 {
            breakers.failure("a/m", now);
            breakers.failure("c/m", now - 60_000);
        }
        let mut schedule = ProbeSchedule::default();
        // The marked target's first probe waits half the interval (draw 0.5).
        assert_eq!(schedule.due(&snap, &breakers, now, || 0.5), [2]);
        // The half-open lease is taken, the open one waits its turn, b is not due yet.
        assert!(
            schedule
                .due(&snap, &breakers, now + 1_000, || 0.5)
                .is_empty()
        );
        assert_eq!(schedule.due(&snap, &breakers, now + 5_000, || 0.5), [0, 1]);
        // Next for b: the interval ± 20 % (draw 0.5: exactly the interval).
        assert!(
            !schedule
                .due(&snap, &breakers, now + 14_000, || 0.5)
                .contains(&1)
        );
        assert!(
            schedule
                .due(&snap, &breakers, now + 15_000, || 0.5)
                .contains(&1)
        );
    }
}
