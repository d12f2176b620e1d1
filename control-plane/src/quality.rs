//! The quality engine: every few seconds, turns the last minutes of stored
//! traces into per-target telemetry (reliability, latency, how each strategy
//! fared with each target, and how much evidence stands behind it) and hands it
//! to the snapshot publisher, so routing learns from the fleet's experience.
//! Aggregates are rebuilt from the trace store, so a restart loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::{StrategyEffectiveness, TargetTelemetry, Telemetry, confidence};
use switchyard_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::snapshots::SnapshotPublisher;
use crate::store::{AttemptRow, OutcomeRow, Store, StoreError, now_ms};

/// Most rows read per computation; a busier window is judged on its newest rows.
const MAX_ROWS: i64 = 200_000;

#[derive(Debug, Clone, Copy)]
pub struct QualityConfig {
    /// How often telemetry is recomputed.
    pub interval: Duration,
    /// How far back it looks.
    pub window: Duration,
    /// How long data planes may trust it.
    pub stale_after: Duration,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Per-target telemetry from attempts and outcomes. Pure, so it is tested alone.
pub fn aggregate(
    attempts: &[AttemptRow],
    outcomes: &[OutcomeRow],
) -> HashMap<String, TargetTelemetry> {
    #[derive(Default)]
    struct Acc {
        attempts: u64,
        successes: u64,
        errors: u64,
        rate_limited: u64,
        fallbacks: u64,
        latencies: Vec<f64>,
        ttfts: Vec<f64>,
    }
    let cancelled = i32::from(pb::ErrorClass::Cancelled);
    let rate_limited = i32::from(pb::ErrorClass::RateLimited);
    let mut by_target: BTreeMap<&str, Acc> = BTreeMap::new();
    for a in attempts {
        let acc = by_target.entry(&a.target_id).or_default();
        acc.attempts += 1;
        if a.position > 0 {
            acc.fallbacks += 1;
        }
        if a.success {
            acc.successes += 1;
            acc.latencies.push(a.duration_ms as f64);
            if a.ttft_ms > 0 {
                acc.ttfts.push(a.ttft_ms as f64);
            }
        } else if a.error_class != cancelled {
            acc.errors += 1;
            if a.error_class == rate_limited {
                acc.rate_limited += 1;
            }
        }
    }
    let mut effectiveness: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for o in outcomes {
        let e = effectiveness
            .entry((&o.final_target, &o.strategy))
            .or_default();
        e.0 += 1;
        if o.outcome == i32::from(pb::Outcome::Success) {
            e.1 += 1;
        }
    }
    by_target
        .into_iter()
        .map(|(target, mut acc)| {
            acc.latencies.sort_by(f64::total_cmp);
            acc.ttfts.sort_by(f64::total_cmp);
            let n = acc.attempts as f64;
            let strategies = effectiveness
                .range((target, "")..)
                .take_while(|((t, _), _)| *t == target)
                .map(|((_, strategy), (requests, ok))| StrategyEffectiveness {
                    strategy: (*strategy).to_owned(),
                    requests: *requests,
                    success_rate: *ok as f64 / *requests as f64,
                })
                .collect();
            let telemetry = TargetTelemetry {
                target_id: target.to_owned(),
                attempts: acc.attempts,
                success_rate: acc.successes as f64 / n,
                error_rate: acc.errors as f64 / n,
                rate_limited_rate: acc.rate_limited as f64 / n,
                retry_rate: acc.fallbacks as f64 / n,
                latency_p50_ms: percentile(&acc.latencies, 0.5),
                latency_p99_ms: percentile(&acc.latencies, 0.99),
                ttft_p50_ms: percentile(&acc.ttfts, 0.5),
                ttft_p95_ms: percentile(&acc.ttfts, 0.95),
                latency_p95_ms: percentile(&acc.latencies, 0.95),
                confidence: confidence(acc.attempts),
                strategies,
            };
            (target.to_owned(), telemetry)
        })
        .collect()
}

pub struct QualityEngine {
    pub store: Store,
    pub publisher: Arc<SnapshotPublisher>,
    pub config: QualityConfig,
}

impl QualityEngine {
    pub async fn compute(&self) -> Result<Telemetry, StoreError> {
        let now = now_ms();
        let since = now.saturating_sub(millis(self.config.window));
        let attempts = self.store.attempts_since(since, MAX_ROWS).await?;
        let outcomes = self.store.outcomes_since(since, MAX_ROWS).await?;
        Ok(Telemetry {
            targets: aggregate(&attempts, &outcomes),
            computed_at_ms: now,
            stale_after_ms: u64::try_from(self.config.stale_after.as_millis()).unwrap_or(u64::MAX),
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.compute().await {
                Ok(telemetry) => {
                    if let Err(e) = self.publisher.offer_telemetry(telemetry).await {
                        tracing::warn!(error = %e, "could not publish telemetry; data planes keep the last snapshot");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not compute telemetry from the trace store")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(
        target: &str,
        position: i64,
        success: bool,
        class: pb::ErrorClass,
        ms: i64,
    ) -> AttemptRow {
        AttemptRow {
            target_id: target.into(),
            position,
            success,
            error_class: class.into(),
            duration_ms: ms,
            ttft_ms: ms / 2,
        }
    }

    #[test]
    fn rates_percentiles_effectiveness_and_confidence() {
        let mut attempts: Vec<AttemptRow> = (1..=8)
            .map(|i| attempt("a/m", 0, true, pb::ErrorClass::Unspecified, i * 100))
            .collect();
        attempts.push(attempt("a/m", 0, false, pb::ErrorClass::RateLimited, 5));
        attempts.push(attempt("a/m", 1, false, pb::ErrorClass::Transient, 5));
        attempts.push(attempt("b/m", 1, false, pb::ErrorClass::Cancelled, 5));
        let outcomes = vec![
            OutcomeRow {
                strategy: "cost".into(),
                final_target: "a/m".into(),
                outcome: pb::Outcome::Success.into(),
            },
            OutcomeRow {
                strategy: "cost".into(),
                final_target: "a/m".into(),
                outcome: pb::Outcome::Partial.into(),
            },
            OutcomeRow {
                strategy: "speed".into(),
                final_target: "a/m".into(),
                outcome: pb::Outcome::Success.into(),
            },
            OutcomeRow {
                strategy: "cost".into(),
                final_target: "b/m".into(),
                outcome: pb::Outcome::Success.into(),
            },
        ];
        let t = aggregate(&attempts, &outcomes);
        let a = &t["a/m"];
        assert_eq!(a.attempts, 10);
        assert!((a.success_rate - 0.8).abs() < 1e-12);
        assert!((a.error_rate - 0.2).abs() < 1e-12);
        assert!((a.rate_limited_rate - 0.1).abs() < 1e-12);
        assert!((a.retry_rate - 0.1).abs() < 1e-12);
        assert_eq!(
            (a.latency_p50_ms, a.latency_p99_ms, a.ttft_p50_ms),
            (400.0, 800.0, 200.0)
        );
        assert!((a.confidence - confidence(10)).abs() < 1e-12);
        let cost = a.strategies.iter().find(|s| s.strategy == "cost").unwrap();
        assert_eq!((cost.requests, cost.success_rate), (2, 0.5));
        assert_eq!(a.strategies.len(), 2);
        // A cancellation is the client's doing, not the target's.
        let b = &t["b/m"];
        assert_eq!((b.error_rate, b.success_rate), (0.0, 0.0));
        assert_eq!(b.strategies.len(), 1);
    }

    #[test]
    fn no_traffic_no_telemetry() {
        assert!(aggregate(&[], &[]).is_empty());
    }
}
