//! `HealthService`: each target's state, its telemetry over 10 s, 1 min and
//! 5 min, and the evidence behind the state, as the aggregator last judged it.

use std::sync::Arc;

use switchyard_domain::timestamp_from_millis;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::health_service_server::HealthService;
use tonic::{Request, Response, Status};

use crate::aggregation::HealthBoard;
use crate::health::target_health;
use crate::leadership::Leadership;

pub struct HealthApi {
    board: Arc<HealthBoard>,
    leadership: Arc<Leadership>,
}

impl HealthApi {
    pub fn new(board: Arc<HealthBoard>, leadership: Arc<Leadership>) -> Self {
        Self { board, leadership }
    }
}

#[tonic::async_trait]
impl HealthService for HealthApi {
    async fn list_target_health(
        &self,
        req: Request<pb::ListTargetHealthRequest>,
    ) -> Result<Response<pb::ListTargetHealthResponse>, Status> {
        let wanted = req.into_inner().target_id;
        if self.leadership.leading_epoch().is_none() {
            // Only the leader aggregates; ClusterService.Status names it.
            return Err(Status::unavailable(
                "this control-plane replica follows: target health is judged by the leader; try again (a load balancer reaches it)",
            ));
        }
        let board = self.board.latest();
        if board.evaluated_at_ms == 0 {
            return Err(Status::unavailable(
                "target health has not been evaluated yet; try again in a second",
            ));
        }
        let targets: Vec<pb::TargetHealth> = board
            .views
            .iter()
            .filter(|v| wanted.is_empty() || v.target_id == wanted)
            .map(|v| target_health(v, board.evaluated_at_ms))
            .collect();
        if !wanted.is_empty() && targets.is_empty() {
            return Err(Status::not_found(format!(
                "target_id: no target {wanted:?} in the registry"
            )));
        }
        Ok(Response::new(pb::ListTargetHealthResponse {
            targets,
            evaluated_at: Some(timestamp_from_millis(board.evaluated_at_ms)),
        }))
    }
}
