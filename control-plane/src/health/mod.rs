//! Fleet health aggregation. Data planes send per-target windows (counts by
//! outcome and quantile sketches); the aggregator files them in one-second
//! buckets, rolls them up over 10 s, 1 min and 5 min, keeps each target's
//! health state, and turns it all into the telemetry the next snapshot carries.
//! Pure and synchronous, so the routing simulation drives the very same code.

mod series;
mod state;
mod window;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use switchyard_domain::{
    HealthState, TargetTelemetry, Telemetry, confidence, timestamp_from_millis,
};
use switchyard_proto::v1 as pb;

pub use series::Rollup;
use series::Series;
pub use state::{Baseline, HealthConfig, TargetState};
pub use window::{Counts, WindowRecord};

/// The windows operators see, in seconds; the first one judges health, the
/// second one feeds routing.
pub const WINDOWS: [u32; 3] = [10, 60, 300];
const JUDGE: usize = 0;
const ROUTE: usize = 1;

/// What the aggregator needs to know of a registry target.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub id: String,
    /// Targets serving the same model name are peers for the ejection cap.
    pub model: String,
    pub enabled: bool,
}

/// One target's aggregate: windows, state and the telemetry routing gets.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub target_id: String,
    pub state: TargetState,
    pub windows: Vec<Rollup>,
    pub probe: bool,
    pub telemetry: TargetTelemetry,
}

#[derive(Debug, Default)]
pub struct Aggregator {
    config: HealthConfig,
    /// A target with no attempt for this long is probed.
    probe_idle: Duration,
    series: HashMap<String, Series>,
    states: HashMap<String, TargetState>,
}

fn median_and_deviation(mut rates: Vec<f64>) -> (f64, f64) {
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    let median = if n % 2 == 1 {
        rates[n / 2]
    } else {
        (rates[n / 2 - 1] + rates[n / 2]) / 2.0
    };
    let mean = rates.iter().sum::<f64>() / n as f64;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n as f64;
    (median, variance.sqrt())
}

impl Aggregator {
    pub fn new(config: HealthConfig, probe_idle: Duration) -> Self {
        Self {
            config,
            probe_idle,
            ..Default::default()
        }
    }

    /// Takes over the verdicts of `telemetry` (published by a previous
    /// leader) for targets it has no state for yet.
    pub fn resume(&mut self, telemetry: &Telemetry, now_ms: i64) {
        for (id, verdict) in &telemetry.targets {
            if verdict.state != HealthState::Healthy {
                self.states
                    .entry(id.clone())
                    .or_insert_with(|| TargetState::resumed(verdict, now_ms));
            }
        }
    }

    pub fn ingest(&mut self, record: &WindowRecord) {
        self.series
            .entry(record.target_id.clone())
            .or_default()
            .add(record);
    }

    /// Judges every target at `now_ms` and returns the aggregate of each, in
    /// the order of `targets`. Windows of targets no longer registered are dropped.
    pub fn evaluate(&mut self, now_ms: i64, targets: &[TargetInfo]) -> Vec<TargetView> {
        let registered: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.series.retain(|id, _| registered.contains(id.as_str()));
        self.states.retain(|id, _| registered.contains(id.as_str()));
        for series in self.series.values_mut() {
            series.prune(now_ms);
        }
        let empty = Series::default();
        let rollups_since = |series: &Series, since: i64| series.rollups(now_ms, &WINDOWS, since);
        // Every window of every target, on the evidence as it stands before judging.
        let mut windows: Vec<Vec<Rollup>> = targets
            .iter()
            .map(|t| {
                let series = self.series.get(&t.id).unwrap_or(&empty);
                let since = self.states.get(&t.id).map_or(0, |s| s.evidence_since_ms);
                let mut rollups = rollups_since(series, since);
                // A run of failures counts as it stands now, not as it once stood.
                rollups[JUDGE].counts.consecutive_failures =
                    series.latest_run(now_ms, WINDOWS[JUDGE], since);
                rollups
            })
            .collect();
        let judged_rates: Vec<Option<f64>> = windows
            .iter()
            .map(|w| {
                let c = &w[JUDGE].counts;
                let judged = c.judged();
                (judged >= self.config.min_requests).then(|| c.successes as f64 / judged as f64)
            })
            .collect();
        let mut group_size: HashMap<&str, usize> = HashMap::new();
        let mut group_skipped: HashMap<&str, usize> = HashMap::new();
        for t in targets {
            *group_size.entry(&t.model).or_default() += 1;
            if self
                .states
                .get(&t.id)
                .is_some_and(|s| s.state == HealthState::Ejected)
            {
                *group_skipped.entry(&t.model).or_default() += 1;
            }
        }

        let mut views = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            let peers: Vec<f64> = judged_rates
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .filter_map(|(_, r)| *r)
                .collect();
            let baseline = if peers.len() >= 2 {
                let (median, deviation) = median_and_deviation(peers);
                Baseline {
                    success_rate: median,
                    margin: self.config.degraded_margin.max(1.9 * deviation),
                }
            } else {
                Baseline {
                    success_rate: 1.0,
                    margin: self.config.degraded_margin,
                }
            };
            let state = self
                .states
                .entry(target.id.clone())
                .or_insert_with(|| TargetState::new(now_ms));
            let was_ejected = state.state == HealthState::Ejected;
            let skipped = group_skipped
                .get(target.model.as_str())
                .copied()
                .unwrap_or(0)
                - usize::from(was_ejected);
            let cap = group_size.get(target.model.as_str()).copied().unwrap_or(0) / 2;
            let evidence_since = state.evidence_since_ms;
            state.step(
                now_ms,
                &windows[i][JUDGE].counts,
                baseline,
                skipped < cap,
                &self.config,
            );
            let is_ejected = state.state == HealthState::Ejected;
            if is_ejected != was_ejected {
                let n = group_skipped.entry(&target.model).or_default();
                *n = if is_ejected {
                    *n + 1
                } else {
                    n.saturating_sub(1)
                };
            }

            let series = self.series.get(&target.id).unwrap_or(&empty);
            // Judging may have restarted the evidence (an ejection began or ended).
            let windows = if state.evidence_since_ms == evidence_since {
                std::mem::take(&mut windows[i])
            } else {
                rollups_since(series, state.evidence_since_ms)
            };
            let idle_ms = i64::try_from(self.probe_idle.as_millis()).unwrap_or(i64::MAX);
            let last_seen = series.last_seen_ms();
            let probe = target.enabled
                && (state.state == HealthState::Ejected
                    || last_seen == 0
                    || now_ms - last_seen >= idle_ms);
            views.push(TargetView {
                telemetry: telemetry(&target.id, &windows[ROUTE], state, probe),
                target_id: target.id.clone(),
                state: state.clone(),
                windows,
                probe,
            });
        }
        views
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn telemetry(target_id: &str, r: &Rollup, state: &TargetState, probe: bool) -> TargetTelemetry {
    let c = &r.counts;
    TargetTelemetry {
        target_id: target_id.to_owned(),
        attempts: c.attempts,
        success_rate: share(c.successes, c.attempts),
        error_rate: share(c.failures(), c.attempts),
        rate_limited_rate: share(c.rate_limited(), c.attempts),
        retry_rate: share(c.retries, c.attempts),
        latency_p50_ms: c.latency_ms.quantile(0.5),
        latency_p95_ms: c.latency_ms.quantile(0.95),
        latency_p99_ms: c.latency_ms.quantile(0.99),
        ttft_p50_ms: c.ttft_ms.quantile(0.5),
        ttft_p95_ms: c.ttft_ms.quantile(0.95),
        confidence: confidence(c.attempts),
        strategies: Vec::new(),
        state: state.state,
        state_until_ms: state.until_ms,
        probe,
    }
}

/// A rollup as operators read it.
pub fn window_stats(r: &Rollup) -> pb::WindowStats {
    let c = &r.counts;
    let tpot = c.tpot_ms.quantile(0.5);
    pb::WindowStats {
        seconds: r.seconds,
        attempts: c.attempts,
        request_rate: c.attempts as f64 / f64::from(r.seconds.max(1)),
        success_rate: share(c.successes, c.attempts),
        error_rate: share(c.failures(), c.attempts),
        rate_limited_rate: share(c.rate_limited(), c.attempts),
        timeout_rate: share(c.timeouts(), c.attempts),
        retry_rate: share(c.retries, c.attempts),
        latency_p50_ms: c.latency_ms.quantile(0.5),
        latency_p90_ms: c.latency_ms.quantile(0.9),
        latency_p99_ms: c.latency_ms.quantile(0.99),
        ttft_p50_ms: c.ttft_ms.quantile(0.5),
        ttft_p90_ms: c.ttft_ms.quantile(0.9),
        ttft_p99_ms: c.ttft_ms.quantile(0.99),
        tokens_per_second: if tpot > 0.0 { 1000.0 / tpot } else { 0.0 },
        reporting_nodes: u32::try_from(r.nodes).unwrap_or(u32::MAX),
    }
}

/// A target's aggregate as the health RPC returns it.
pub fn target_health(view: &TargetView, evaluated_at_ms: i64) -> pb::TargetHealth {
    let minute = window_stats(&view.windows[ROUTE]);
    let s = &view.state;
    pb::TargetHealth {
        target_id: view.target_id.clone(),
        state: pb::HealthState::from(s.state).into(),
        request_rate: minute.request_rate,
        success_rate: minute.success_rate,
        latency_p50_ms: minute.latency_p50_ms,
        latency_p99_ms: minute.latency_p99_ms,
        ttft_p50_ms: minute.ttft_p50_ms,
        until: (s.until_ms > 0 && s.state.skips()).then(|| timestamp_from_millis(s.until_ms)),
        updated_at: Some(timestamp_from_millis(evaluated_at_ms)),
        windows: view.windows.iter().map(window_stats).collect(),
        reason: s.reason.clone(),
        state_since: Some(timestamp_from_millis(s.since_ms)),
        ejections: s.ejections,
        probe: view.probe,
    }
}

#[cfg(test)]
mod tests;
