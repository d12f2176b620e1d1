//! A route plan as the wire shows it: in `Route` answers and in traces.

use switchyard_proto::v1 as pb;

use crate::scoring::RoutePlan;
use crate::snapshot::LiveSnapshot;

pub fn wire_candidates(
    plan: &RoutePlan,
    snapshot: &LiveSnapshot,
) -> (Vec<pb::Candidate>, Vec<pb::Ineligible>) {
    let candidates = plan
        .candidates
        .iter()
        .zip(1..)
        .map(|(c, rank)| {
            let target = &snapshot.routing.targets[c.target];
            pb::Candidate {
                target_id: target.id.clone(),
                provider: target.spec.provider.clone(),
                model: target.spec.name.clone(),
                rank,
                score: c.score,
                dimensions: Some(pb::DimensionScores {
                    quality: c.dimensions.quality,
                    speed: c.dimensions.speed,
                    cost: c.dimensions.cost,
                    health: c.dimensions.health,
                    workspace_fit: c.dimensions.workspace_fit,
                }),
                estimated_cost_usd: c.estimated_cost_usd,
            }
        })
        .collect();
    let ineligible = plan
        .ineligible
        .iter()
        .map(|(target_id, reason)| pb::Ineligible {
            target_id: target_id.clone(),
            reason: reason.clone(),
        })
        .collect();
    (candidates, ineligible)
}
