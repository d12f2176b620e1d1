//! Follows the control plane's snapshot stream: hello, then validate each
//! snapshot, swap it in, ACK; or NACK and keep the last good one. Reconnects
//! with jittered back-off and keeps serving on the last good snapshot while the
//! control plane is away.

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::RoutingSnapshot;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::sync_request::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::snapshot::{LiveSnapshot, SnapshotCell};

pub struct Subscriber {
    pub client: SnapshotServiceClient<Channel>,
    pub cell: SnapshotCell,
    pub node_id: String,
    pub region: String,
    pub metrics: Arc<Metrics>,
}

impl Subscriber {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let session = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.session(&mut backoff) => result,
            };
            let wait = backoff.next_delay();
            match session {
                Ok(()) => {
                    tracing::warn!(retry_in = ?wait, "snapshot stream closed by the control plane")
                }
                Err(e) => {
                    tracing::warn!(error = %e.message(), retry_in = ?wait, "snapshot stream unavailable; serving the last good snapshot")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn session(&mut self, backoff: &mut Backoff) -> Result<(), tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        let last_applied = self.cell.load().as_ref().map_or(0, |s| s.version());
        let hello = pb::Hello {
            node_id: self.node_id.clone(),
            region: self.region.clone(),
            last_applied_version: last_applied,
        };
        let _ = tx
            .send(pb::SyncRequest {
                kind: Some(Kind::Hello(hello)),
            })
            .await;
        let mut inbound = self
            .client
            .sync(ReceiverStream::new(rx))
            .await?
            .into_inner();
        while let Some(message) = inbound.message().await? {
            backoff.reset();
            let reply = self.apply(message);
            if tx
                .send(pb::SyncRequest { kind: Some(reply) })
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    /// Validates and swaps in one snapshot; returns the ACK or NACK to send.
    fn apply(&self, message: pb::SyncResponse) -> Kind {
        let nonce = message.nonce;
        let Some(wire) = message.snapshot else {
            return self.reject(0, nonce, "message carries no snapshot".into());
        };
        let version = wire.version;
        let current = self.cell.load_full();
        if let Some(current) = &current {
            if wire.epoch < current.routing.epoch {
                return self.reject(
                    version,
                    nonce,
                    format!(
                        "epoch {} is older than the current {}",
                        wire.epoch, current.routing.epoch
                    ),
                );
            }
            if version == current.version() && wire.epoch == current.routing.epoch {
                return Kind::Ack(pb::Ack { version, nonce });
            }
        }
        match RoutingSnapshot::try_from(wire) {
            Ok(routing) => {
                let live = LiveSnapshot::prepare(routing);
                for (provider, endpoint) in &live.endpoints {
                    if let Some(reason) = endpoint.unavailable_reason() {
                        tracing::warn!(%provider, %reason, "provider not callable on this node");
                    }
                }
                self.cell.store(Some(Arc::new(live)));
                self.metrics
                    .snapshot_version
                    .set(i64::try_from(version).unwrap_or(i64::MAX));
                tracing::info!(version, "applied snapshot");
                Kind::Ack(pb::Ack { version, nonce })
            }
            Err(e) => self.reject(version, nonce, e.to_string()),
        }
    }

    fn reject(&self, version: u64, nonce: String, error: String) -> Kind {
        self.metrics.snapshots_rejected.inc();
        tracing::warn!(version, %error, "rejected snapshot; keeping the last good one");
        Kind::Nack(pb::Nack {
            version,
            nonce,
            error,
        })
    }
}
