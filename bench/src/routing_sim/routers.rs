//! The yardsticks: the oracle, three baselines, and the real scoring fed
//! with the true state instead of the fleet's view (a diagnostic that
//! separates what the scoring formula wants from what the health pipeline
//! knows).

use std::collections::HashMap;

use switchyard_data_plane::breaker::Breakers;
use switchyard_data_plane::health::LocalSignals;
use switchyard_data_plane::request::ChatRequest;
use switchyard_data_plane::snapshot::LiveSnapshot;
use switchyard_domain::{HealthState, TargetTelemetry, Telemetry, confidence};

use super::engine::Router;
use super::market::{Attempt, Market};
use super::registry::{self, unix};

/// Knows the true state of every target and tries them by expected utility.
#[derive(Debug, Default)]
pub struct Oracle;

impl Router for Oracle {
    fn route(&mut self, market: &Market, _node: usize, now: i64) -> anyhow::Result<Vec<usize>> {
        let mut order: Vec<(usize, f64)> = (0..market.targets())
            .map(|t| (t, market.expected_utility(t, now)))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(order.into_iter().map(|(t, _)| t).collect())
    }
}

/// Always the registry's first (cheapest) target, then down the list.
#[derive(Debug, Default)]
pub struct FixedPriority;

impl Router for FixedPriority {
    fn route(&mut self, market: &Market, _node: usize, _now: i64) -> anyhow::Result<Vec<usize>> {
        Ok((0..market.targets()).collect())
    }
}

/// Each node takes the targets in turn; a failure moves on to the next one.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: HashMap<usize, usize>,
}

impl Router for RoundRobin {
    fn route(&mut self, market: &Market, node: usize, _now: i64) -> anyhow::Result<Vec<usize>> {
        let n = market.targets();
        let next = self.next.entry(node).or_default();
        let first = *next;
        *next = (first + 1) % n;
        Ok((0..n).map(|i| (first + i) % n).collect())
    }
}

/// How fast the latency EWMA forgets, as the data plane's local peak-EWMA.
const EWMA_DECAY_MS: f64 = 10_000.0;

/// Each node tries the target with the lowest EWMA of the response times it
/// has seen (answers and errors alike, as a latency load balancer sees
/// them), untried targets first; no health, price or quality.
#[derive(Debug, Default)]
pub struct LatencyEwma {
    /// (node, target) -> (EWMA in ms, when last updated).
    ewma: HashMap<(usize, usize), (f64, i64)>,
}

impl Router for LatencyEwma {
    fn route(&mut self, market: &Market, node: usize, _now: i64) -> anyhow::Result<Vec<usize>> {
        let mut order: Vec<(usize, f64)> = (0..market.targets())
            .map(|t| (t, self.ewma.get(&(node, t)).map_or(0.0, |e| e.0)))
            .collect();
        order.sort_by(|a, b| a.1.total_cmp(&b.1));
        Ok(order.into_iter().map(|(t, _)| t).collect())
    }

    fn ended(&mut self, node: usize, target: usize, _attempt: u64, outcome: &Attempt, now: i64) {
        let sample = outcome.duration_ms as f64;
        self.ewma
            .entry((node, target))
            .and_modify(|(value, at)| {
                let keep = (-((now - *at).max(0) as f64) / EWMA_DECAY_MS).exp();
                *value = *value * keep + sample * (1.0 - keep);
                *at = now;
            })
            .or_insert((sample, now));
    }
}

/// The real `scoring::plan`, but on a snapshot whose telemetry is the true
/// state, always fresh, with full confidence (an outage target ejected at
/// once), and with no breakers or local signals: what the balanced formula
/// picks when it knows everything. A diagnostic, not a baseline.
pub struct ScoringWithTruth {
    index: HashMap<String, usize>,
    ids: Vec<String>,
    request: ChatRequest,
    breakers: Breakers,
    signals: LocalSignals,
    snapshot: Option<LiveSnapshot>,
    changes: Vec<i64>,
    next_change: usize,
    version: u64,
}

impl ScoringWithTruth {
    pub fn new(market: &Market) -> Self {
        let ids = registry::target_ids();
        Self {
            index: ids.iter().cloned().zip(0..).collect(),
            ids,
            request: registry::request(),
            breakers: Breakers::default(),
            signals: LocalSignals::default(),
            snapshot: None,
            changes: market.changes(),
            next_change: 0,
            version: 0,
        }
    }

    fn truth(&self, market: &Market, now: i64) -> Telemetry {
        let attempts = 10_000;
        let targets = self
            .ids
            .iter()
            .enumerate()
            .map(|(t, id)| {
                let e = market.error_rate(t, now);
                let latency = market.mean_latency_ms(t, now);
                let ttft = market.mean_ttft_ms(t, now);
                let down = market.in_outage(t, now);
                let telemetry = TargetTelemetry {
                    target_id: id.clone(),
                    attempts,
                    success_rate: 1.0 - e,
                    error_rate: e,
                    latency_p50_ms: latency,
                    latency_p95_ms: latency * 1.4,
                    latency_p99_ms: latency * 1.7,
                    ttft_p50_ms: ttft,
                    ttft_p95_ms: ttft * 1.6,
                    confidence: confidence(attempts),
                    state: if down {
                        HealthState::Ejected
                    } else {
                        HealthState::Healthy
                    },
                    state_until_ms: if down {
                        unix(market.scenario.outage.1)
                    } else {
                        0
                    },
                    ..Default::default()
                };
                (id.clone(), telemetry)
            })
            .collect();
        Telemetry {
            targets,
            computed_at_ms: unix(now),
            stale_after_ms: u64::MAX / 4,
            probe_interval_ms: 0,
            data_planes: 1,
        }
    }
}

impl Router for ScoringWithTruth {
    fn advance(&mut self, market: &Market, now: i64) -> anyhow::Result<()> {
        let mut changed = self.snapshot.is_none();
        while self
            .changes
            .get(self.next_change)
            .is_some_and(|&at| at <= now)
        {
            self.next_change += 1;
            changed = true;
        }
        if changed {
            self.version += 1;
            let telemetry = self.truth(market, now);
            self.snapshot = Some(registry::snapshot(market, self.version, now, telemetry)?);
        }
        Ok(())
    }

    fn route(&mut self, _market: &Market, _node: usize, now: i64) -> anyhow::Result<Vec<usize>> {
        let Some(snapshot) = &self.snapshot else {
            anyhow::bail!("no snapshot yet");
        };
        self.request.received.unix_ms = unix(now);
        registry::plan_order(
            snapshot,
            &self.request,
            &self.breakers,
            &self.signals,
            &self.index,
        )
    }
}
