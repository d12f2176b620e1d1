//! A route plan and a workload profile as the wire shows them: in `Route`
//! answers and in traces, so both always tell the same story.

use switchyard_proto::v1 as pb;

use crate::scoring::{Dimension, RoutePlan};
use crate::snapshot::LiveSnapshot;
use crate::workload::{Source, WorkloadProfile};

fn dimension(d: &Dimension, unit: &str) -> pb::DimensionScore {
    pb::DimensionScore {
        raw: d.raw,
        unit: unit.to_owned(),
        score: d.score,
        weight: d.weight,
        contribution: d.contribution,
        source: d.source.as_str().to_owned(),
    }
}

pub fn candidates(
    plan: &RoutePlan,
    snapshot: &LiveSnapshot,
) -> (Vec<pb::Candidate>, Vec<pb::Ineligible>) {
    let candidates = plan
        .candidates
        .iter()
        .zip(1..)
        .map(|(c, rank)| {
            let target = &snapshot.routing.targets[c.target];
            let b = &c.breakdown;
            pb::Candidate {
                target_id: target.id.clone(),
                provider: target.spec.provider.clone(),
                model: target.spec.name.clone(),
                rank,
                score: c.score,
                dimensions: Some(pb::DimensionScores {
                    quality: Some(dimension(&b.quality, "tier")),
                    speed: Some(dimension(&b.speed, "ms")),
                    cost: Some(dimension(&b.cost, "usd")),
                    health: Some(dimension(&b.health, "error_rate")),
                    workspace_fit: Some(dimension(&b.workspace_fit, "fit")),
                }),
                estimated_cost_usd: c.estimated_cost_usd(),
                chain_position: c.chain_position,
                family: target.spec.family.clone(),
                region: target.spec.region.clone(),
                tier: target.spec.tier.as_str().to_owned(),
                circuit: c.circuit.as_str().to_owned(),
            }
        })
        .collect();
    let ineligible = plan
        .ineligible
        .iter()
        .map(|(target_id, reason)| pb::Ineligible {
            target_id: target_id.clone(),
            reason: reason.to_string(),
        })
        .collect();
    (candidates, ineligible)
}

pub fn chain(plan: &RoutePlan, snapshot: &LiveSnapshot) -> Vec<String> {
    plan.chain()
        .map(|c| snapshot.routing.targets[c.target].id.clone())
        .collect()
}

pub fn workload(w: &WorkloadProfile) -> pb::WorkloadProfile {
    pb::WorkloadProfile {
        intent: w.intent.as_str().to_owned(),
        intent_requested: matches!(w.intent_source, Source::Requested),
        intent_reason: w.intent_reason.clone(),
        input_tokens: w.input_tokens,
        output_tokens: w.output_tokens,
        needs_tools: w.capabilities.tools,
        needs_vision: w.capabilities.vision,
        needs_json_output: w.capabilities.json_output,
        needs_streaming: w.capabilities.streaming,
        timeout_profile: w.timeout.as_str().to_owned(),
        timeout_ms: u64::try_from(w.timeout.duration().as_millis()).unwrap_or(u64::MAX),
    }
}
