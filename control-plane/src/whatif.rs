//! WhatIf: what another strategy would have chosen for stored traffic.
//!
//! Every trace keeps each eligible candidate's per-dimension scores as the
//! data plane computed them, with the telemetry of that moment. A data
//! plane's total is Σ scoreᵢ·wᵢ/Σw, so re-weighting those stored scores is
//! exactly what routing would have done under the other weights at that
//! time, without calling any provider. The actual choice is the stored
//! top candidate; both sides skip candidates whose circuit was open.
//!
//! The change in cost and latency compares the data plane's own estimates
//! for the two choices (estimated cost; expected time to first output),
//! summed over the traces that carried candidates.

use std::collections::BTreeMap;

use switchyard_domain::{StrategyWeights, timestamp_to_millis};
use switchyard_proto::v1 as pb;

use crate::store::{Store, StoreError};

/// Traces read per query.
const PAGE: i64 = 2_000;

/// Re-weighs every trace received in `[start_ms, end_ms)` under `weights`,
/// reading the store a page at a time (memory stays flat however long the window).
pub async fn over_window(
    store: &Store,
    start_ms: i64,
    end_ms: i64,
    weights: StrategyWeights,
) -> Result<pb::WhatIfResponse, StoreError> {
    let mut what_if = WhatIf::new(weights);
    let mut after = None;
    loop {
        let page = store
            .traces_between(start_ms, end_ms, after.as_ref(), PAGE)
            .await?;
        for trace in &page {
            what_if.add(trace);
        }
        let full = page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
        match page.last() {
            Some(last) if full => {
                let at = last
                    .received_at
                    .as_ref()
                    .map(timestamp_to_millis)
                    .unwrap_or_default();
                after = Some((at, last.trace_id.clone()));
            }
            _ => return Ok(what_if.finish()),
        }
    }
}

/// Traces needed before the sample size stops lowering the confidence much.
const SAMPLE_SCALE: f64 = 30.0;

#[derive(Debug, Default)]
pub struct WhatIf {
    weights: StrategyWeights,
    considered: u64,
    skipped: u64,
    changed: u64,
    actual: BTreeMap<String, u64>,
    what_if: BTreeMap<String, u64>,
    cost_before: f64,
    cost_after: f64,
    latency_before: f64,
    latency_after: f64,
    /// Chosen candidates' dimension scores that came from fleet telemetry
    /// rather than priors, and all of them.
    observed: u64,
    dimensions: u64,
}

/// A candidate routing could have sent the request to.
fn routable(c: &pb::Candidate) -> bool {
    !matches!(c.circuit.as_str(), "open" | "forced_open")
}

fn dimensions(c: &pb::Candidate) -> [pb::DimensionScore; 5] {
    let d = c.dimensions.clone().unwrap_or_default();
    [
        d.quality.unwrap_or_default(),
        d.speed.unwrap_or_default(),
        d.cost.unwrap_or_default(),
        d.health.unwrap_or_default(),
        d.workspace_fit.unwrap_or_default(),
    ]
}

/// The data plane's total under `w`.
pub fn score(c: &pb::Candidate, w: &StrategyWeights) -> f64 {
    let weights = [w.quality, w.speed, w.cost, w.health, w.workspace_fit];
    let total: f64 = weights.iter().sum();
    dimensions(c)
        .iter()
        .zip(weights)
        .map(|(d, weight)| d.score * weight / total)
        .sum()
}

/// Expected time to first output, from the speed dimension's raw value.
fn expected_latency_ms(c: &pb::Candidate) -> f64 {
    c.dimensions
        .as_ref()
        .and_then(|d| d.speed.as_ref())
        .map_or(0.0, |s| s.raw)
}

/// The best candidate by `rank_of`; ties go to the earlier (higher-ranked) one.
fn best(
    candidates: &[pb::Candidate],
    rank_of: impl Fn(&pb::Candidate) -> f64,
) -> Option<&pb::Candidate> {
    let mut best: Option<(&pb::Candidate, f64)> = None;
    for c in candidates.iter().filter(|c| routable(c)) {
        let s = rank_of(c);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((c, s));
        }
    }
    best.map(|(c, _)| c)
}

impl WhatIf {
    pub fn new(weights: StrategyWeights) -> Self {
        Self {
            weights,
            ..Self::default()
        }
    }

    pub fn add(&mut self, trace: &pb::Trace) {
        let actual = best(&trace.candidates, |c| c.score);
        let what_if = best(&trace.candidates, |c| score(c, &self.weights));
        let (Some(actual), Some(what_if)) = (actual, what_if) else {
            self.skipped += 1;
            return;
        };
        self.considered += 1;
        if actual.target_id != what_if.target_id {
            self.changed += 1;
        }
        *self.actual.entry(actual.target_id.clone()).or_default() += 1;
        *self.what_if.entry(what_if.target_id.clone()).or_default() += 1;
        self.cost_before += actual.estimated_cost_usd;
        self.cost_after += what_if.estimated_cost_usd;
        self.latency_before += expected_latency_ms(actual);
        self.latency_after += expected_latency_ms(what_if);
        for d in dimensions(what_if) {
            self.dimensions += 1;
            if d.source == "telemetry" {
                self.observed += 1;
            }
        }
    }

    /// The report. Confidence is the share of traces that carried candidates,
    /// times the share of the chosen scores that rest on fleet telemetry
    /// rather than priors (at least a half: priors still rank sensibly),
    /// times n/(n+30) for the sample size.
    pub fn finish(self) -> pb::WhatIfResponse {
        let n = self.considered as f64;
        let seen = n + self.skipped as f64;
        let coverage = if seen > 0.0 { n / seen } else { 0.0 };
        let observed = if self.dimensions > 0 {
            self.observed as f64 / self.dimensions as f64
        } else {
            0.0
        };
        let confidence = coverage * (0.5 + 0.5 * observed) * n / (n + SAMPLE_SCALE);
        let change = |before: f64, after: f64| {
            if before > 0.0 {
                after / before - 1.0
            } else {
                0.0
            }
        };
        let shares = |counts: BTreeMap<String, u64>| {
            let mut shares: Vec<pb::TargetShare> = counts
                .into_iter()
                .map(|(target_id, requests)| pb::TargetShare {
                    target_id,
                    requests,
                })
                .collect();
            shares.sort_by_key(|s| std::cmp::Reverse(s.requests));
            shares
        };
        let mean = |sum: f64| if n > 0.0 { sum / n } else { 0.0 };
        pb::WhatIfResponse {
            traces_considered: self.considered,
            cost_change: change(self.cost_before, self.cost_after),
            latency_change: change(self.latency_before, self.latency_after),
            confidence,
            traces_skipped: self.skipped,
            traces_changed: self.changed,
            cost_before_usd: self.cost_before,
            cost_after_usd: self.cost_after,
            expected_latency_before_ms: mean(self.latency_before),
            expected_latency_after_ms: mean(self.latency_after),
            actual: shares(self.actual),
            what_if: shares(self.what_if),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn dimension(score: f64, weight: f64, source: &str) -> Option<pb::DimensionScore> {
        Some(pb::DimensionScore {
            score,
            weight,
            contribution: score * weight,
            source: source.into(),
            ..Default::default()
        })
    }

    /// A candidate scored as a data plane would under `w`.
    fn candidate(
        id: &str,
        scores: [f64; 5],
        cost_usd: f64,
        latency_ms: f64,
        w: &StrategyWeights,
    ) -> pb::Candidate {
        let mut c = pb::Candidate {
            target_id: id.into(),
            estimated_cost_usd: cost_usd,
            circuit: "closed".into(),
            dimensions: Some(pb::DimensionScores {
                quality: dimension(scores[0], 0.2, "prior"),
                speed: Some(pb::DimensionScore {
                    raw: latency_ms,
                    ..dimension(scores[1], 0.2, "telemetry").unwrap()
                }),
                cost: dimension(scores[2], 0.2, "price"),
                health: dimension(scores[3], 0.2, "telemetry"),
                workspace_fit: dimension(scores[4], 0.2, "none"),
            }),
            ..Default::default()
        };
        c.score = score(&c, w);
        c
    }

    fn balanced() -> StrategyWeights {
        StrategyWeights::default()
    }

    fn cost_heavy() -> StrategyWeights {
        StrategyWeights {
            cost: 10.0,
            ..StrategyWeights::default()
        }
    }

    /// Fast and dear against slow and cheap, ranked under balanced weights.
    fn trace() -> pb::Trace {
        let w = balanced();
        let mut candidates = vec![
            candidate("fast", [0.9, 0.9, 0.2, 1.0, 0.5], 0.010, 200.0, &w),
            candidate("cheap", [0.6, 0.4, 0.9, 1.0, 0.5], 0.002, 800.0, &w),
        ];
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        pb::Trace {
            candidates,
            ..Default::default()
        }
    }

    #[test]
    fn the_weights_that_ranked_the_traffic_choose_the_same_targets() {
        let mut what_if = WhatIf::new(balanced());
        for _ in 0..10 {
            what_if.add(&trace());
        }
        let report = what_if.finish();
        assert_eq!(report.traces_considered, 10);
        assert_eq!(report.traces_changed, 0);
        assert_eq!(report.actual, report.what_if);
        assert_eq!(report.actual[0].target_id, "fast");
        assert!(report.cost_change.abs() < 1e-12);
        assert!(report.latency_change.abs() < 1e-12);
    }

    #[test]
    fn cost_heavy_weights_move_traffic_to_the_cheap_target() {
        let mut what_if = WhatIf::new(cost_heavy());
        for _ in 0..30 {
            what_if.add(&trace());
        }
        // A trace without candidates (nothing was eligible) is skipped, not counted.
        what_if.add(&pb::Trace::default());
        let report = what_if.finish();
        assert_eq!((report.traces_considered, report.traces_skipped), (30, 1));
        assert_eq!(report.traces_changed, 30);
        assert_eq!(report.actual[0].target_id, "fast");
        assert_eq!(
            (
                report.what_if[0].target_id.as_str(),
                report.what_if[0].requests
            ),
            ("cheap", 30)
        );
        assert!((report.cost_change - (0.002 / 0.010 - 1.0)).abs() < 1e-9);
        assert!((report.latency_change - 3.0).abs() < 1e-9);
        assert!((report.expected_latency_after_ms - 800.0).abs() < 1e-9);
        // 30 of 31 traces, 2 of 5 chosen scores from telemetry, n = 30.
        let expected = (30.0 / 31.0) * (0.5 + 0.5 * 0.4) * 0.5;
        assert!(
            (report.confidence - expected).abs() < 1e-9,
            "{}",
            report.confidence
        );
    }

    #[test]
    fn an_open_circuit_is_never_chosen() {
        let mut t = trace();
        for c in &mut t.candidates {
            if c.target_id == "cheap" {
                c.circuit = "open".into();
            }
        }
        let mut what_if = WhatIf::new(cost_heavy());
        what_if.add(&t);
        let report = what_if.finish();
        assert_eq!(report.what_if[0].target_id, "fast");
        assert_eq!(report.traces_changed, 0);
    }

    #[test]
    fn no_traffic_means_no_confidence() {
        let report = WhatIf::new(balanced()).finish();
        assert_eq!(report.traces_considered, 0);
        assert_eq!(report.confidence, 0.0);
        assert_eq!(report.cost_change, 0.0);
    }
}
