//! `ClusterService.Status`: who leads, at which epoch, every replica's role,
//! and the data planes' snapshot versions. Leader and replicas come from etcd
//! when it answers, else from this replica's own view (and the answer says
//! why). Without etcd the single replica leads.

use std::sync::Arc;

use switchyard_proto::v1 as pb;
use switchyard_proto::v1::cluster_service_server::ClusterService;
use tonic::{Request, Response, Status};

use crate::election::{ElectionView, Members};
use crate::fleet::Fleet;
use crate::leadership::{Leadership, Role};
use crate::snapshots::SnapshotPublisher;

pub struct ClusterApi {
    node_id: String,
    leadership: Arc<Leadership>,
    /// None without etcd.
    election: Option<ElectionView>,
    publisher: Arc<SnapshotPublisher>,
    fleet: Arc<Fleet>,
}

impl ClusterApi {
    pub fn new(
        node_id: String,
        leadership: Arc<Leadership>,
        election: Option<ElectionView>,
        publisher: Arc<SnapshotPublisher>,
        fleet: Arc<Fleet>,
    ) -> Self {
        Self {
            node_id,
            leadership,
            election,
            publisher,
            fleet,
        }
    }

    /// What this replica knows by itself: whether it leads.
    fn own_view(&self) -> Members {
        Members {
            leader: self
                .leadership
                .leading_epoch()
                .map(|epoch| (self.node_id.clone(), epoch)),
            replicas: vec![self.node_id.clone()],
        }
    }
}

fn role_of(node: &str, leader: Option<&(String, u64)>) -> pb::Role {
    if leader.is_some_and(|(l, _)| l == node) {
        pb::Role::Leader
    } else {
        pb::Role::Follower
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let (members, election_error) = match &self.election {
            None => (self.own_view(), String::new()),
            Some(election) => match election.members().await {
                Ok(members) => (members, String::new()),
                Err(e) => (self.own_view(), e.to_string()),
            },
        };
        let (leader, epoch) = members.leader.clone().unwrap_or_default();
        let current = self.publisher.current();
        let version = current.as_ref().map_or(0, |s| s.version);
        Ok(Response::new(pb::StatusResponse {
            leader,
            epoch,
            node_id: self.node_id.clone(),
            replicas: members
                .replicas
                .iter()
                .map(|node| pb::ReplicaStatus {
                    node_id: node.clone(),
                    role: role_of(node, members.leader.as_ref()).into(),
                })
                .collect(),
            snapshot_version: version,
            data_planes: self.fleet.list(version).await,
            role: match self.leadership.role() {
                Role::Leader { .. } => pb::Role::Leader,
                Role::Follower => pb::Role::Follower,
            }
            .into(),
            snapshot_epoch: current.as_ref().map_or(0, |s| s.epoch),
            elected: self.election.is_some(),
            election_error,
        }))
    }
}
