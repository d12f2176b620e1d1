//! Prometheus metrics of the data plane. Label values are low-cardinality:
//! outcomes, error classes, target ids from the registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub target: String,
    /// "input" or "output".
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error body's `code`: `invalid_api_key`, `rate_limit_exceeded`,
    /// `upstream_transient`, ...
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub target: String,
    /// "ok" or an error class.
    pub result: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    /// Requests being executed now (from routing to the last byte of the answer).
    pub requests_in_flight: Gauge,
    /// Errors answered to clients, by kind, on both edges; a stream that
    /// fails after its first token counts too.
    pub errors: Family<ErrorLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub retries: Family<TargetLabels, Counter>,
    pub retries_denied: Family<TargetLabels, Counter>,
    /// Tokens billed, by the target that answered (partial answers included).
    pub tokens: Family<TokenLabels, Counter>,
    /// What the answers cost at the snapshot's prices, in USD.
    pub cost: Family<TargetLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Hedges started, by the target started as the hedge.
    pub hedges: Family<TargetLabels, Counter>,
    /// 0 closed, 1 half-open, 2 open, 3 forced open, 4 forced closed.
    pub breaker_state: Family<TargetLabels, Gauge>,
    pub request_duration: Histogram,
    pub time_to_first_token: Histogram,
    pub snapshot_version: Gauge,
    pub snapshot_epoch: Gauge,
    /// Unix seconds when the served snapshot was applied, here or (for one
    /// persisted by an earlier run) before the restart.
    pub snapshot_applied_timestamp_seconds: Gauge,
    pub snapshots_rejected: Counter,
    /// 1 while a snapshot stream to a control plane is open.
    pub control_plane_connected: Gauge,
    pub trace_spool_depth: Gauge,
    pub traces_dropped: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard_dp");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register("requests", "Requests by outcome", requests.clone());
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being executed now, from routing to the end of the answer",
            requests_in_flight.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "errors",
            "Errors answered to clients by kind (the error body's code), HTTP and gRPC; streams that fail after their first token included",
            errors.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "attempts",
            "Provider attempts by target and result",
            attempts.clone(),
        );
        let retries = Family::<TargetLabels, Counter>::default();
        registry.register(
            "retries",
            "Retries of the same target after a transient failure",
            retries.clone(),
        );
        let retries_denied = Family::<TargetLabels, Counter>::default();
        registry.register(
            "retries_denied",
            "Retries skipped because the target's retry budget was spent",
            retries_denied.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens billed, by the target that answered and direction",
            tokens.clone(),
        );
        let cost = Family::<TargetLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "cost",
            "Cost of the answers at the snapshot's prices",
            Unit::Other("usd".into()),
            cost.clone(),
        );
        let hedges = Family::<TargetLabels, Counter>::default();
        registry.register(
            "hedges",
            "Backup attempts started beside a first attempt slow to its first token",
            hedges.clone(),
        );
        let breaker_state = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "breaker_state",
            "Circuit breaker per target on this node: 0 closed, 1 half-open, 2 open, 3 forced open by an operator, 4 forced closed by an operator",
            breaker_state.clone(),
        );
        let request_duration = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register_with_unit(
            "request_duration",
            "Request latency from receipt to completion",
            Unit::Seconds,
            request_duration.clone(),
        );
        let time_to_first_token = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register_with_unit(
            "time_to_first_token",
            "Time from receipt to the first token sent to the client",
            Unit::Seconds,
            time_to_first_token.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Version of the snapshot being served",
            snapshot_version.clone(),
        );
        let snapshot_epoch = Gauge::default();
        registry.register(
            "snapshot_epoch",
            "Epoch (the leader's election revision) of the snapshot being served",
            snapshot_epoch.clone(),
        );
        let snapshot_applied_timestamp_seconds = Gauge::default();
        registry.register_with_unit(
            "snapshot_applied_timestamp",
            "When the snapshot being served was applied, as Unix time; its age shows how stale routing is while no control plane answers",
            Unit::Seconds,
            snapshot_applied_timestamp_seconds.clone(),
        );
        let snapshots_rejected = Counter::default();
        registry.register(
            "snapshots_rejected",
            "Snapshots NACKed as invalid",
            snapshots_rejected.clone(),
        );
        let control_plane_connected = Gauge::default();
        registry.register(
            "control_plane_connected",
            "1 while this node's snapshot stream to a control plane is open, else 0 (it serves its last good snapshot)",
            control_plane_connected.clone(),
        );
        let trace_spool_depth = Gauge::default();
        registry.register(
            "trace_spool_depth",
            "Traces waiting for the control plane's ack, in memory and on disk",
            trace_spool_depth.clone(),
        );
        let traces_dropped = Counter::default();
        registry.register(
            "traces_dropped",
            "Traces dropped because the spool was full",
            traces_dropped.clone(),
        );
        Self {
            registry,
            requests,
            requests_in_flight,
            errors,
            attempts,
            retries,
            retries_denied,
            tokens,
            cost,
            hedges,
            breaker_state,
            request_duration,
            time_to_first_token,
            snapshot_version,
            snapshot_epoch,
            snapshot_applied_timestamp_seconds,
            snapshots_rejected,
            control_plane_connected,
            trace_spool_depth,
            traces_dropped,
        }
    }

    /// Counts one error answered to a client.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.requests_in_flight.inc();
        InFlight(self.requests_in_flight.clone())
    }
}

/// One request in flight; dropping it ends it.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_ends_with_its_guard_and_errors_count_by_kind() {
        let m = Metrics::new();
        let first = m.in_flight();
        let second = m.in_flight();
        assert_eq!(m.requests_in_flight.get(), 2);
        drop(first);
        assert_eq!(m.requests_in_flight.get(), 1);
        drop(second);
        assert_eq!(m.requests_in_flight.get(), 0);
        m.error("invalid_api_key");
        m.error("invalid_api_key");
        m.error("upstream_transient");
        let text = switchyard_telemetry::encode_metrics(&m.registry).unwrap();
        assert!(
            text.contains("switchyard_dp_requests_in_flight 0\n"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_dp_errors_total{kind=\"invalid_api_key\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("switchyard_dp_errors_total{kind=\"upstream_transient\"} 1\n"),
            "{text}"
        );
    }
}
