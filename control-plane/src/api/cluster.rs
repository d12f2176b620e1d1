//! `ClusterService.Status`: who leads, at which epoch, and the data planes'
//! snapshot versions. Without etcd the single replica leads at epoch 0.

use std::sync::Arc;

use switchyard_proto::v1 as pb;
use switchyard_proto::v1::cluster_service_server::ClusterService;
use tonic::{Request, Response, Status};

use crate::fleet::Fleet;
use crate::snapshots::SnapshotPublisher;

pub struct ClusterApi {
    node_id: String,
    epoch: u64,
    publisher: Arc<SnapshotPublisher>,
    fleet: Arc<Fleet>,
}

impl ClusterApi {
    pub fn new(
        node_id: String,
        epoch: u64,
        publisher: Arc<SnapshotPublisher>,
        fleet: Arc<Fleet>,
    ) -> Self {
        Self {
            node_id,
            epoch,
            publisher,
            fleet,
        }
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            leader: self.node_id.clone(),
            epoch: self.epoch,
            node_id: self.node_id.clone(),
            replicas: vec![pb::ReplicaStatus {
                node_id: self.node_id.clone(),
                role: pb::Role::Leader.into(),
            }],
            snapshot_version: self.publisher.current_version(),
            data_planes: self.fleet.list(self.publisher.current_version()).await,
        }))
    }
}
