//! The snapshot publisher: turns the registry into validated, versioned routing
//! snapshots and hands the newest to every stream through a watch channel, so a
//! slow data plane skips versions instead of queueing them.

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::RoutingSnapshot;
use switchyard_proto::v1 as pb;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, now_ms};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("registry revision {revision} does not form a valid snapshot: {source}")]
    Invalid {
        revision: u64,
        source: switchyard_domain::ValidationError,
    },
}

pub struct SnapshotPublisher {
    store: Store,
    epoch: u64,
    default_strategy: String,
    current: watch::Sender<Option<Arc<pb::Snapshot>>>,
    /// One rebuild at a time, so versions are published in order.
    rebuild: Mutex<()>,
}

impl SnapshotPublisher {
    pub fn new(store: Store, epoch: u64, default_strategy: String) -> Self {
        Self {
            store,
            epoch,
            default_strategy,
            current: watch::Sender::new(None),
            rebuild: Mutex::new(()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<pb::Snapshot>>> {
        self.current.subscribe()
    }

    pub fn current_version(&self) -> u64 {
        self.current.borrow().as_ref().map_or(0, |s| s.version)
    }

    /// Publishes a snapshot of the registry if its revision is newer than the
    /// current snapshot. An invalid registry state keeps the last good snapshot.
    pub async fn refresh(&self) -> Result<u64, SnapshotError> {
        let _one_at_a_time = self.rebuild.lock().await;
        let published = self.current_version();
        if self.store.revision().await? <= published {
            return Ok(published);
        }
        let state = self.store.registry_at_one_revision().await?;
        let revision = state.revision;
        let snapshot = RoutingSnapshot::new(
            revision,
            self.epoch,
            now_ms(),
            state.providers,
            state.models,
            state.strategies,
            self.default_strategy.clone(),
        )
        .and_then(|snapshot| snapshot.with_workspaces(state.workspaces))
        .map_err(|source| SnapshotError::Invalid { revision, source })?;
        self.current
            .send_replace(Some(Arc::new(snapshot.to_wire())));
        tracing::info!(version = revision, "published snapshot");
        Ok(revision)
    }

    /// Picks up registry writes made through other control-plane replicas.
    pub async fn poll(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "snapshot refresh failed; data planes keep the last good snapshot");
                    }
                }
            }
        }
    }
}
