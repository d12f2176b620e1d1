//! The snapshot publisher: turns the registry and the latest fleet telemetry
//! into validated, versioned routing snapshots and hands the newest to every
//! stream through a watch channel, so a slow data plane skips versions instead
//! of queueing them. Versions come from a counter in the database: they only
//! grow, across restarts too.
//!
//! Registry writes are debounced: a burst of writes becomes one snapshot,
//! published after a short quiet time or a short maximum delay. A snapshot that
//! would remove most targets at once is held until the registry has said so
//! for a while, so a half-read or wrongly emptied registry never reaches data
//! planes.
//!
//! Only the leader publishes: each snapshot is stored under the leader's
//! epoch fence, so a deposed leader publishes nothing. A follower relays the
//! leader's stored snapshots to the data planes connected to it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchyard_domain::{KeyGrant, RoutingSnapshot, Telemetry, TracePayload};
use switchyard_proto::v1 as pb;
use tokio::sync::{Mutex, Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leadership::Leadership;
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
    #[error("the publisher stopped")]
    Stopped,
    #[error("this replica does not lead")]
    NotLeader,
    /// A debounced publication failed; `invalid` when the registry was at fault.
    #[error("{message}")]
    Deferred { invalid: bool, message: String },
}

/// Debounce of registry changes: publish after this much quiet…
const QUIET: Duration = Duration::from_millis(20);
/// …or this long after the first change of a burst, whichever comes first.
const MAX_DELAY: Duration = Duration::from_millis(100);
/// Telemetry whose numbers moved (but no target's state) is republished at most this often.
const TELEMETRY_REFRESH_MS: i64 = 5_000;

/// Guard against mass removal: a snapshot removing more than this share of the
/// enabled targets (and more than `MASS_REMOVAL_MIN` of them) is held…
const MASS_REMOVAL_SHARE: f64 = 0.5;
const MASS_REMOVAL_MIN: usize = 2;

/// What the current snapshot was built from.
#[derive(Default)]
struct Inputs {
    revision: Option<Revision>,
    telemetry: Telemetry,
    /// Enabled targets of the published snapshot.
    targets: HashSet<String>,
    /// A revision held back as a mass removal, and since when.
    held: Option<(Revision, Instant)>,
}

/// Enabled targets (of enabled providers) of a snapshot.
fn enabled_targets(snapshot: &RoutingSnapshot) -> HashSet<String> {
    snapshot
        .targets
        .iter()
        .filter(|t| {
            t.spec.enabled
                && snapshot
                    .providers
                    .get(&t.spec.provider)
                    .is_some_and(|p| p.enabled)
        })
        .map(|t| t.id.clone())
        .collect()
}

/// What a debounced publication produced: the version, or whether the
/// registry was at fault and why not.
type Published = Result<u64, (bool, String)>;

/// Registry writes waiting for the next debounced publication.
struct Debounce {
    /// Bumped by every request.
    requested: AtomicU64,
    wake: Notify,
    /// The last request served, with the version it produced or why none.
    done: watch::Sender<(u64, Published)>,
}

pub struct SnapshotPublisher {
    store: Store,
    leadership: Arc<Leadership>,
    default_strategy: String,
    trace_payload: TracePayload,
    /// The control plane's own key, for replays through data planes.
    replay_grant: KeyGrant,
    current: watch::Sender<Option<Arc<pb::Snapshot>>>,
    /// Latest telemetry from the health aggregation; published with the next snapshot.
    telemetry: Mutex<Telemetry>,
    /// One rebuild at a time, so versions are published in order.
    published: Mutex<Inputs>,
    debounce: Debounce,
    /// How long a mass removal is held before it is believed.
    mass_removal_hold: Duration,
}

impl SnapshotPublisher {
    pub fn new(
        store: Store,
        leadership: Arc<Leadership>,
        default_strategy: String,
        trace_payload: TracePayload,
        mass_removal_hold: Duration,
        replay_grant: KeyGrant,
    ) -> Self {
        Self {
            store,
            leadership,
            default_strategy,
            trace_payload,
            replay_grant,
            current: watch::Sender::new(None),
            telemetry: Mutex::new(Telemetry::default()),
            published: Mutex::new(Inputs::default()),
            debounce: Debounce {
                requested: AtomicU64::new(0),
                wake: Notify::new(),
                done: watch::Sender::new((0, Ok(0))),
            },
            mass_removal_hold,
        }
    }

    /// The newest snapshot, if one was published.
    pub fn current(&self) -> Option<Arc<pb::Snapshot>> {
        self.current.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<pb::Snapshot>>> {
        self.current.subscribe()
    }

    pub fn current_version(&self) -> u64 {
        self.current.borrow().as_ref().map_or(0, |s| s.version)
    }

    /// Takes new telemetry and republishes at once when a target's verdict
    /// changed, every few seconds when only its numbers moved, and when the
    /// published telemetry is half-way to stale (so data planes keep trusting
    /// numbers that are still true).
    pub async fn offer_telemetry(&self, telemetry: Telemetry) -> Result<u64, SnapshotError> {
        let refresh_due = {
            let published = self.published.lock().await;
            let age = telemetry
                .computed_at_ms
                .saturating_sub(published.telemetry.computed_at_ms);
            let stale_half = i64::try_from(telemetry.stale_after_ms / 2).unwrap_or(i64::MAX);
            telemetry.verdicts_differ(&published.telemetry)
                || (published.telemetry.targets != telemetry.targets && age >= TELEMETRY_REFRESH_MS)
                || (!telemetry.targets.is_empty() && age >= stale_half)
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

    /// Asks for a publication after a registry write and waits for it; writes
    /// arriving together share one snapshot. Returns its version. On a
    /// follower it returns at once: the leader publishes the write when its
    /// registry poll sees it.
    pub async fn publish_soon(&self) -> Result<u64, SnapshotError> {
        if self.leadership.leading_epoch().is_none() {
            return Ok(self.current_version());
        }
        let ticket = self.debounce.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.debounce.done.subscribe();
        self.debounce.wake.notify_one();
        let served = done
            .wait_for(|(served, _)| *served >= ticket)
            .await
            .map_err(|_| SnapshotError::Stopped)?;
        match &served.1 {
            Ok(version) => Ok(*version),
            Err((invalid, message)) => Err(SnapshotError::Deferred {
                invalid: *invalid,
                message: message.clone(),
            }),
        }
    }

    /// Serves `publish_soon`: waits for a quiet moment (or the maximum delay)
    /// after the first request of a burst, then publishes once for all of them.
    pub async fn debounce(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.debounce.wake.notified() => {}
            }
            let deadline = Instant::now() + MAX_DELAY;
            loop {
                let quiet = tokio::time::sleep(
                    QUIET.min(deadline.saturating_duration_since(Instant::now())),
                );
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = quiet => break,
                    () = self.debounce.wake.notified() => {
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                }
            }
            let served = self.debounce.requested.load(Ordering::SeqCst);
            let result = match self.publish(false).await {
                // Leadership moved on meanwhile; the new leader publishes the write.
                Err(SnapshotError::NotLeader) => Ok(self.current_version()),
                other => {
                    other.map_err(|e| (matches!(e, SnapshotError::Invalid { .. }), e.to_string()))
                }
            };
            if let Err((_, e)) = &result {
                tracing::warn!(error = %e, "snapshot publication failed; data planes keep the last good snapshot");
            }
            let _previous = self.debounce.done.send_replace((served, result));
        }
    }

    async fn publish(&self, telemetry_changed: bool) -> Result<u64, SnapshotError> {
        let mut published = self.published.lock().await;
        let epoch = self
            .leadership
            .leading_epoch()
            .ok_or(SnapshotError::NotLeader)?;
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
            epoch,
            now_ms(),
            state.providers,
            state.models,
            state.strategies,
            self.default_strategy.clone(),
        )
        .and_then(|snapshot| snapshot.with_workspaces(state.workspaces))
        .and_then(|snapshot| {
            let mut keys = state.keys;
            keys.push(self.replay_grant.clone());
            snapshot.with_keys(keys)
        })
        .map_err(invalid)?
        .with_telemetry(telemetry.clone())
        .with_trace_payload(self.trace_payload);
        let targets = enabled_targets(&snapshot);
        if self.hold_mass_removal(&mut published, &targets, state.revision) {
            return Ok(self.current_version());
        }
        let mut wire = snapshot.to_wire();
        let version = match self.store.publish_snapshot(epoch, &mut wire).await {
            Ok(version) => version,
            Err(e @ StoreError::Fenced { .. }) => {
                self.leadership.deposed(epoch);
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        self.current.send_replace(Some(Arc::new(wire)));
        tracing::info!(
            version,
            epoch,
            revision = state.revision,
            telemetry_targets = telemetry.targets.len(),
            "published snapshot"
        );
        *published = Inputs {
            revision: Some(state.revision),
            telemetry,
            targets,
            held: None,
        };
        Ok(version)
    }

    /// True while a snapshot that removes most enabled targets at once must
    /// wait: it is published only once the registry has said so for
    /// `mass_removal_hold` (the poll loop retries).
    fn hold_mass_removal(
        &self,
        published: &mut Inputs,
        targets: &HashSet<String>,
        revision: Revision,
    ) -> bool {
        let removed = published.targets.difference(targets).count();
        let mass = removed > MASS_REMOVAL_MIN
            && removed as f64 > MASS_REMOVAL_SHARE * published.targets.len() as f64;
        if !mass {
            published.held = None;
            return false;
        }
        let since = match published.held {
            Some((held, since)) if held == revision => since,
            _ => {
                published.held = Some((revision, Instant::now()));
                Instant::now()
            }
        };
        if since.elapsed() >= self.mass_removal_hold {
            tracing::warn!(
                removed,
                revision,
                "publishing a snapshot that removes most targets: the registry has said so for the whole hold time"
            );
            return false;
        }
        tracing::warn!(
            removed,
            of = published.targets.len(),
            revision,
            hold = ?self.mass_removal_hold,
            "holding a snapshot that would remove most targets at once; publishing it only if the registry still says so after the hold"
        );
        true
    }

    /// Starts a term as leader: carries the relayed snapshot's telemetry and
    /// targets over (so data planes lose no verdict while the aggregation
    /// warms up) and publishes at once under the new epoch.
    pub async fn take_over(&self) -> Result<u64, SnapshotError> {
        if let Some(current) = self.current() {
            match RoutingSnapshot::try_from((*current).clone()) {
                Ok(relayed) => {
                    let targets = enabled_targets(&relayed);
                    *self.telemetry.lock().await = relayed.telemetry.clone();
                    *self.published.lock().await = Inputs {
                        revision: None,
                        telemetry: relayed.telemetry,
                        targets,
                        held: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the last relayed snapshot is unreadable; starting from the registry alone")
                }
            }
        }
        self.publish(true).await
    }

    /// On a follower: takes the leader's newest stored snapshot, if newer
    /// than the one served (never an older epoch). Returns the version served.
    pub async fn relay(&self) -> Result<u64, SnapshotError> {
        let current = self.current();
        let (version, epoch) = current.as_ref().map_or((0, 0), |s| (s.version, s.epoch));
        let Some(newer) = self.store.snapshot_newer_than(version).await? else {
            return Ok(version);
        };
        if newer.epoch < epoch || self.leadership.leading_epoch().is_some() {
            return Ok(version);
        }
        let newer = Arc::new(newer);
        // Only ever forward, even if this replica took over meanwhile.
        self.current.send_if_modified(|current| {
            let forward = current
                .as_ref()
                .is_none_or(|c| newer.version > c.version && newer.epoch >= c.epoch);
            if forward {
                tracing::debug!(
                    version = newer.version,
                    epoch = newer.epoch,
                    "relaying the leader's snapshot"
                );
                *current = Some(newer.clone());
            }
            forward
        });
        Ok(self.current_version())
    }

    /// While leading, picks up registry writes made through other replicas
    /// every `registry_poll`; while following, relays the leader's snapshots
    /// every `relay_poll`.
    pub async fn poll(
        self: Arc<Self>,
        registry_poll: Duration,
        relay_poll: Duration,
        shutdown: CancellationToken,
    ) {
        let mut refreshed_at = Instant::now();
        let mut ticker = tokio::time::interval(relay_poll.min(registry_poll));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if self.leadership.leading_epoch().is_some() {
                if refreshed_at.elapsed() < registry_poll {
                    continue;
                }
                refreshed_at = Instant::now();
                match self.refresh().await {
                    Ok(_) | Err(SnapshotError::NotLeader) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "snapshot refresh failed; data planes keep the last good snapshot")
                    }
                }
            } else if let Err(e) = self.relay().await {
                tracing::warn!(error = %e, "cannot read the leader's snapshots; data planes keep the last one");
            }
        }
    }
}
