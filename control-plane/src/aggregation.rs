//! The aggregation loop: every tick, reads the health windows that arrived
//! through any replica, lets the aggregator judge every registered target,
//! adds strategy effectiveness from the trace store, posts the result for the
//! health RPC and offers it to the snapshot publisher as telemetry.
//!
//! Only the leader aggregates. Each term starts afresh from the stored
//! windows, so a new leader judges on the same evidence the old one had.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::{RoutingSnapshot, StrategyEffectiveness, Telemetry, target_id};
use switchyard_proto::v1 as pb;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;
use crate::health::{Aggregator, HealthConfig, TargetInfo, TargetView, WindowRecord};
use crate::leadership::{Leadership, Role};
use crate::quality::{self, QualityConfig};
use crate::snapshots::SnapshotPublisher;
use crate::store::{Store, StoreError, now_ms};

/// Windows re-read from before the cursor, for rows committed out of arrival order.
const OVERLAP_MS: i64 = 3_000;
/// Windows read per query.
const PAGE: i64 = 20_000;
/// Stored windows older than this are deleted.
const RETENTION_MS: i64 = 10 * 60_000;
const CLEANUP_EVERY: Duration = Duration::from_secs(60);
/// A data plane whose last window ended this long ago no longer counts as reporting.
const REPORTING_WITHIN_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy)]
pub struct AggregationConfig {
    /// How often targets are judged.
    pub interval: Duration,
    /// How often the fleet as a whole probes each idle or ejected target; zero turns probes off.
    pub probe_interval: Duration,
    /// A target without traffic for this long is probed.
    pub probe_idle: Duration,
    pub health: HealthConfig,
    pub quality: QualityConfig,
}

impl Default for AggregationConfig {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            probe_interval: Duration::from_secs(30),
            probe_idle: Duration::from_secs(60),
            health: HealthConfig::default(),
            quality: QualityConfig {
                interval: Duration::from_secs(10),
                window: Duration::from_secs(300),
                stale_after: Duration::from_secs(60),
            },
        }
    }
}

/// The last judgement of every target.
#[derive(Debug, Default)]
pub struct Board {
    pub evaluated_at_ms: i64,
    pub views: Vec<TargetView>,
}

pub struct HealthBoard {
    latest: watch::Sender<Arc<Board>>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self {
            latest: watch::Sender::new(Arc::new(Board::default())),
        }
    }
}

impl HealthBoard {
    pub fn latest(&self) -> Arc<Board> {
        self.latest.borrow().clone()
    }
}

/// Registered targets as the aggregator needs them.
fn targets_of(snapshot: &pb::Snapshot) -> Vec<TargetInfo> {
    let enabled_providers: Vec<&str> = snapshot
        .providers
        .iter()
        .filter(|p| p.enabled)
        .map(|p| p.name.as_str())
        .collect();
    snapshot
        .models
        .iter()
        .map(|m| TargetInfo {
            id: target_id(&m.provider, &m.name),
            model: m.name.clone(),
            enabled: m.enabled && enabled_providers.contains(&m.provider.as_str()),
        })
        .collect()
}

pub struct AggregationLoop {
    pub store: Store,
    pub publisher: Arc<SnapshotPublisher>,
    pub fleet: Arc<Fleet>,
    pub board: Arc<HealthBoard>,
    pub leadership: Arc<Leadership>,
    pub config: AggregationConfig,
}

struct Progress {
    aggregator: Aggregator,
    /// Windows already ingested (node, target, start) -> end, to skip re-reads.
    seen: HashMap<(String, String, i64), i64>,
    cursor_ms: i64,
    effectiveness: HashMap<String, Vec<StrategyEffectiveness>>,
    effectiveness_at: Option<Instant>,
    cleaned_at: Instant,
}

impl AggregationLoop {
    /// Aggregates during every term this replica leads.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut role = self.leadership.subscribe();
        loop {
            let current = role.borrow_and_update().clone();
            let epoch = match current {
                Role::Leader { epoch } => epoch,
                Role::Follower => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        changed = role.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.lead(epoch) => {}
                _ = role.changed() => {}
            }
            self.board.latest.send_replace(Arc::new(Board::default()));
        }
    }

    /// One term: judges every interval until the caller stops it. Starts
    /// from the verdicts in the snapshot being served (the previous leader's).
    async fn lead(&self, epoch: u64) {
        let mut aggregator = Aggregator::new(self.config.health, self.config.probe_idle);
        if let Some(served) = self.publisher.current()
            && let Ok(served) = RoutingSnapshot::try_from((*served).clone())
        {
            aggregator.resume(&served.telemetry, now_ms());
        }
        let mut progress = Progress {
            aggregator,
            seen: HashMap::new(),
            // Rebuild the longest window from what is stored: a new term loses nothing.
            cursor_ms: now_ms() - 300_000,
            effectiveness: HashMap::new(),
            effectiveness_at: None,
            cleaned_at: Instant::now(),
        };
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.tick(&mut progress, epoch).await;
        }
    }

    async fn read_windows(&self, progress: &mut Progress) {
        let mut from = progress.cursor_ms - OVERLAP_MS;
        loop {
            let page = match self.store.windows_received_since(from, PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read health windows; judging on what is known");
                    return;
                }
            };
            let full = page.len() as i64 == PAGE;
            let last = page.last().map_or(from, |w| w.received_at_ms);
            for stored in page {
                let w = &stored.window;
                let start = w
                    .start
                    .as_ref()
                    .map(switchyard_domain::timestamp_to_millis)
                    .unwrap_or_default();
                let key = (w.node_id.clone(), w.target_id.clone(), start);
                if progress.seen.contains_key(&key) {
                    continue;
                }
                match WindowRecord::try_from(w) {
                    Ok(record) => {
                        progress.seen.insert(key, record.end_ms);
                        progress.aggregator.ingest(&record);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable stored health window")
                    }
                }
            }
            progress.cursor_ms = progress.cursor_ms.max(last);
            // A full page whose rows all arrived in one millisecond cannot advance; the next tick goes on.
            if !full || last == from {
                break;
            }
            from = last;
        }
        let oldest = now_ms() - RETENTION_MS;
        progress.seen.retain(|_, end| *end >= oldest);
    }

    async fn tick(&self, progress: &mut Progress, epoch: u64) {
        self.read_windows(progress).await;
        let Some(snapshot) = self.publisher.current() else {
            return;
        };
        let now = now_ms();
        let views = progress.aggregator.evaluate(now, &targets_of(&snapshot));

        let quality = self.config.quality;
        if progress
            .effectiveness_at
            .is_none_or(|at| at.elapsed() >= quality.interval)
        {
            match quality::compute(&self.store, quality.window).await {
                Ok(e) => progress.effectiveness = e,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read request outcomes; keeping the last strategy effectiveness")
                }
            }
            progress.effectiveness_at = Some(Instant::now());
        }
        // Data planes stream to any replica: count those connected here and
        // those whose windows arrived through any replica lately.
        let reporting: HashSet<&str> = progress
            .seen
            .iter()
            .filter(|(_, end)| **end >= now - REPORTING_WITHIN_MS)
            .map(|((node, _, _), _)| node.as_str())
            .collect();
        let nodes = self.fleet.node_count().await.max(reporting.len()).max(1);
        let nodes = u32::try_from(nodes).unwrap_or(u32::MAX);
        let telemetry = Telemetry {
            targets: views
                .iter()
                .map(|v| {
                    let mut t = v.telemetry.clone();
                    t.strategies = progress
                        .effectiveness
                        .get(&v.target_id)
                        .cloned()
                        .unwrap_or_default();
                    (v.target_id.clone(), t)
                })
                .collect(),
            computed_at_ms: now,
            stale_after_ms: u64::try_from(quality.stale_after.as_millis()).unwrap_or(u64::MAX),
            probe_interval_ms: u64::try_from(
                self.config.probe_interval.saturating_mul(nodes).as_millis(),
            )
            .unwrap_or(u64::MAX),
            data_planes: nodes,
        };
        self.board.latest.send_replace(Arc::new(Board {
            evaluated_at_ms: now,
            views,
        }));
        if let Err(e) = self.publisher.offer_telemetry(telemetry).await {
            tracing::warn!(error = %e, "could not publish telemetry; data planes keep the last snapshot");
        }

        if progress.cleaned_at.elapsed() >= CLEANUP_EVERY {
            progress.cleaned_at = Instant::now();
            match self
                .store
                .delete_windows_before(epoch, now - RETENTION_MS)
                .await
            {
                Ok(n) if n > 0 => tracing::debug!(deleted = n, "old health windows deleted"),
                Ok(_) => {}
                Err(e @ StoreError::Fenced { .. }) => {
                    tracing::warn!(error = %e, "not deleting old health windows");
                    self.leadership.deposed(epoch);
                }
                Err(e) => tracing::warn!(error = %e, "cannot delete old health windows"),
            }
        }
    }
}
