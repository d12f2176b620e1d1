//! Follows the control plane's snapshot stream: hello, then validate each
//! snapshot, swap it in, ACK; or NACK and keep the last good one. Each applied
//! snapshot is also written to the state directory, so a restart serves it
//! until a control plane answers. Reconnects, to the next control-plane
//! replica, with jittered back-off and keeps serving on the last good snapshot
//! while the control plane is away.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use switchyard_domain::RoutingSnapshot;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_proto::v1::sync_request::Kind;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::control_plane::Rotation;
use crate::metrics::Metrics;
use crate::snapshot::{LiveSnapshot, SnapshotCell};
use crate::state_dir::{StateDir, blocking, write_atomic};

pub struct Subscriber {
    control_planes: Rotation,
    cell: SnapshotCell,
    node_id: String,
    region: String,
    metrics: Arc<Metrics>,
    /// Take the operators' circuit overrides from each snapshot applied.
    breakers: Arc<Breakers>,
    state: Arc<StateDir>,
    /// The last snapshot write; the next one waits for it so an older
    /// snapshot never lands over a newer one.
    writing: Option<JoinHandle<()>>,
    /// The served snapshot came from disk, not yet from a control plane.
    restored: AtomicBool,
}

/// What applying one message came to.
struct Applied {
    reply: Kind,
    /// The snapshot as received, when it was swapped in and should be persisted.
    persist: Option<Vec<u8>>,
}

impl Subscriber {
    pub fn new(
        control_planes: Rotation,
        cell: SnapshotCell,
        node_id: String,
        region: String,
        metrics: Arc<Metrics>,
        breakers: Arc<Breakers>,
        state: Arc<StateDir>,
    ) -> Self {
        Self {
            control_planes,
            cell,
            node_id,
            region,
            metrics,
            breakers,
            state,
            writing: None,
            restored: AtomicBool::new(false),
        }
    }

    /// Serves the snapshot an earlier run persisted, if there is a valid one,
    /// until a control plane answers; returns its version. A missing,
    /// unreadable or invalid file is logged and ignored.
    pub async fn restore(&self) -> Option<u64> {
        let path = self.state.snapshot_file();
        let read = path.clone();
        let file = blocking(move || match std::fs::read(&read) {
            Ok(bytes) => {
                let modified = std::fs::metadata(&read).and_then(|m| m.modified()).ok();
                Ok(Some((bytes, modified)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await;
        let (bytes, modified) = match file {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the persisted snapshot; waiting for the control plane");
                return None;
            }
        };
        let routing = pb::Snapshot::decode(bytes.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|wire| RoutingSnapshot::try_from(wire).map_err(|e| e.to_string()));
        let routing = match routing {
            Ok(routing) => routing,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "ignoring the persisted snapshot; waiting for the control plane");
                return None;
            }
        };
        let (version, epoch) = (routing.version, routing.epoch);
        // It was applied when it was written, so its age says how stale it is.
        self.install(routing, modified.unwrap_or_else(SystemTime::now));
        self.restored.store(true, Ordering::Relaxed);
        tracing::info!(
            version,
            epoch,
            "serving the persisted snapshot until the control plane answers"
        );
        Some(version)
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let replica = self.control_planes.next_replica();
            let (url, channel) = (replica.url.clone(), replica.channel.clone());
            let session = tokio::select! {
                () = shutdown.cancelled() => break,
                result = self.session(channel, &mut backoff) => result,
            };
            self.metrics.control_plane_connected.set(0);
            let wait = backoff.next_delay();
            match session {
                Ok(()) => {
                    tracing::warn!(control_plane = %url, retry_in = ?wait, "snapshot stream closed by the control plane")
                }
                Err(e) => {
                    tracing::warn!(control_plane = %url, error = %e.message(), retry_in = ?wait, "snapshot stream unavailable; serving the last good snapshot")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(writing) = self.writing.take() {
            let _ = writing.await;
        }
    }

    async fn session(
        &mut self,
        channel: Channel,
        backoff: &mut Backoff,
    ) -> Result<(), tonic::Status> {
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
        let mut inbound = SnapshotServiceClient::new(channel)
            .sync(ReceiverStream::new(rx))
            .await?
            .into_inner();
        self.metrics.control_plane_connected.set(1);
        while let Some(message) = inbound.message().await? {
            backoff.reset();
            let reply = self.handle(message).await;
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

    /// Applies one message, starts persisting the snapshot if it was swapped
    /// in, and returns the ACK or NACK to send.
    async fn handle(&mut self, message: pb::SyncResponse) -> Kind {
        let applied = self.apply(message);
        if let Some(bytes) = applied.persist {
            self.persist(bytes).await;
        }
        applied.reply
    }

    /// Writes the snapshot to the state directory off the async threads. A
    /// failed write is logged; serving goes on.
    async fn persist(&mut self, bytes: Vec<u8>) {
        if let Some(previous) = self.writing.take() {
            let _ = previous.await;
        }
        let path = self.state.snapshot_file();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = write_atomic(&path, &bytes) {
                tracing::warn!(file = %path.display(), error = %e, "cannot persist the snapshot; a restart would wait for the control plane");
            }
        }));
    }

    /// Validates and swaps in one snapshot.
    fn apply(&self, message: pb::SyncResponse) -> Applied {
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
            // A snapshot from disk is replaced even by the same version: the
            // control plane's database may have been rebuilt since it was written.
            if version == current.version()
                && wire.epoch == current.routing.epoch
                && !self.restored.load(Ordering::Relaxed)
            {
                return Applied {
                    reply: Kind::Ack(pb::Ack { version, nonce }),
                    persist: None,
                };
            }
        }
        let encoded = wire.encode_to_vec();
        let wire_epoch = wire.epoch;
        match RoutingSnapshot::try_from(wire) {
            Ok(routing) => {
                self.install(routing, SystemTime::now());
                self.restored.store(false, Ordering::Relaxed);
                tracing::info!(version, epoch = wire_epoch, "applied snapshot");
                Applied {
                    reply: Kind::Ack(pb::Ack { version, nonce }),
                    persist: Some(encoded),
                }
            }
            Err(e) => self.reject(version, nonce, e.to_string()),
        }
    }

    /// Prepares a validated snapshot and swaps it in.
    fn install(&self, routing: RoutingSnapshot, applied_at: SystemTime) {
        // Overrides first: a target forced open gets no request from the new snapshot.
        self.breakers.apply_overrides(&routing);
        let live = LiveSnapshot::prepare(routing);
        for (provider, endpoint) in &live.endpoints {
            if let Some(reason) = endpoint.unavailable_reason() {
                tracing::warn!(%provider, %reason, "provider not callable on this node");
            }
        }
        let (version, epoch) = (live.version(), live.routing.epoch);
        self.cell.store(Some(Arc::new(live)));
        self.metrics
            .snapshot_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.metrics
            .snapshot_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
        let applied_at = applied_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.metrics
            .snapshot_applied_timestamp_seconds
            .set(i64::try_from(applied_at).unwrap_or(i64::MAX));
    }

    fn reject(&self, version: u64, nonce: String, error: String) -> Applied {
        self.metrics.snapshots_rejected.inc();
        tracing::warn!(version, %error, "rejected snapshot; keeping the last good one");
        Applied {
            reply: Kind::Nack(pb::Nack {
                version,
                nonce,
                error,
            }),
            persist: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use arc_swap::ArcSwapOption;
    use switchyard_domain::{ProviderKind, ProviderSpec, SimulatedParams, builtin_strategies};

    use super::*;
    use crate::control_plane::ControlPlanes;

    fn subscriber(dir: &Path) -> Subscriber {
        let planes = ControlPlanes::connect_lazy(
            &["http://127.0.0.1:9".to_owned()],
            &switchyard_tls::ClientTls::default(),
        )
        .unwrap();
        Subscriber::new(
            planes.rotation(),
            Arc::new(ArcSwapOption::empty()),
            "n".into(),
            String::new(),
            Arc::new(Metrics::new()),
            Arc::new(Breakers::default()),
            Arc::new(StateDir::open(dir).unwrap()),
        )
    }

    fn snapshot(version: u64, epoch: u64) -> pb::SyncResponse {
        let provider = ProviderSpec {
            name: "sim".into(),
            kind: ProviderKind::Simulated,
            base_url: String::new(),
            api_key_ref: String::new(),
            headers: BTreeMap::new(),
            enabled: true,
            simulated: Some(SimulatedParams {
                seed: 1,
                first_token_latency_ms: 1,
                tokens_per_second: 10,
                failure_rate: 0.0,
                output_tokens: 2,
            }),
        };
        let routing = RoutingSnapshot::new(
            version,
            epoch,
            0,
            vec![provider],
            vec![],
            builtin_strategies(),
            "balanced".into(),
        )
        .unwrap();
        pb::SyncResponse {
            nonce: format!("nonce-{version}"),
            snapshot: Some(routing.to_wire()),
        }
    }

    fn served(s: &Subscriber) -> Option<(u64, u64)> {
        s.cell
            .load()
            .as_ref()
            .map(|l| (l.version(), l.routing.epoch))
    }

    /// Applies a message as a session does and waits for the write.
    async fn handle(s: &mut Subscriber, message: pb::SyncResponse) -> Kind {
        let reply = s.handle(message).await;
        if let Some(writing) = s.writing.take() {
            writing.await.unwrap();
        }
        reply
    }

    #[tokio::test]
    async fn valid_snapshots_are_swapped_in_and_acked() {
        let dir = tempfile::tempdir().unwrap();
        let s = subscriber(dir.path());
        assert!(
            matches!(s.apply(snapshot(3, 1)).reply, Kind::Ack(pb::Ack { version: 3, ref nonce }) if nonce == "nonce-3")
        );
        assert_eq!(served(&s), Some((3, 1)));
        assert!(s.metrics.snapshot_applied_timestamp_seconds.get() > 1_600_000_000);
        // The same version again (a reconnect) is acked without a swap.
        let before = s.cell.load_full();
        let again = s.apply(snapshot(3, 1));
        assert!(matches!(again.reply, Kind::Ack(_)));
        assert!(again.persist.is_none());
        assert!(Arc::ptr_eq(&before.unwrap(), &s.cell.load_full().unwrap()));
    }

    #[tokio::test]
    async fn invalid_and_stale_epoch_snapshots_are_nacked_and_the_last_good_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let s = subscriber(dir.path());
        s.apply(snapshot(3, 2));

        let mut broken = snapshot(4, 2);
        if let Some(wire) = broken.snapshot.as_mut() {
            wire.default_strategy = "missing".into();
        }
        match s.apply(broken).reply {
            Kind::Nack(nack) => {
                assert_eq!(nack.version, 4);
                assert!(nack.error.contains("default_strategy"), "{}", nack.error);
            }
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert_eq!(served(&s), Some((3, 2)));

        match s.apply(snapshot(9, 1)).reply {
            Kind::Nack(nack) => assert!(nack.error.contains("epoch 1 is older"), "{}", nack.error),
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert!(matches!(
            s.apply(pb::SyncResponse {
                nonce: "x".into(),
                snapshot: None
            })
            .reply,
            Kind::Nack(_)
        ));
        assert_eq!(served(&s), Some((3, 2)));
        assert_eq!(s.metrics.snapshots_rejected.get(), 3);
    }

    #[tokio::test]
    async fn an_applied_snapshot_is_served_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = subscriber(dir.path());
        assert_eq!(first.restore().await, None);
        assert!(matches!(
            handle(&mut first, snapshot(3, 2)).await,
            Kind::Ack(_)
        ));
        assert!(matches!(
            handle(&mut first, snapshot(4, 2)).await,
            Kind::Ack(_)
        ));
        // A rejected snapshot is not persisted.
        assert!(matches!(
            handle(&mut first, snapshot(9, 1)).await,
            Kind::Nack(_)
        ));
        drop(first);

        let second = subscriber(dir.path());
        assert_eq!(second.restore().await, Some(4));
        assert_eq!(served(&second), Some((4, 2)));
        assert_eq!(second.metrics.snapshot_version.get(), 4);
        assert!(second.metrics.snapshot_applied_timestamp_seconds.get() > 1_600_000_000);
    }

    #[tokio::test]
    async fn a_persisted_snapshot_keeps_older_epochs_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = subscriber(dir.path());
        handle(&mut first, snapshot(3, 5)).await;
        drop(first);

        let second = subscriber(dir.path());
        assert_eq!(second.restore().await, Some(3));
        match second.apply(snapshot(9, 4)).reply {
            Kind::Nack(nack) => {
                assert_eq!(nack.version, 9);
                assert!(
                    nack.error.contains("epoch 4 is older than the current 5"),
                    "{}",
                    nack.error
                );
            }
            other => panic!("expected a NACK, got {other:?}"),
        }
        assert_eq!(served(&second), Some((3, 5)));
        // The control plane's copy of the same version replaces the one from
        // disk; after that, the same version is acked without a swap.
        let restored = second.cell.load_full().unwrap();
        assert!(second.apply(snapshot(3, 5)).persist.is_some());
        let fresh = second.cell.load_full().unwrap();
        assert!(!Arc::ptr_eq(&restored, &fresh));
        assert!(second.apply(snapshot(3, 5)).persist.is_none());
        assert!(Arc::ptr_eq(&fresh, &second.cell.load_full().unwrap()));
        assert!(matches!(second.apply(snapshot(10, 5)).reply, Kind::Ack(_)));
        assert_eq!(served(&second), Some((10, 5)));
    }

    #[tokio::test]
    async fn a_corrupt_or_invalid_persisted_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let s = subscriber(dir.path());
        let file = s.state.snapshot_file();
        std::fs::write(&file, b"\xff\xff\xff not a snapshot").unwrap();
        assert_eq!(s.restore().await, None);
        assert_eq!(served(&s), None);

        let mut invalid = snapshot(4, 1).snapshot.unwrap();
        invalid.default_strategy = "missing".into();
        std::fs::write(&file, invalid.encode_to_vec()).unwrap();
        assert_eq!(s.restore().await, None);
        assert_eq!(served(&s), None);
        assert_eq!(s.metrics.snapshot_version.get(), 0);
    }
}
