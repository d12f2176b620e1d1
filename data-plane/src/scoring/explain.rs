//! The routing decision in words, for people reading a trace or a `Route` answer:
//! "chose a/x (balanced, 0.81): 40% cheaper, 2.0x faster, equal tier than b/y;
//! backups: b/y (other provider); circuits: b/y half-open; filtered: c/z: context
//! window 8k < 12k needed".

use std::fmt::Write;

use super::RoutePlan;
use super::dimensions::tier_rank;
use crate::breaker;
use crate::snapshot::LiveSnapshot;

/// Filter reasons listed by name before the rest are counted.
const LISTED_REJECTIONS: usize = 5;

fn percent_change(ours: f64, theirs: f64, less: &str, more: &str) -> Option<String> {
    if theirs <= 0.0 || ours <= 0.0 {
        return None;
    }
    let ratio = ours / theirs;
    if ratio < 0.95 {
        Some(format!("{:.0}% {less}", (1.0 - ratio) * 100.0))
    } else if ratio > 1.05 {
        Some(format!("{:.0}% {more}", (ratio - 1.0) * 100.0))
    } else {
        None
    }
}

pub fn explain(plan: &RoutePlan, snapshot: &LiveSnapshot, requested: &str) -> String {
    let targets = &snapshot.routing.targets;
    let mut out = String::with_capacity(256);
    let mut chain = plan.chain();
    match chain.next() {
        None => {
            let _ = write!(out, "no eligible target for {requested:?}");
        }
        Some(primary) => {
            let _ = write!(
                out,
                "chose {} ({}, {:.2})",
                targets[primary.target].id, plan.strategy, primary.score
            );
            if let Some(other) = plan.candidates.iter().find(|c| c.target != primary.target) {
                let (ours, theirs) = (&primary.breakdown, &other.breakdown);
                let mut facts: Vec<String> = Vec::with_capacity(3);
                facts.extend(percent_change(
                    ours.cost.raw,
                    theirs.cost.raw,
                    "cheaper",
                    "more expensive",
                ));
                facts.extend(percent_change(
                    ours.speed.raw,
                    theirs.speed.raw,
                    "faster",
                    "slower",
                ));
                facts.push(
                    match tier_rank(targets[primary.target].spec.tier)
                        .total_cmp(&tier_rank(targets[other.target].spec.tier))
                    {
                        std::cmp::Ordering::Equal => "equal quality tier".into(),
                        std::cmp::Ordering::Greater => "higher quality tier".into(),
                        std::cmp::Ordering::Less => "lower quality tier".into(),
                    },
                );
                let _ = write!(
                    out,
                    ": {} than {} ({:.2})",
                    facts.join(", "),
                    targets[other.target].id,
                    other.score
                );
            }
            let backups: Vec<String> = chain
                .map(|c| {
                    let spec = &targets[c.target].spec;
                    if spec.provider == targets[primary.target].spec.provider {
                        targets[c.target].id.clone()
                    } else {
                        format!("{} (other provider)", targets[c.target].id)
                    }
                })
                .collect();
            if !backups.is_empty() {
                let _ = write!(out, "; backups: {}", backups.join(", "));
            }
        }
    }
    // Eligible targets whose circuit is not simply closed: probing, or forced by an operator.
    let circuits: Vec<String> = plan
        .candidates
        .iter()
        .filter(|c| c.circuit != breaker::State::Closed)
        .map(|c| format!("{} {}", targets[c.target].id, c.circuit))
        .collect();
    if !circuits.is_empty() {
        let _ = write!(out, "; circuits: {}", circuits.join(", "));
    }
    if !plan.ineligible.is_empty() {
        out.push_str("; filtered: ");
        for (i, (id, reason)) in plan.ineligible.iter().take(LISTED_REJECTIONS).enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            let _ = write!(out, "{id}: {reason}");
        }
        if plan.ineligible.len() > LISTED_REJECTIONS {
            let _ = write!(
                out,
                "; and {} more",
                plan.ineligible.len() - LISTED_REJECTIONS
            );
        }
    }
    out
}
