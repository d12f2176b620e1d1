//! `HealthService`: fleet telemetry per target. Aggregation does not exist yet,
//! so the service says so instead of returning empty numbers.

use switchyard_proto::v1 as pb;
use switchyard_proto::v1::health_service_server::HealthService;
use tonic::{Request, Response, Status};

pub struct HealthApi;

#[tonic::async_trait]
impl HealthService for HealthApi {
    async fn list_target_health(
        &self,
        _req: Request<pb::ListTargetHealthRequest>,
    ) -> Result<Response<pb::ListTargetHealthResponse>, Status> {
        Err(Status::unimplemented(
            "target health aggregation is not available in this version",
        ))
    }
}
