//! Fleet telemetry per target, as the control plane's health aggregation computes it
//! and the snapshot carries it to data planes.

use switchyard_proto::v1 as pb;

use crate::ValidationError;

/// Evidence needed for a confidence of one half.
pub const CONFIDENCE_HALF_AT: f64 = 20.0;

/// How much to trust numbers drawn from `samples` observations, in [0, 1).
pub fn confidence(samples: u64) -> f64 {
    let n = samples as f64;
    n / (n + CONFIDENCE_HALF_AT)
}

#[derive(Debug, Clone, PartialEq)]
pub struct StrategyEffectiveness {
    pub strategy: String,
    pub requests: u64,
    pub success_rate: f64,
}

/// The fleet's verdict on a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum HealthState {
    #[default]
    Healthy,
    /// Success rate is an outlier against peers: routed, scored lower.
    Degraded,
    /// Answering 429: skipped until `state_until_ms`.
    RateLimited,
    /// Failing: skipped until `state_until_ms`.
    Ejected,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::RateLimited => "rate-limited",
            Self::Ejected => "ejected",
        }
    }

    /// Whether routing skips a target in this state until `until_ms` (unless
    /// skipping would leave too few of a model's targets).
    pub fn skips(self) -> bool {
        matches!(self, Self::RateLimited | Self::Ejected)
    }
}

impl From<HealthState> for pb::HealthState {
    fn from(s: HealthState) -> Self {
        match s {
            HealthState::Healthy => Self::Healthy,
            HealthState::Degraded => Self::Degraded,
            HealthState::RateLimited => Self::RateLimited,
            HealthState::Ejected => Self::Ejected,
        }
    }
}

impl From<pb::HealthState> for HealthState {
    fn from(s: pb::HealthState) -> Self {
        match s {
            pb::HealthState::Unspecified | pb::HealthState::Healthy => Self::Healthy,
            pb::HealthState::Degraded => Self::Degraded,
            pb::HealthState::RateLimited => Self::RateLimited,
            pb::HealthState::Ejected => Self::Ejected,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetTelemetry {
    pub target_id: String,
    pub attempts: u64,
    pub success_rate: f64,
    pub error_rate: f64,
    pub rate_limited_rate: f64,
    pub retry_rate: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub latency_p95_ms: f64,
    pub confidence: f64,
    pub strategies: Vec<StrategyEffectiveness>,
    pub state: HealthState,
    /// For rate-limited and ejected targets: skipped until then (Unix ms).
    pub state_until_ms: i64,
    /// Data planes should probe it: no recent traffic, or ejected.
    pub probe: bool,
}

impl TargetTelemetry {
    /// Whether the fleet says to skip the target at `now_ms`.
    pub fn skipped_at(&self, now_ms: i64) -> bool {
        self.state.skips() && now_ms < self.state_until_ms
    }
}

fn share(name: &str, v: f64) -> Result<f64, ValidationError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ValidationError::new(name, "must be within [0, 1]"))
    }
}

fn millis(name: &str, v: f64) -> Result<f64, ValidationError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(ValidationError::new(name, "must be a finite number >= 0"))
    }
}

impl TryFrom<pb::TargetTelemetry> for TargetTelemetry {
    type Error = ValidationError;

    fn try_from(t: pb::TargetTelemetry) -> Result<Self, Self::Error> {
        if t.target_id.is_empty() {
            return Err(ValidationError::new("target_id", "required"));
        }
        let strategies = t
            .strategies
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(StrategyEffectiveness {
                    success_rate: share("success_rate", s.success_rate)
                        .map_err(|e| e.within(&format!("strategies[{i}]")))?,
                    strategy: s.strategy,
                    requests: s.requests,
                })
            })
            .collect::<Result<_, ValidationError>>()?;
        Ok(Self {
            attempts: t.attempts,
            success_rate: share("success_rate", t.success_rate)?,
            error_rate: share("error_rate", t.error_rate)?,
            rate_limited_rate: share("rate_limited_rate", t.rate_limited_rate)?,
            retry_rate: share("retry_rate", t.retry_rate)?,
            latency_p50_ms: millis("latency_p50_ms", t.latency_p50_ms)?,
            latency_p99_ms: millis("latency_p99_ms", t.latency_p99_ms)?,
            ttft_p50_ms: millis("ttft_p50_ms", t.ttft_p50_ms)?,
            ttft_p95_ms: millis("ttft_p95_ms", t.ttft_p95_ms)?,
            latency_p95_ms: millis("latency_p95_ms", t.latency_p95_ms)?,
            confidence: share("confidence", t.confidence)?,
            strategies,
            state: pb::HealthState::try_from(t.state)
                .map_err(|_| ValidationError::new("state", format!("unknown state {}", t.state)))?
                .into(),
            state_until_ms: t
                .state_until
                .as_ref()
                .map(crate::timestamp_to_millis)
                .unwrap_or_default(),
            probe: t.probe,
            target_id: t.target_id,
        })
    }
}

impl From<&TargetTelemetry> for pb::TargetTelemetry {
    fn from(t: &TargetTelemetry) -> Self {
        Self {
            target_id: t.target_id.clone(),
            attempts: t.attempts,
            success_rate: t.success_rate,
            error_rate: t.error_rate,
            rate_limited_rate: t.rate_limited_rate,
            retry_rate: t.retry_rate,
            latency_p50_ms: t.latency_p50_ms,
            latency_p99_ms: t.latency_p99_ms,
            ttft_p50_ms: t.ttft_p50_ms,
            ttft_p95_ms: t.ttft_p95_ms,
            latency_p95_ms: t.latency_p95_ms,
            confidence: t.confidence,
            strategies: t
                .strategies
                .iter()
                .map(|s| pb::StrategyEffectiveness {
                    strategy: s.strategy.clone(),
                    requests: s.requests,
                    success_rate: s.success_rate,
                })
                .collect(),
            state: pb::HealthState::from(t.state).into(),
            state_until: (t.state_until_ms > 0)
                .then(|| crate::timestamp_from_millis(t.state_until_ms)),
            probe: t.probe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_grows_with_evidence_and_never_reaches_one() {
        assert_eq!(confidence(0), 0.0);
        assert!((confidence(20) - 0.5).abs() < 1e-12);
        assert!(confidence(1_000_000) < 1.0);
        assert!(confidence(100) > confidence(10));
    }

    #[test]
    fn out_of_range_rates_are_rejected_naming_the_field() {
        let wire = pb::TargetTelemetry {
            target_id: "a/m".into(),
            success_rate: 1.5,
            ..Default::default()
        };
        assert_eq!(
            TargetTelemetry::try_from(wire).unwrap_err().field,
            "success_rate"
        );
        let wire = pb::TargetTelemetry {
            target_id: "a/m".into(),
            latency_p50_ms: f64::NAN,
            ..Default::default()
        };
        assert_eq!(
            TargetTelemetry::try_from(wire).unwrap_err().field,
            "latency_p50_ms"
        );
    }
}
