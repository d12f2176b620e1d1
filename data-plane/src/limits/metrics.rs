//! The limiter's Prometheus metrics. Labels name modes and outcomes only,
//! never a scope's id.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// "redis", "local", or "unavailable" (Redis down and failing closed).
    pub mode: &'static str,
    /// "allowed" or "denied".
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// "admit" or "settle".
    pub operation: &'static str,
    /// "timeout", "unreachable" or "error".
    pub kind: &'static str,
}

/// Cheap to clone: every field shares its value.
#[derive(Clone, Debug, Default)]
pub struct LimiterMetrics {
    pub decisions: Family<DecisionLabels, Counter>,
    pub local_mode: Gauge,
    pub redis_failures: Family<FailureLabels, Counter>,
}

impl LimiterMetrics {
    /// Adds the metrics to `registry` (the data plane's, prefixed
    /// `switchyard_dp`): `limiter_decisions_total`, `limiter_local_mode`,
    /// `limiter_redis_failures_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "limiter_decisions",
            "Rate-limit decisions by where they were made (redis, local, unavailable) and outcome",
            self.decisions.clone(),
        );
        registry.register(
            "limiter_local_mode",
            "1 while Redis is configured but unreachable and this node enforces rate limits on its own",
            self.local_mode.clone(),
        );
        registry.register(
            "limiter_redis_failures",
            "Rate-limiter calls to Redis that got no answer, by operation and kind",
            self.redis_failures.clone(),
        );
    }

    /// Decisions so far with these labels.
    pub fn decisions(&self, mode: &'static str, decision: &'static str) -> u64 {
        self.decisions
            .get_or_create(&DecisionLabels { mode, decision })
            .get()
    }
}
