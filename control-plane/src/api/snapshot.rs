//! `SnapshotService.Sync`: hello, then the full current snapshot at once and the
//! newest one after every change; ACKs and NACKs are recorded per node.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_server::SnapshotService;
use switchyard_proto::v1::sync_request::Kind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::fleet::{Fleet, StreamId};
use crate::snapshots::SnapshotPublisher;
use crate::store::now_ms;

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SnapshotApi {
    node_id: String,
    publisher: Arc<SnapshotPublisher>,
    fleet: Arc<Fleet>,
    shutdown: CancellationToken,
}

impl SnapshotApi {
    pub fn new(
        node_id: String,
        publisher: Arc<SnapshotPublisher>,
        fleet: Arc<Fleet>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            node_id,
            publisher,
            fleet,
            shutdown,
        }
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SyncResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SnapshotService for SnapshotApi {
    type SyncStream = SyncStream;

    async fn sync(
        &self,
        req: Request<Streaming<pb::SyncRequest>>,
    ) -> Result<Response<SyncStream>, Status> {
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 10s"))??;
        let hello = match first.and_then(|m| m.kind) {
            Some(Kind::Hello(hello)) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "hello: the first message of a stream must be a hello",
                ));
            }
        };
        if hello.node_id.is_empty() || hello.node_id.len() > 256 {
            return Err(Status::invalid_argument(
                "hello.node_id: required, at most 256 characters",
            ));
        }
        tracing::info!(node = %hello.node_id, last_applied = hello.last_applied_version, "data plane connected");
        let stream_id = self
            .fleet
            .connect(pb::DataPlaneStatus {
                node_id: hello.node_id.clone(),
                region: hello.region.clone(),
                connected_to: self.node_id.clone(),
                acked_version: hello.last_applied_version,
                connected_at: Some(switchyard_domain::timestamp_from_millis(now_ms())),
                ..Default::default()
            })
            .await;

        let (tx, rx) = mpsc::channel(2);
        let session = Session {
            stream_id,
            node_id: hello.node_id,
            fleet: self.fleet.clone(),
            updates: self.publisher.subscribe(),
            inbound,
            outbound: tx,
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(session.run());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

struct Session {
    stream_id: StreamId,
    node_id: String,
    fleet: Arc<Fleet>,
    updates: tokio::sync::watch::Receiver<Option<Arc<pb::Snapshot>>>,
    inbound: Streaming<pb::SyncRequest>,
    outbound: mpsc::Sender<Result<pb::SyncResponse, Status>>,
    shutdown: CancellationToken,
}

impl Session {
    async fn run(mut self) {
        let mut sent_version = 0;
        // A version this node refused before is not sent again, not even on a new stream.
        let refused = self.fleet.refused_by(&self.node_id).await;
        // The current snapshot goes out at once: mark it unseen.
        self.updates.mark_changed();
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = self.outbound.closed() => break,
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let next = self.updates.borrow_and_update().clone();
                    let Some(snapshot) = next else { continue };
                    // Versions only move forward; a refused version is never resent.
                    if snapshot.version <= sent_version || snapshot.version == refused {
                        continue;
                    }
                    sent_version = snapshot.version;
                    let nonce = uuid::Uuid::new_v4().to_string();
                    self.fleet.sent(self.stream_id, sent_version, &nonce).await;
                    let message = pb::SyncResponse { nonce, snapshot: Some((*snapshot).clone()) };
                    if self.outbound.send(Ok(message)).await.is_err() {
                        break;
                    }
                }
                message = self.inbound.message() => match message {
                    Ok(Some(pb::SyncRequest { kind: Some(Kind::Ack(ack)) })) => {
                        if ack.version > sent_version {
                            tracing::warn!(node = %self.node_id, version = ack.version, "ack for a version never sent on this stream; ignored");
                            continue;
                        }
                        self.fleet.acked(self.stream_id, ack.version).await;
                    }
                    Ok(Some(pb::SyncRequest { kind: Some(Kind::Nack(nack)) })) => {
                        tracing::warn!(node = %self.node_id, version = nack.version, error = %nack.error, "data plane rejected snapshot");
                        self.fleet.nacked(self.stream_id, nack.version, nack.error).await;
                    }
                    Ok(Some(_)) => {
                        let _ = self.outbound.send(Err(Status::invalid_argument("only ack or nack may follow the hello"))).await;
                        break;
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        self.fleet.disconnect(self.stream_id).await;
        tracing::info!(node = %self.node_id, "data plane disconnected");
    }
}
