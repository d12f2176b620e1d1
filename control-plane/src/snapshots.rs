//! The snapshot publisher: turns the registry and the latest fleet telemetry
//! into validated, versioned routing snapshots and hands the newest to every
//! stream through a watch channel, so a slow data plane skips versions instead
//! of queueing them. Versions come from a counter in the database: they only
//! grow, across restarts too.

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::{RoutingSnapshot, Telemetry};
use switchyard_proto::v1 as pb;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{Revision, Store, StoreError, now_ms};

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

/// What the current snapshot was built from.
#[derive(Default)]
struct Inputs {
    revision: Option<Revision>,
    telemetry: Telemetry,
}

pub struct SnapshotPublisher {
    store: Store,
    epoch: u64,
    default_strategy: String,
    current: watch::Sender<Option<Arc<pb::Snapshot>>>,
    /// Latest telemetry from the quality engine; published with the next snapshot.
    telemetry: Mutex<Telemetry>,
    /// One rebuild at a time, so versions are published in order.
    published: Mutex<Inputs>,
}

impl SnapshotPublisher {
    pub fn new(store: Store, epoch: u64, default_strategy: String) -> Self {
        Self {
            store,
            epoch,
            default_strategy,
            current: watch::Sender::new(None),
            telemetry: Mutex::new(Telemetry::default()),
            published: Mutex::new(Inputs::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<pb::Snapshot>>> {
        self.current.subscribe()
    }

    pub fn current_version(&self) -> u64 {
        self.current.borrow().as_ref().map_or(0, |s| s.version)
    }

    /// Takes new telemetry and republishes when it says something new, or when
    /// the published telemetry is half-way to stale (so data planes keep
    /// trusting numbers that are still true).
    pub async fn offer_telemetry(&self, telemetry: Telemetry) -> Result<u64, SnapshotError> {
        let refresh_due = {
            let published = self.published.lock().await;
            let age = u64::try_from(
                telemetry
                    .computed_at_ms
                    .saturating_sub(published.telemetry.computed_at_ms),
            )
            .unwrap_or(0);
            published.telemetry.targets != telemetry.targets
                || (!telemetry.targets.is_empty() && age >= telemetry.stale_after_ms / 2)
        };
        *self.telemetry.lock().await = telemetry;
        if refresh_due {
            self.publish(true).await
        } else {
            Ok(self.current_version())
        }
    }

    /// Publishes a snapshot if the registry changed since the last one. An
    /// invalid registry state keeps the last good snapshot.
    pub async fn refresh(&self) -> Result<u64, SnapshotError> {
        self.publish(false).await
    }

    async fn publish(&self, telemetry_changed: bool) -> Result<u64, SnapshotError> {
        let mut published = self.published.lock().await;
        let revision = self.store.revision().await?;
        if published.revision == Some(revision) && !telemetry_changed {
            return Ok(self.current_version());
        }
        let telemetry = self.telemetry.lock().await.clone();
        let state = self.store.registry_at_one_revision().await?;
        let invalid = |source| SnapshotError::Invalid {
            revision: state.revision,
            source,
        };
        // Validate before taking a version number, so a bad registry burns none.
        let snapshot = RoutingSnapshot::new(
            u64::MAX,
            self.epoch,
            now_ms(),
            state.providers,
            state.models,
            state.strategies,
            self.default_strategy.clone(),
        )
        .and_then(|snapshot| snapshot.with_workspaces(state.workspaces))
        .map_err(invalid)?
        .with_telemetry(telemetry.clone());
        let version = self.store.next_snapshot_version().await?;
        let mut wire = snapshot.to_wire();
        wire.version = version;
        self.current.send_replace(Some(Arc::new(wire)));
        tracing::info!(
            version,
            revision = state.revision,
            telemetry_targets = telemetry.targets.len(),
            "published snapshot"
        );
        *published = Inputs {
            revision: Some(state.revision),
            telemetry,
        };
        Ok(version)
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
