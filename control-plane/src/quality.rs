//! Strategy effectiveness: how requests that ended on each target fared, per
//! strategy that chose it, read from the trace store every so often. Rebuilt
//! from stored traces, so a restart or a new leader loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use switchyard_domain::StrategyEffectiveness;
use switchyard_proto::v1 as pb;

use crate::store::{OutcomeRow, Store, StoreError, now_ms};

/// Most rows read per computation; a busier window is judged on its newest rows.
const MAX_ROWS: i64 = 200_000;

#[derive(Debug, Clone, Copy)]
pub struct QualityConfig {
    /// How often effectiveness is recomputed.
    pub interval: Duration,
    /// How far back it looks.
    pub window: Duration,
    /// How long data planes may trust the telemetry a snapshot carries.
    pub stale_after: Duration,
}

/// Effectiveness per target from request outcomes. Pure, so it is tested alone.
pub fn effectiveness(outcomes: &[OutcomeRow]) -> HashMap<String, Vec<StrategyEffectiveness>> {
    let mut counts: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
    for o in outcomes {
        let e = counts.entry((&o.final_target, &o.strategy)).or_default();
        e.0 += 1;
        if o.outcome == i32::from(pb::Outcome::Success) {
            e.1 += 1;
        }
    }
    let mut by_target: HashMap<String, Vec<StrategyEffectiveness>> = HashMap::new();
    for ((target, strategy), (requests, ok)) in counts {
        by_target
            .entry(target.to_owned())
            .or_default()
            .push(StrategyEffectiveness {
                strategy: strategy.to_owned(),
                requests,
                success_rate: ok as f64 / requests as f64,
            });
    }
    by_target
}

/// Reads the last `window` of outcomes and computes effectiveness from them.
pub async fn compute(
    store: &Store,
    window: Duration,
) -> Result<HashMap<String, Vec<StrategyEffectiveness>>, StoreError> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let outcomes = store
        .outcomes_since(now_ms().saturating_sub(window_ms), MAX_ROWS)
        .await?;
    Ok(effectiveness(&outcomes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn outcome(strategy: &str, target: &str, outcome: pb::Outcome) -> OutcomeRow {
        OutcomeRow {
            strategy: strategy.into(),
            final_target: target.into(),
            outcome: outcome.into(),
        }
    }

    #[test]
    fn effectiveness_per_target_and_strategy() {
        let outcomes = [
            outcome("cost", "a/m", pb::Outcome::Success),
            outcome("cost", "a/m", pb::Outcome::Partial),
            outcome("speed", "a/m", pb::Outcome::Success),
            outcome("cost", "b/m", pb::Outcome::Success),
        ];
        let e = effectiveness(&outcomes);
        let a = &e["a/m"];
        assert_eq!(a.len(), 2);
        let cost = a.iter().find(|s| s.strategy == "cost").unwrap();
        assert_eq!((cost.requests, cost.success_rate), (2, 0.5));
        assert_eq!(e["b/m"].len(), 1);
        assert!(effectiveness(&[]).is_empty());
    }
}
