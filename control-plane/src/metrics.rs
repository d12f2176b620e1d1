//! Prometheus metrics of the control plane, prefixed `switchyard_cp`, served
//! at `GET /metrics` on their own plain HTTP listener (`--metrics-listen`),
//! apart from the gRPC port and without the admin token: it is what
//! Prometheus scrapes, and it tells nothing a scraper could misuse.
//!
//! Events (trace ingest, election, database errors) are counted where they
//! happen; states (leadership, the served snapshot, connected data planes,
//! target health, the registry revision) are read when a scrape comes.
//! Labels are low-cardinality: results, events, health states, and the node
//! ids of the data planes connected to this replica.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use switchyard_domain::HealthState;
use switchyard_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::aggregation::HealthBoard;
use crate::fleet::Fleet;
use crate::leadership::Leadership;
use crate::snapshots::SnapshotPublisher;
use crate::store::{Store, now_ms};

/// A scrape waits this long at most for the registry revision.
const REVISION_TIMEOUT: Duration = Duration::from_secs(2);

const HEALTH_STATES: [HealthState; 4] = [
    HealthState::Healthy,
    HealthState::Degraded,
    HealthState::RateLimited,
    HealthState::Ejected,
];

type GaugeF64 = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// "stored" or "not_stored" (the database failed; the data plane resends).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// "won", "stepped_down_lease_lost", "stepped_down_deposed",
    /// "stepped_down_shutdown" or "term_failed".
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Traces newly stored by `TraceService/Report`.
    pub traces_ingested: Counter,
    /// Traces received again (a resent batch) and already stored.
    pub traces_duplicate: Counter,
    /// Traces discarded as invalid; resending would not help.
    pub traces_rejected: Counter,
    pub trace_batches: Family<ResultLabels, Counter>,
    /// From a batch's arrival to its commit (or failure).
    pub trace_ingest_duration: Histogram,
    pub election_events: Family<EventLabels, Counter>,
    leader: Gauge,
    leader_epoch: Gauge,
    snapshot_version: Gauge,
    snapshot_epoch: Gauge,
    snapshot_age: GaugeF64,
    registry_revision: Gauge,
    data_planes: Gauge,
    data_plane_acked_version: Family<NodeLabels, Gauge>,
    data_plane_lag_versions: Family<NodeLabels, Gauge>,
    data_plane_lag: Family<NodeLabels, GaugeF64>,
    targets: Family<StateLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_cp");
        let traces_ingested = Counter::default();
        registry.register(
            "traces_ingested",
            "Traces stored by TraceService/Report",
            traces_ingested.clone(),
        );
        let traces_duplicate = Counter::default();
        registry.register(
            "traces_duplicate",
            "Traces received again in a resent batch, already stored",
            traces_duplicate.clone(),
        );
        let traces_rejected = Counter::default();
        registry.register(
            "traces_rejected",
            "Traces discarded as invalid by TraceService/Report",
            traces_rejected.clone(),
        );
        let trace_batches = Family::<ResultLabels, Counter>::default();
        registry.register(
            "trace_batches",
            "Trace batches by result: stored (and acked), or not_stored (the data plane keeps and resends them)",
            trace_batches.clone(),
        );
        let trace_ingest_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "trace_ingest_duration",
            "Time to validate and store one trace batch",
            Unit::Seconds,
            trace_ingest_duration.clone(),
        );
        let election_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "election_events",
            "Leader election events of this replica: won, stepped_down_lease_lost, stepped_down_deposed, stepped_down_shutdown, term_failed",
            election_events.clone(),
        );
        registry.register(
            "store_errors",
            "Database calls that failed (connection, query or timeout), on every path",
            crate::store::database_errors(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads (publishes snapshots, aggregates health), else 0",
            leader.clone(),
        );
        let leader_epoch = Gauge::default();
        registry.register(
            "leader_epoch",
            "Epoch (election revision) this replica leads at; 0 while it follows",
            leader_epoch.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Version of the newest snapshot this replica serves (published, or relayed from the leader)",
            snapshot_version.clone(),
        );
        let snapshot_epoch = Gauge::default();
        registry.register(
            "snapshot_epoch",
            "Epoch of the leader that built the newest snapshot served",
            snapshot_epoch.clone(),
        );
        let snapshot_age = GaugeF64::default();
        registry.register_with_unit(
            "snapshot_age",
            "Time since the newest snapshot served was built",
            Unit::Seconds,
            snapshot_age.clone(),
        );
        let registry_revision = Gauge::default();
        registry.register(
            "registry_revision",
            "Revision of the registry in the database; every write bumps it",
            registry_revision.clone(),
        );
        let data_planes = Gauge::default();
        registry.register(
            "data_planes_connected",
            "Distinct data planes with a snapshot stream open to this replica",
            data_planes.clone(),
        );
        let data_plane_acked_version = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "data_plane_acked_version",
            "Snapshot version each data plane connected here last acknowledged",
            data_plane_acked_version.clone(),
        );
        let data_plane_lag_versions = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "data_plane_lag_versions",
            "Versions between the newest snapshot and the one each connected data plane acknowledged",
            data_plane_lag_versions.clone(),
        );
        let data_plane_lag = Family::<NodeLabels, GaugeF64>::default();
        registry.register_with_unit(
            "data_plane_lag",
            "How long each connected data plane has been behind the newest snapshot; 0 when current",
            Unit::Seconds,
            data_plane_lag.clone(),
        );
        let targets = Family::<StateLabels, Gauge>::default();
        registry.register(
            "targets",
            "Registered targets by the fleet's health verdict (healthy, degraded, rate-limited, ejected)",
            targets.clone(),
        );
        Self {
            registry,
            traces_ingested,
            traces_duplicate,
            traces_rejected,
            trace_batches,
            trace_ingest_duration,
            election_events,
            leader,
            leader_epoch,
            snapshot_version,
            snapshot_epoch,
            snapshot_age,
            registry_revision,
            data_planes,
            data_plane_acked_version,
            data_plane_lag_versions,
            data_plane_lag,
            targets,
        }
    }

    pub fn election_event(&self, event: &'static str) {
        self.election_events
            .get_or_create(&EventLabels { event })
            .inc();
    }

    pub fn trace_batch(&self, result: &'static str) {
        self.trace_batches
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scrape reads the current state from.
pub struct Scrape {
    pub metrics: Arc<Metrics>,
    pub leadership: Arc<Leadership>,
    pub publisher: Arc<SnapshotPublisher>,
    pub fleet: Arc<Fleet>,
    pub board: Arc<HealthBoard>,
    pub store: Store,
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Scrape {
    /// Sets every state gauge to what holds now.
    async fn refresh(&self) {
        let m = &self.metrics;
        let epoch = self.leadership.leading_epoch();
        m.leader.set(i64::from(epoch.is_some()));
        m.leader_epoch.set(gauge(epoch.unwrap_or(0)));

        let current = self.publisher.current();
        let (version, snapshot_epoch) = current.as_ref().map_or((0, 0), |s| (s.version, s.epoch));
        m.snapshot_version.set(gauge(version));
        m.snapshot_epoch.set(gauge(snapshot_epoch));
        let age = current
            .as_ref()
            .and_then(|s| s.created_at.as_ref())
            .map_or(0.0, |at| {
                (now_ms() - switchyard_domain::timestamp_to_millis(at)).max(0) as f64 / 1000.0
            });
        m.snapshot_age.set(age);

        let streams = self.fleet.list(version).await;
        m.data_planes
            .set(gauge(self.fleet.node_count().await as u64));
        // Only the nodes connected now: a node that left has no series.
        m.data_plane_acked_version.clear();
        m.data_plane_lag_versions.clear();
        m.data_plane_lag.clear();
        for s in &streams {
            let labels = NodeLabels {
                node: s.node_id.clone(),
            };
            m.data_plane_acked_version
                .get_or_create(&labels)
                .set(gauge(s.acked_version));
            m.data_plane_lag_versions
                .get_or_create(&labels)
                .set(gauge(s.lag_versions));
            m.data_plane_lag
                .get_or_create(&labels)
                .set(s.lag_ms as f64 / 1000.0);
        }

        for (state, count) in self.health_counts(current.as_deref()) {
            m.targets
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count);
        }

        // A database that does not answer leaves the last value (and counts
        // as a store error).
        if let Ok(Ok(revision)) =
            tokio::time::timeout(REVISION_TIMEOUT, self.store.revision()).await
        {
            m.registry_revision.set(gauge(revision));
        }
    }

    /// Targets per health state: the leader's latest judgement, or on a
    /// follower (and before the leader's first) the verdicts of the served
    /// snapshot, where a target without telemetry counts as healthy.
    fn health_counts(&self, snapshot: Option<&pb::Snapshot>) -> [(HealthState, i64); 4] {
        let mut counts = HEALTH_STATES.map(|s| (s, 0));
        let mut add = |state: HealthState| {
            if let Some((_, n)) = counts.iter_mut().find(|(s, _)| *s == state) {
                *n += 1;
            }
        };
        let board = self.board.latest();
        if self.leadership.leading_epoch().is_some() && board.evaluated_at_ms > 0 {
            for view in &board.views {
                add(view.state.state);
            }
        } else if let Some(snapshot) = snapshot {
            for model in &snapshot.models {
                let id = switchyard_domain::target_id(&model.provider, &model.name);
                let state = snapshot
                    .telemetry
                    .iter()
                    .find(|t| t.target_id == id)
                    .and_then(|t| pb::HealthState::try_from(t.state).ok())
                    .map_or(HealthState::Healthy, HealthState::from);
                add(state);
            }
        }
        counts
    }
}

/// Binds the metrics listener; the caller serves it with [`serve`].
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), std::io::Error> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `GET /metrics` until `shutdown`.
pub async fn serve(listener: TcpListener, scrape: Scrape, shutdown: CancellationToken) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(scrape));
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!(error = %e, "control-plane metrics listener failed");
    }
}

async fn metrics(State(scrape): State<Arc<Scrape>>) -> Response {
    scrape.refresh().await;
    switchyard_telemetry::metrics_response(&scrape.metrics.registry).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.traces_ingested.inc_by(3);
        m.trace_batch("stored");
        m.trace_ingest_duration.observe(0.01);
        m.election_event("won");
        m.snapshot_age.set(1.5);
        m.targets
            .get_or_create(&StateLabels { state: "healthy" })
            .set(2);
        let text = switchyard_telemetry::encode_metrics(&m.registry).unwrap_or_default();
        for line in [
            "switchyard_cp_traces_ingested_total 3",
            "switchyard_cp_trace_batches_total{result=\"stored\"} 1",
            "switchyard_cp_trace_ingest_duration_seconds_count 1",
            "switchyard_cp_election_events_total{event=\"won\"} 1",
            "switchyard_cp_snapshot_age_seconds 1.5",
            "switchyard_cp_targets{state=\"healthy\"} 2",
            "switchyard_cp_leader 0",
            "# TYPE switchyard_cp_store_errors counter",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
